"""The RTP receive path alone, against the C floor, in one run: CPU per packet.

Run: ``.venv/bin/python bench/bench_receive.py [streams] [seconds]`` (default 600 streams,
5 s; 600 streams is 300 two-stream calls, 30,000 packets/s).  Needs gcc, taskset and two
cores; sends only to 127.0.0.1.

``rtp_sender.c`` (pinned to core 1) sends paced 20 ms PCMU to ``streams`` ports; the
receiver, pinned to core 0, is in turn:

* ``floor``: ``floor_receiver.c`` (epoll + recvmmsg, counting);
* ``uvloop protocol``: one asyncio datagram endpoint per port under uvloop, each datagram a
  ``datagram_received`` call (how srs received before the batched receiver);
* ``SocketMedia python``: srs's receiver on its stdlib path (select.epoll + recvfrom);
* ``SocketMedia compiled``: srs's receiver with the compiled ``_rtprecv`` module;
* ``SocketMedia compiled, no walk`` (real streams only): the same reading, with the
  compiled timeline walk turned off, so that every datagram is placed in Python (what the
  compiled receiver did before the walk);

each first with streams that only count what they get (the receive layer), then for the
srs paths with each datagram going through a real ``TrackTimeline.receive_into`` (what a
stream did per packet before the compiled walk, without SRTP), then with real
``StreamState`` streams (latch, timeline, pending payloads taken once a second as a tick
does): the stdlib path hands every datagram to ``StreamState.receive_many``, the compiled
one places the common case itself with the compiled timeline walk (``srs/rtp/_rtpwalk.c``)
when that is built.  CPU is this process's (``process_time``) over the sending window
plus a short drain.  No assertions: timing goals live here, not in tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import uvloop

from srs.recording.stream import StreamState
from srs.rtp import track
from srs.rtp.sources import DEFAULT_POLICY, MediaSources
from srs.rtp.track import Placed, TrackTimeline
from srs.sdp.answer import AnsweredStream
from srs.sdp.description import Direction
from srs.server import media as media_module
from srs.server.media import SocketMedia

HERE = Path(__file__).resolve().parent
RECEIVER_CORE, SENDER_CORE = 0, 1
WALKING = media_module._walking  # the compiled receiver does the common case itself
DRAIN_S = 0.5


class Counting:
    __slots__ = ("packets",)

    def __init__(self) -> None:
        self.packets = 0

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self.packets += 1

    def receive_many(self, datagrams: list[bytes], source: tuple[str, int], now: float) -> None:
        for data in datagrams:
            self.receive(data, source, now)


class Timeline(Counting):
    """What a StreamState does per packet without SRTP: the timeline, pending payloads."""

    __slots__ = ("timeline", "pending")

    def __init__(self) -> None:
        super().__init__()
        self.timeline = TrackTimeline(time.monotonic(), 8000)
        self.timeline.accept_payload_types((0,), (0,))
        self.pending: list[Placed] = []

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self.packets += 1
        self.timeline.receive_into(data, now, self.pending)
        if len(self.pending) >= 50:  # a tick takes them about once a second
            self.pending = []


def stream_state() -> StreamState:
    """A recorded PCMU stream as a session makes it, accepting 127.0.0.1."""
    timeline = TrackTimeline(time.monotonic(), 8000, event_payload_types=(101,))
    timeline.accept_payload_types((0, 101), (0,))
    answered = AnsweredStream(0, "bench", 0, Direction.SENDONLY, 0, "PCMU", 8000, 101)
    sources = MediaSources(DEFAULT_POLICY, offer_host="127.0.0.1", signalling_host=None)
    return StreamState(0, "bench", answered, timeline, {}, sources)


def received(consumer: Counting | StreamState) -> int:
    if isinstance(consumer, StreamState):
        return consumer.timeline.stats().received
    return consumer.packets


async def ticks(streams: list[StreamState]) -> None:
    """What the recording core's tick does on the loop: take each stream's payloads."""
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for stream in streams:
            stream.take_pending(now)


class Protocol(asyncio.DatagramProtocol):
    def __init__(self, stream: Counting) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stream.receive(data, (addr[0], addr[1]), time.monotonic())


def build(work: Path) -> tuple[Path, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("gcc not found")
    out = []
    for name, libs in (("rtp_sender", ["-lm"]), ("floor_receiver", [])):
        binary = work / name
        subprocess.run([gcc, "-O2", "-o", str(binary), str(HERE / f"{name}.c"), *libs],
                       check=True)
        out.append(binary)
    return out[0], out[1]


def free_base(streams: int) -> int:
    """An even base port whose ``streams`` even ports above are free right now (other
    benchmarks may hold ports on this machine)."""
    for _ in range(50):
        base = random.randrange(20000, 32000 - 2 * streams, 2)
        probes: list[socket.socket] = []
        try:
            for i in range(streams):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", base + 2 * i))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    sys.exit("no free port block")


def send(sender: Path, ports: list[int], seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["taskset", "-c", str(SENDER_CORE), str(sender), f"{seconds:g}"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None
    proc.stdin.write("".join(f"127.0.0.1 {p}\n" for p in ports))
    proc.stdin.close()
    return proc


async def srs_run(mode: str, make: Callable[[], Counting | StreamState], sender: Path,
                  streams: int, seconds: float) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    base = free_base(streams)
    transports: list[asyncio.BaseTransport] = []
    media: SocketMedia | None = None
    consumers = [make() for _ in range(streams)]
    if mode == "uvloop protocol":
        ports = [base + 2 * i for i in range(streams)]
        for port, consumer in zip(ports, consumers, strict=True):
            transport, _ = await loop.create_datagram_endpoint(
                lambda c=consumer: Protocol(c), local_addr=("127.0.0.1", port))  # type: ignore[misc,arg-type]
            transports.append(transport)
    else:
        receiver = "python" if mode == "SocketMedia python" else "compiled"
        walking = mode == "SocketMedia compiled"
        # "compiled, no walk": the compiled reading with every datagram handed to Python
        # and placed there, as before the compiled walk.
        media_module._walking = walking and WALKING
        track.use_compiled_walk(walking)
        media = SocketMedia("127.0.0.1", base, base + 2 * streams - 2, time.monotonic,
                            receiver=receiver)  # type: ignore[arg-type]
        ports = media.open(streams, None)
        for port, consumer in zip(ports, consumers, strict=True):
            media.attach(port, consumer)  # type: ignore[arg-type]
    tick = asyncio.create_task(ticks([c for c in consumers if isinstance(c, StreamState)]))
    cpu = time.process_time()
    proc = send(sender, ports, seconds)
    while proc.poll() is None:
        await asyncio.sleep(0.05)
    await asyncio.sleep(DRAIN_S)
    cpu = time.process_time() - cpu
    tick.cancel()
    proc.wait()
    media_module._walking = WALKING
    track.use_compiled_walk(True)
    for transport in transports:
        transport.close()
    if media is not None:
        media.close(ports)
    await asyncio.sleep(0.1)
    return cpu, sum(received(c) for c in consumers)


def floor_run(floor: Path, sender: Path, streams: int, seconds: float) -> tuple[float, int]:
    base = free_base(streams)
    proc = subprocess.Popen(["taskset", "-c", str(RECEIVER_CORE), str(floor), "127.0.0.1",
                             str(base), str(streams), f"{seconds + 60:g}"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # ready
    started = send(sender, [base + 2 * i for i in range(streams)], seconds)
    started.wait()
    time.sleep(DRAIN_S)
    proc.terminate()
    result = json.loads(proc.communicate()[0].strip().splitlines()[-1])
    return float(result["cpu_s"]), int(result["packets"])


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    os.sched_setaffinity(0, {RECEIVER_CORE})
    print(f"{streams} streams, {streams * 50} packets/s for {seconds:g} s, Python"
          f" {sys.version.split()[0]}, compiled receiver built: {media_module.compiled_receiver()},"
          f" compiled walk built: {track.compiled_walk()}")
    with tempfile.TemporaryDirectory() as tmp:
        sender, floor = build(Path(tmp))
        cpu, packets = floor_run(floor, sender, streams, seconds)
        floor_us = cpu / max(1, packets) * 1e6
        print(f"{'floor':<40} {floor_us:6.2f} us/packet  ({packets} packets)")
        modes = ["uvloop protocol", "SocketMedia python"]
        if media_module.compiled_receiver():
            modes.append("SocketMedia compiled")
            if WALKING:
                modes.append("SocketMedia compiled, no walk")
        consumers: list[tuple[str, Callable[[], Counting | StreamState]]] = [
            ("count", Counting), ("timeline", Timeline), ("stream", stream_state)]
        for consumer_name, make in consumers:
            for mode in modes:
                if consumer_name == "stream" and mode == "uvloop protocol":
                    continue  # srs's streams are fed by SocketMedia only
                if consumer_name != "stream" and mode.endswith("no walk"):
                    continue  # the same as "compiled" for streams without a timeline walk
                cpu, packets = uvloop.run(srs_run(mode, make, sender, streams, seconds))
                us = cpu / max(1, packets) * 1e6
                print(f"{mode + ' + ' + consumer_name:<40} {us:6.2f} us/packet"
                      f"  {us / floor_us:5.2f}x floor  ({packets} packets)")


if __name__ == "__main__":
    main()
