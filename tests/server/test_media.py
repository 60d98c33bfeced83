"""SocketMedia on real loopback sockets: both receive paths (the compiled batch receiver
and the stdlib fallback) deliver every datagram whole, with its source, to its stream;
drain() takes what is queued at once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from srs.errors import UsageError
from srs.rtp import srtp, track
from srs.server import media
from srs.server.media import PER_SOCKET, SocketMedia

RECEIVERS = [
    "python",
    pytest.param("compiled", marks=pytest.mark.skipif(
        not media.compiled_receiver(), reason="srs.server._rtprecv is not built")),
]


class Recording:
    """Stands in for a StreamState: keeps what the media layer delivers."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int], float]] = []

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self.got.append((data, source, now))

    def receive_many(self, datagrams: list[bytes], source: tuple[str, int], now: float) -> None:
        for data in datagrams:
            self.receive(data, source, now)


def run(body: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(body())  # type: ignore[arg-type]


def media_for(receiver: str, host: str = "127.0.0.1") -> SocketMedia:
    base = 20000 + 2 * (time.monotonic_ns() // 1000 % 10000)
    return SocketMedia(host, base, base + 400, time.monotonic, receiver=receiver)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def sender(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_every_datagram_reaches_its_stream_whole_with_its_source(receiver: str) -> None:
    async def body() -> None:
        socket_media = media_for(receiver)
        assert socket_media.receiver == receiver
        ports = socket_media.open(3, None)
        streams = [Recording() for _ in ports]
        for port, stream in zip(ports, streams, strict=True):
            socket_media.attach(port, stream)  # type: ignore[arg-type]
        senders = [sender(), sender()]
        # Several senders per port, a datagram too large for any small buffer.
        sent: dict[int, list[tuple[bytes, tuple[str, int]]]] = {p: [] for p in ports}
        for i in range(300):
            port = ports[i % 3]
            out = senders[(i // 3) % 2]
            data = bytes([i % 256]) * (60000 if i == 7 else 172) + i.to_bytes(4, "big")
            out.sendto(data, ("127.0.0.1", port))
            sent[port].append((data, out.getsockname()))
        await until(lambda: sum(len(s.got) for s in streams) == 300)
        for port, stream in zip(ports, streams, strict=True):
            assert [(d, s) for d, s, _ in stream.got] == sent[port]
        assert socket_media.datagrams == 300
        socket_media.close(ports)
        for out in senders:
            out.close()

    run(body)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_flooded_port_is_read_over_several_wakeups_and_others_still_get_theirs(
        receiver: str) -> None:
    async def body() -> None:
        socket_media = media_for(receiver)
        quiet, flooded = socket_media.open(2, None)
        streams = {quiet: Recording(), flooded: Recording()}
        for port, stream in streams.items():
            socket_media.attach(port, stream)  # type: ignore[arg-type]
        out = sender()
        count = 4 * PER_SOCKET  # within the socket buffer: none lost to the kernel
        for i in range(count):
            out.sendto(i.to_bytes(4, "big"), ("127.0.0.1", flooded))
        out.sendto(b"quiet", ("127.0.0.1", quiet))
        await until(lambda: len(streams[flooded].got) == count and len(streams[quiet].got) == 1)
        assert [int.from_bytes(d, "big") for d, _, _ in streams[flooded].got] == list(range(count))
        socket_media.close([quiet, flooded])
        out.close()

    run(body)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_datagrams_before_attach_are_dropped(receiver: str) -> None:
    async def body() -> None:
        socket_media = media_for(receiver)
        (port,) = socket_media.open(1, None)
        out = sender()
        out.sendto(b"early", ("127.0.0.1", port))
        await until(lambda: socket_media.datagrams == 1)  # read and dropped
        stream = Recording()
        socket_media.attach(port, stream)  # type: ignore[arg-type]
        out.sendto(b"late", ("127.0.0.1", port))
        await until(lambda: len(stream.got) == 1)
        assert stream.got[0][0] == b"late"
        socket_media.close([port])
        out.close()

    run(body)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_drain_delivers_what_is_queued_before_the_loop_runs(receiver: str) -> None:
    async def body() -> None:
        socket_media = media_for(receiver)
        first, second, other = socket_media.open(3, None)
        streams = {p: Recording() for p in (first, second, other)}
        for port, stream in streams.items():
            socket_media.attach(port, stream)  # type: ignore[arg-type]
        out = sender()
        # More than one read's worth on one port; nothing awaits in between, so the loop
        # has not read any of it when drain() runs.
        for i in range(PER_SOCKET + 50):
            out.sendto(b"a%d" % i, ("127.0.0.1", first))
        for i in range(50):
            out.sendto(b"b%d" % i, ("127.0.0.1", second))
        out.sendto(b"other", ("127.0.0.1", other))
        assert socket_media.drain([first, second]) == PER_SOCKET + 100
        assert [d for d, _, _ in streams[first].got] == [b"a%d" % i for i in range(PER_SOCKET + 50)]
        assert [d for d, _, _ in streams[second].got] == [b"b%d" % i for i in range(50)]
        assert streams[other].got == []  # not drained: it comes the normal way
        assert socket_media.drain([first, second]) == 0  # empty: returns at once
        await until(lambda: len(streams[other].got) == 1)
        socket_media.close([first, second, other])
        assert socket_media.drain([first]) == 0  # a closed port is nothing to drain
        out.close()

    run(body)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_close_gives_the_ports_back_and_stops_reading(receiver: str) -> None:
    async def body() -> None:
        socket_media = media_for(receiver)
        ports = socket_media.open(2, None)
        socket_media.close(ports)
        for port in ports:  # the sockets are gone: the port can be bound again
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", port))
            probe.close()
        # New sockets after the set was emptied: read again.
        (port,) = socket_media.open(1, None)
        stream = Recording()
        socket_media.attach(port, stream)  # type: ignore[arg-type]
        out = sender()
        out.sendto(b"again", ("127.0.0.1", port))
        await until(lambda: len(stream.got) == 1)
        socket_media.close([port])
        out.close()

    run(body)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_dual_stack_sources_are_named_as_recvfrom_names_them(receiver: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def body() -> None:
        socket_media = media_for(receiver, host="::")
        (port,) = socket_media.open(1, None)
        stream = Recording()
        socket_media.attach(port, stream)  # type: ignore[arg-type]
        v4, v6 = sender(), sender(socket.AF_INET6, "::1")
        v4.sendto(b"4", ("127.0.0.1", port))
        await until(lambda: len(stream.got) == 1)
        v6.sendto(b"6", ("::1", port))
        await until(lambda: len(stream.got) == 2)
        assert [(d, s) for d, s, _ in stream.got] == [
            (b"4", ("::ffff:127.0.0.1", v4.getsockname()[1])),
            (b"6", ("::1", v6.getsockname()[1])),
        ]
        socket_media.close([port])
        v4.close()
        v6.close()

    try:
        run(body)
    except OSError as exc:  # a machine without IPv6 on loopback
        pytest.skip(str(exc))


def test_asking_for_the_compiled_receiver_without_it_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "_compiled", None)
    with pytest.raises(UsageError, match="not built"):
        SocketMedia("127.0.0.1", 20000, 20010, time.monotonic, receiver="compiled")
    assert SocketMedia("127.0.0.1", 20000, 20010, time.monotonic).receiver == "python"


def test_the_compiled_receiver_is_built_here() -> None:
    """The install builds it on this machine (gcc and Python headers are there); a fresh
    machine without them falls back, which the test above covers."""
    if not media.compiled_receiver():
        pytest.skip("not built")
    module: Any = media._compiled
    assert module.recv(-1, 4) == ([], [])  # a bad descriptor reads as empty


def test_the_compiled_receiver_places_the_common_case_wherever_the_walk_is_built() -> None:
    """With both compiled modules built, the receiver binds to StreamState and SRTP (so a
    change to their slots that the C code cannot follow fails here, not silently)."""
    assert media._walking == (media.compiled_receiver() and track.compiled_walk())
    if media._walking:
        assert srtp.native_unprotect() != 0


class Failing(Recording):
    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        raise RuntimeError("a bug in one stream")


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_stream_that_raises_costs_the_others_nothing(receiver: str) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        socket_media = media_for(receiver)
        ports = socket_media.open(3, None)
        streams = [Recording(), Failing(), Recording()]
        for port, stream in zip(ports, streams, strict=True):
            socket_media.attach(port, stream)  # type: ignore[arg-type]
        out = sender()
        for round_ in range(5):
            for port in ports:  # one burst: all three sockets ready in one wake-up
                out.sendto(b"%d" % round_, ("127.0.0.1", port))
        await until(lambda: len(streams[0].got) == 5 and len(streams[2].got) == 5)
        assert errors and all(isinstance(e, RuntimeError) for e in errors)  # reported, not hidden
        socket_media.close(ports)
        out.close()

    run(body)
