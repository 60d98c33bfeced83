"""SocketMedia with real StreamStates: the compiled receiver that does the common case
itself (``_rtprecv.poll_walk`` with ``srs/rtp/_rtpwalk.c``, SRTP decrypted with libsrtp
from pylibsrtp) places and counts exactly what the stdlib path does, on loopback sockets,
plain and SRTP, and leaves Python out of the common case."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest
import uvloop

from srs.recording.stream import StreamState
from srs.rtp import srtp as srtp_module
from srs.rtp import track
from srs.rtp.sources import DEFAULT_POLICY, MediaSources
from srs.rtp.srtp import SUITES, SrtpInbound, SrtpReceiver
from srs.rtp.track import Placed, TrackTimeline
from srs.sdp.answer import AnsweredStream
from srs.sdp.description import Direction
from srs.server import media
from srs.server.media import Receiver, SocketMedia
from tests.server.test_media import sender, until
from tests.sipclient import rtp_packet

pytestmark = pytest.mark.skipif(not media._walking,
                                reason="srs.server._rtprecv or srs.rtp._rtpwalk is not built")


def new_stream(index: int, port: int, origin_s: float) -> StreamState:
    timeline = TrackTimeline(origin_s, 8000, event_payload_types=(101,))
    timeline.accept_payload_types((0, 8, 101), (0, 8))
    answered = AnsweredStream(index, f"s{index}", port, Direction.SENDONLY, 0, "PCMU", 8000, 101)
    sources = MediaSources(DEFAULT_POLICY, offer_host="127.0.0.1", signalling_host=None)
    return StreamState(index, f"s{index}", answered, timeline, {}, sources)


def bursts(index: int) -> list[list[tuple[int, bytes]]]:
    """Per wake-up, (sender 0 or 1, datagram) for one stream: clean bursts, loss,
    reordering, a duplicate, PCMA, DTMF, a new SSRC, a second sender that is not latched,
    RTCP and garbage."""
    ssrc = 0x5000 + index
    out: list[list[tuple[int, bytes]]] = []
    seq, ts = 10, 0
    for n in range(80):
        if n == 20:
            seq += 1  # lost
        burst = [(0, rtp_packet(seq, ts, ssrc, bytes([n]) * 160, pt=8 if 40 <= n < 50 else 0))]
        seq, ts = seq + 1, ts + 160
        if n % 4 == 0:  # two more queued in the socket
            burst += [(0, rtp_packet(seq + k, ts + 160 * k, ssrc, bytes([n, k]) * 80))
                      for k in range(2)]
            seq, ts = seq + 2, ts + 320
        if n == 30:
            burst.reverse()  # reordered
        if n == 31:
            burst.append(burst[0])  # a duplicate
        if n == 35:
            burst.insert(0, (1, rtp_packet(seq, ts, 0x9999, bytes(160))))  # not latched
        if n == 60:
            burst.append((0, rtp_packet(seq, ts, ssrc, b"\x05\x0a\x00\xa0", pt=101)))
            seq += 1
        if n == 65:
            burst.append((0, b"\x81\xc9\x00\x07" + bytes(28)))  # an RTCP RR
        if n == 66:
            burst.append((0, b"\x80\x00\x01"))  # garbage
        if n == 70:
            ssrc, seq, ts = ssrc + 0x100, 5000, 777_000  # a new SSRC
        out.append(burst)
    return out


SUITE = SUITES["AES_CM_128_HMAC_SHA1_80"]


def protected(index: int, plan: list[list[tuple[int, bytes]]]) -> dict[bytes, bytes]:
    """Every datagram of a plan as SRTP/SRTCP with stream ``index``'s key, each protected
    once and in sequence order per SSRC, as senders do; garbage stays as it is."""
    session = pylibsrtp.Session(policy=pylibsrtp.Policy(
        key=bytes([index]) * 30, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=SUITE.profile))
    datagrams = {data for burst in plan for _, data in burst if len(data) > 12}
    rtcp = {d for d in datagrams if 192 <= d[1] <= 223}
    out = {d: session.protect(d) for d in sorted(datagrams - rtcp, key=lambda d: (d[8:12], d[2:4]))}
    return out | {d: session.protect_rtcp(d) for d in rtcp}


def as_tuples(placed: list[Placed]) -> list[tuple[Any, ...]]:
    return [(p.offset_samples, p.payload_type, p.payload, p.ssrc, p.timestamp, p.is_event)
            for p in placed]


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
def test_the_compiled_walk_places_what_the_stdlib_path_places(
        monkeypatch: pytest.MonkeyPatch, srtp: bool) -> None:
    if srtp and not srtp_module.native_unprotect():
        pytest.skip("pylibsrtp without the libsrtp 2 interface srs knows")
    to_python = 0
    receive_many = StreamState.receive_many

    def counting(self: StreamState, datagrams: list[bytes], source: tuple[str, int],
                 now: float) -> None:
        nonlocal to_python
        if any(self is stream for stream in streams["compiled"]):
            to_python += len(datagrams)
        receive_many(self, datagrams, source, now)

    monkeypatch.setattr(StreamState, "receive_many", counting)
    streams: dict[str, list[StreamState]] = {}

    async def body() -> None:
        clock = [1000.0]
        medias = {}
        receivers: tuple[Receiver, ...] = ("compiled", "python")
        for receiver in receivers:
            base = 20000 + 2 * (time.monotonic_ns() // 1000 % 10000)
            medias[receiver] = SocketMedia("127.0.0.1", base, base + 400, lambda: clock[0],
                                           receiver=receiver)
        ports = {r: m.open(3, None) for r, m in medias.items()}
        streams.update({r: [new_stream(i, p, 999.5) for i, p in enumerate(ports[r])]
                        for r in medias})
        for r, socket_media in medias.items():
            for port, stream in zip(ports[r], streams[r], strict=True):
                socket_media.attach(port, stream)
        senders = [sender(), sender()]
        plans = [bursts(i) for i in range(3)]
        if srtp:
            for r in medias:
                for i, stream in enumerate(streams[r]):
                    stream.srtp = SrtpInbound(SrtpReceiver(SUITE, bytes([i]) * 30))
            keyed = [protected(i, plan) for i, plan in enumerate(plans)]
            plans = [[[(who, keyed[i].get(data, data)) for who, data in burst] for burst in plan]
                     for i, plan in enumerate(plans)]
        python_at_start = 0
        for n in range(80):
            for r in medias:
                for i in range(3):
                    for who, data in plans[i][n]:
                        senders[who].sendto(data, ("127.0.0.1", ports[r][i]))
            expected = sum(len(plan[n]) for plan in plans)
            want = {r: m.datagrams + expected for r, m in medias.items()}
            await until(lambda want=want: all(m.datagrams == want[r]  # type: ignore[misc]
                                              for r, m in medias.items()))
            clock[0] += 0.02
            if n == 5:
                python_at_start = to_python
        compiled, python = streams["compiled"], streams["python"]
        for a, b in zip(compiled, python, strict=True):
            assert as_tuples(a.take_pending(clock[0])) == as_tuples(b.take_pending(clock[0]))
            assert a.timeline.stats() == b.timeline.stats()
            assert a.latched is not None and b.latched is not None
            assert a.latched[0] == b.latched[0] == "127.0.0.1"
            assert (a.last_packet_s, a.other_source_packets) == (b.last_packet_s,
                                                                 b.other_source_packets)
            assert a.other_source_packets == 1
            counted = a.timeline.stats()
            assert counted.lost == 1 and counted.rtcp_packets == 1
            if srtp:  # a duplicate is a replay (RFC 3711 §3.3.2); garbage is malformed
                assert counted.dropped == {"srtp_replay": 1, "srtp_malformed": 1}
            else:
                assert counted.duplicated == 1 and counted.dropped["truncated"] == 1
        # The python receiver hands every datagram to Python; once the streams are latched
        # and anchored, the compiled one only what is not the common case.
        total = sum(len(burst) for plan in plans for burst in plan)
        python_datagrams = to_python - python_at_start
        assert 0 < python_datagrams < (total - python_at_start) // 4
        for r, socket_media in medias.items():
            socket_media.close(ports[r])
        for out in senders:
            out.close()

    uvloop.run(body())


def test_without_the_compiled_walk_the_receiver_only_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver falls back to handing every datagram over when the walk is off."""
    monkeypatch.setattr(media, "_walking", False)
    got: list[int] = []
    monkeypatch.setattr(StreamState, "receive_many",
                        lambda self, datagrams, source, now: got.extend(map(len, datagrams)))

    async def body() -> None:
        socket_media = SocketMedia("127.0.0.1", 30000, 30400, time.monotonic,
                                   receiver="compiled")
        [port] = socket_media.open(1, None)
        socket_media.attach(port, new_stream(0, port, time.monotonic()))
        out = sender()
        for i in range(5):
            out.sendto(rtp_packet(i, 160 * i, 1, bytes(160)), ("127.0.0.1", port))
        await until(lambda: len(got) == 5)
        socket_media.close([port])
        out.close()

    uvloop.run(body())
    assert track.compiled_walk()


def test_a_stream_that_raises_in_the_compiled_path_costs_the_others_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the Python code the compiled receiver calls (receive_into for a decrypted
    packet the walk leaves) reaches the loop's exception handler once every socket is
    served; the other streams get their datagrams."""
    if not srtp_module.native_unprotect():
        pytest.skip("pylibsrtp without the libsrtp 2 interface srs knows")
    receive_into = TrackTimeline.receive_into
    broken: list[TrackTimeline] = []

    def failing(self: TrackTimeline, data: bytes, now: float, out: list[Placed]) -> None:
        if self in broken:
            raise RuntimeError("a bug in one stream")
        receive_into(self, data, now, out)

    monkeypatch.setattr(TrackTimeline, "receive_into", failing)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        base = 20000 + 2 * (time.monotonic_ns() // 1000 % 10000)
        socket_media = SocketMedia("127.0.0.1", base, base + 400, time.monotonic,
                                   receiver="compiled")
        ports = socket_media.open(3, None)
        streams = [new_stream(i, p, time.monotonic()) for i, p in enumerate(ports)]
        plans = [[[(0, rtp_packet(i, 160 * i, 0x77, bytes(160)))] for i in range(12)]
                 for _ in ports]
        keyed = [protected(i, plan) for i, plan in enumerate(plans)]
        for i, (port, stream) in enumerate(zip(ports, streams, strict=True)):
            stream.srtp = SrtpInbound(SrtpReceiver(SUITE, bytes([i]) * 30))
            socket_media.attach(port, stream)
        broken.append(streams[1].timeline)
        out = sender()
        for n in range(12):
            for i, port in enumerate(ports):
                [(_, data)] = plans[i][n]
                out.sendto(keyed[i][data], ("127.0.0.1", port))
        await until(lambda: socket_media.datagrams == 36)
        await asyncio.sleep(0.05)
        assert errors and all(isinstance(e, RuntimeError) for e in errors)
        for i in (0, 2):
            assert streams[i].timeline.stats().received == 12
        socket_media.close(ports)
        out.close()

    uvloop.run(body())


def test_a_finalizer_run_by_the_compiled_path_cannot_free_what_it_uses() -> None:
    """Setting last_packet_s releases the old value, which may run Python code (a
    finalizer) that replaces the stream's timeline; the compiled receiver still holds the
    timeline it places the decrypted packet on, and later packets go to the new one.
    PYTHONMALLOC=debug fills freed memory, so using a freed timeline crashes the child."""
    if not srtp_module.native_unprotect():
        pytest.skip("pylibsrtp without the libsrtp 2 interface srs knows")
    script = textwrap.dedent("""
        import time
        import uvloop
        from srs.rtp.srtp import SrtpInbound, SrtpReceiver
        from srs.rtp.track import TrackTimeline
        from srs.server.media import SocketMedia
        from tests.server.test_media import sender, until
        from tests.server.test_media_walk import SUITE, new_stream, protected
        from tests.sipclient import rtp_packet

        async def body():
            socket_media = SocketMedia("127.0.0.1", 30000, 30400, time.monotonic,
                                       receiver="compiled")
            [port] = socket_media.open(1, None)
            stream = new_stream(0, port, time.monotonic())
            stream.srtp = SrtpInbound(SrtpReceiver(SUITE, bytes(30)))
            socket_media.attach(port, stream)
            plan = [[(0, rtp_packet(i, 160 * i, 0x77, bytes(160)))] for i in range(40)]
            keyed = protected(0, plan)
            out = sender()

            class Finalizer:
                def __del__(self):
                    stream.timeline = TrackTimeline(stream.timeline.origin_s, 8000)

            for n in range(40):
                if n == 20:
                    stream.last_packet_s = Finalizer()
                [(_, data)] = plan[n]
                out.sendto(keyed[data], ("127.0.0.1", port))
                await until(lambda: socket_media.datagrams == n + 1)
            print(stream.timeline.stats().received)
            socket_media.close([port])
            out.close()

        uvloop.run(body())
    """)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONMALLOC="debug", PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["19"]  # packets 21-39, after the one placed on the old


def test_a_read_that_overlaps_the_compiled_receivers_own_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver reads into buffers of its own, one set for the process: a call made
    while poll_walk runs Python code (here receive_into for a decrypted packet the walk
    leaves) is refused, and the datagrams poll_walk still holds are the stream's own."""
    if not srtp_module.native_unprotect():
        pytest.skip("pylibsrtp without the libsrtp 2 interface srs knows")
    other = sender()
    nested: list[object] = []
    receive_into = TrackTimeline.receive_into

    def reading(self: TrackTimeline, data: bytes, now: float, out: list[Placed]) -> None:
        if armed and not nested and media._compiled is not None:
            try:
                nested.append(media._compiled.recv(other.fileno(), 64))
            except RuntimeError as error:
                nested.append(error)
        receive_into(self, data, now, out)

    monkeypatch.setattr(TrackTimeline, "receive_into", reading)
    armed = False

    async def body() -> None:
        nonlocal armed
        base = 20000 + 2 * (time.monotonic_ns() // 1000 % 10000)
        socket_media = SocketMedia("127.0.0.1", base, base + 400, time.monotonic,
                                   receiver="compiled")
        [port] = socket_media.open(1, None)
        stream = new_stream(0, port, time.monotonic())
        stream.srtp = SrtpInbound(SrtpReceiver(SUITE, bytes(30)))
        socket_media.attach(port, stream)
        plan = [[(0, rtp_packet(i, 160 * i, 0x77, bytes([i]) * 160))] for i in range(7)]
        keyed = protected(0, plan)
        out = sender()
        out.sendto(keyed[plan[0][0][1]], ("127.0.0.1", port))  # latches the sender
        await until(lambda: socket_media.datagrams == 1)
        for _ in range(6):  # queued where the nested read would go
            out.sendto(rtp_packet(99, 0, 0x99, bytes(160)), other.getsockname())
        armed = True
        for [(_, data)] in plan[1:]:
            out.sendto(keyed[data], ("127.0.0.1", port))
        await until(lambda: socket_media.datagrams == 7)
        stats = stream.timeline.stats()
        assert stats.received == 7 and not stats.dropped
        payloads = {p.payload for p in stream.take_pending(time.monotonic() + 1)}
        assert payloads == {bytes([i]) * 160 for i in range(7)}
        socket_media.close([port])
        out.close()

    uvloop.run(body())
    other.close()
    assert len(nested) == 1 and isinstance(nested[0], RuntimeError)
