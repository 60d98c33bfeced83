"""RTP sockets of the live server: one UDP socket per recorded stream, read in batches.

The recording core asks for ports (:class:`~srs.recording.core.OpenPorts`), attaches each
stream to its port and gives ports back; :class:`SocketMedia` binds real UDP sockets from
the port pool and hands every datagram to its stream (the per-packet path).  A replay
binds nothing: it routes captured datagrams to the streams itself.

Receiving (docs/architecture.md, "Hot path"): every RTP socket of the process is in one
epoll set, and the event loop watches only that set's descriptor.  Each wake-up reads
every ready socket until it is empty (or :data:`PER_SOCKET` datagrams, so that one
flooded port cannot starve the others; epoll is level-triggered and reports it again) and
hands the datagrams to their streams with one reading of the clock, each run of one
sender's datagrams in one :meth:`StreamState.receive_many` call.  The compiled
``_rtprecv`` module does that with epoll_wait and recvmmsg, and with the compiled
timeline walk (``srs/rtp/_rtpwalk.c``) it also does the common case itself -- a datagram
from the stream's latched source, decrypted there when the stream is SRTP with one key
held, that the walk places -- so that only the other datagrams reach Python; without it
(not built, not Linux, or ``receiver="python"``) the same is done with :mod:`select` and
``recvfrom``.  Every path delivers the same datagrams with the same sources, and places
and counts the same.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import select
import socket
from collections.abc import Callable
from types import ModuleType
from typing import Literal, TypeVar

from srs.errors import ServiceUnavailable, UsageError
from srs.recording.stream import StreamState
from srs.rtp import srtp, track
from srs.rtp.ports import PortPool
from srs.rtp.srtp import SrtpInbound, SrtpReceiver

__all__ = ["PER_SOCKET", "Receiver", "SocketMedia", "compiled_receiver"]

_compiled: ModuleType | None
try:
    _compiled = importlib.import_module("srs.server._rtprecv")
except ImportError:  # not built (no compiler at install time): the stdlib path below
    _compiled = None


def _bind_walk() -> bool:
    """Whether the compiled receiver can place the common case itself (both modules built)."""
    if _compiled is None or not track.compiled_walk():
        return False
    try:
        _compiled.bind_stream(StreamState, SrtpInbound, SrtpReceiver, srtp.native_unprotect(),
                              srtp.MAX_SRTP_DATAGRAM_BYTES)
    except (TypeError, ImportError):  # classes not laid out as it reads them: Python does it
        return False
    return True


_walking = _bind_walk()

Receiver = Literal["auto", "compiled", "python"]
_S = TypeVar("_S", bytes, tuple[str, int])

# Ports of the range another process holds are skipped; this many in a row give 503.
_BIND_ATTEMPTS = 32
_RTP_RCVBUF_BYTES = 256 * 1024
# Datagrams read from one socket per wake-up: 20 ms packets queue one or two per wake-up;
# a flooded port gives way to the others after this many.
PER_SOCKET = 64
_MAX_EVENTS = 1024  # ready sockets taken per epoll_wait
_MAX_DATAGRAM_BYTES = 65536  # a whole UDP datagram: nothing is ever truncated
# Distinct senders remembered for the compiled path's source keys; a flood of source
# ports only empties the cache.
_MAX_SOURCES = 4096


def compiled_receiver() -> bool:
    """True when the compiled batch receiver is available."""
    return _compiled is not None


class _Port:
    """One bound RTP socket and the stream it feeds (``None`` until attached: what
    arrives before is read and dropped, the client learns the port only from our answer)."""

    __slots__ = ("port", "sock", "stream")

    def __init__(self, port: int, sock: socket.socket) -> None:
        self.port = port
        self.sock = sock
        self.stream: StreamState | None = None


class SocketMedia:
    """UDP sockets on even ports from ``media.port_min``-``media.port_max``.

    ``receiver`` picks the receive path: ``"auto"`` (the compiled one when built),
    ``"compiled"`` (an error without it) or ``"python"``.
    """

    def __init__(self, host: str, port_min: int, port_max: int, clock: Callable[[], float],
                 *, receiver: Receiver = "auto") -> None:
        self.host = host
        self.pool = PortPool(port_min, port_max)
        self.clock = clock
        if receiver == "compiled" and _compiled is None:
            raise UsageError("the compiled RTP receiver (srs.server._rtprecv) is not built")
        self._compiled = _compiled if receiver != "python" else None
        self._ports: dict[int, _Port] = {}  # by port
        self._by_fd: dict[int, _Port] = {}
        self._streams: dict[int, StreamState] = {}  # by descriptor, for the compiled walk
        self._epoll: select.epoll | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sources: dict[bytes, tuple[str, int]] = {}
        self.datagrams = 0  # delivered to streams, for metrics and tests

    @property
    def receiver(self) -> Literal["compiled", "python"]:
        """The receive path in use."""
        return "compiled" if self._compiled is not None else "python"

    def open(self, count: int, near: int | None) -> list[int]:
        """Bind ``count`` sockets (next to port ``near`` when given) and watch them."""
        if count == 0:
            return []
        loop = asyncio.get_running_loop()
        skip: set[int] = set()
        for _ in range(_BIND_ATTEMPTS):
            now = self.clock()
            if near is not None:
                ports = [self.pool.allocate_near(near, now, skip=frozenset(skip))]
                while len(ports) < count:
                    ports.append(self.pool.allocate_near(ports[-1], now, skip=frozenset(skip)))
            else:
                ports = self.pool.allocate(count, now, skip=frozenset(skip))
            bound: list[_Port] = []
            failed = None
            for port in ports:
                try:
                    bound.append(_Port(port, self._bind(port)))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        # Not a busy port (no permission, no such address): give back what
                        # this attempt took before the error surfaces.
                        for entry in bound:
                            entry.sock.close()
                        self.pool.release(ports, self.clock())
                        raise
                    failed = port
                    break
            if failed is None:
                self._watch(loop, bound)
                return ports
            for entry in bound:
                entry.sock.close()
            self.pool.release(ports, self.clock() - self.pool.cooldown_s)
            skip.add(failed)
        raise ServiceUnavailable("Service Unavailable: RTP ports busy", retry_after_s=10)

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RTP_RCVBUF_BYTES)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((self.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _watch(self, loop: asyncio.AbstractEventLoop, bound: list[_Port]) -> None:
        if self._epoll is None or self._loop is not loop:
            if self._epoll is not None:
                self._unwatch_set()
            self._epoll = select.epoll()
            self._loop = loop
            loop.add_reader(self._epoll.fileno(), self._ready)
            for entry in self._by_fd.values():
                self._epoll.register(entry.sock.fileno(), select.EPOLLIN)
        for entry in bound:
            fd = entry.sock.fileno()
            self._epoll.register(fd, select.EPOLLIN)
            self._ports[entry.port] = entry
            self._by_fd[fd] = entry

    def _unwatch_set(self) -> None:
        epoll, loop = self._epoll, self._loop
        self._epoll = self._loop = None
        if epoll is None:
            return
        if loop is not None and not loop.is_closed():
            loop.remove_reader(epoll.fileno())
        epoll.close()

    def attach(self, port: int, stream: StreamState) -> None:
        entry = self._ports[port]
        entry.stream = stream
        self._streams[entry.sock.fileno()] = stream

    def close(self, ports: list[int]) -> None:
        released = []
        for port in ports:
            entry = self._ports.pop(port, None)
            if entry is None:
                continue
            fd = entry.sock.fileno()
            del self._by_fd[fd]
            self._streams.pop(fd, None)
            if self._epoll is not None:
                self._epoll.unregister(fd)
            entry.sock.close()
            released.append(port)
        if released:
            self.pool.release(released, self.clock())
        if not self._ports:
            self._unwatch_set()
            self._sources.clear()

    def drain(self, ports: list[int]) -> int:
        """Deliver everything already queued in these ports' sockets to their streams now
        (before a session's final flush, so the last packet sent before the BYE is in the
        recording); returns how many datagrams were delivered."""
        delivered = 0
        now = self.clock()
        for port in ports:
            entry = self._ports.get(port)
            if entry is None:
                continue
            attached = entry.stream is not None
            while True:
                count = self._read(entry, now, PER_SOCKET)
                if attached:
                    delivered += count
                if count < PER_SOCKET:
                    break
        return delivered

    # -- the per-packet path -------------------------------------------------------------

    def _ready(self) -> None:
        """The epoll set is readable: read every ready socket (see the module docstring)."""
        epoll = self._epoll
        if epoll is None:
            return
        now = self.clock()
        compiled = self._compiled
        by_fd = self._by_fd
        # A stream that raises (a bug) must not cost the other streams of the batch their
        # datagrams, which are already out of their sockets: the first error is raised
        # (to the loop's exception handler) once every socket is served.
        failure: Exception | None = None
        if compiled is not None:
            if _walking and type(now) is float:
                count, rest, failure = compiled.poll_walk(
                    epoll.fileno(), _MAX_EVENTS, PER_SOCKET, self._streams, self._sources, now)
            else:
                count, rest, failure = compiled.poll(epoll.fileno(), _MAX_EVENTS, PER_SOCKET)
            self.datagrams += count
            for fd, datagrams, keys in rest:
                entry = by_fd.get(fd)
                if entry is not None:
                    try:
                        self._deliver(entry, datagrams, keys, now)
                    except Exception as exc:  # raised below
                        failure = failure or exc
        else:
            for fd, _ in epoll.poll(0, _MAX_EVENTS):
                entry = by_fd.get(fd)
                if entry is not None:
                    try:
                        self._read(entry, now, PER_SOCKET)
                    except Exception as exc:  # raised below
                        failure = failure or exc
        if failure is not None:
            raise failure

    def _read(self, entry: _Port, now: float, limit: int) -> int:
        """Read up to ``limit`` datagrams of one socket and deliver them; how many."""
        compiled = self._compiled
        if compiled is not None:
            datagrams, keys = compiled.recv(entry.sock.fileno(), limit)
            self.datagrams += len(datagrams)
            self._deliver(entry, datagrams, keys, now)
            return len(datagrams)
        sock = entry.sock
        got: list[bytes] = []
        sources: list[tuple[str, int]] = []
        while len(got) < limit:
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # an ICMP error queued for a datagram we never sent: nothing to do
            got.append(data)
            sources.append((addr[0], addr[1]))
        self.datagrams += len(got)
        stream = entry.stream
        if stream is not None:
            for run, source in _runs(got, sources):
                stream.receive_many(run, source, now)
        return len(got)

    def _deliver(self, entry: _Port, datagrams: list[bytes], keys: list[bytes],
                 now: float) -> None:
        stream = entry.stream
        if stream is None:
            return
        for run, key in _runs(datagrams, keys):
            found = self._sources.get(key)
            stream.receive_many(run, found if found is not None else self._source(key), now)

    def _source(self, key: bytes) -> tuple[str, int]:
        """The (host, port) a compiled source key stands for, as ``recvfrom`` names it."""
        if len(key) == 6:
            source = (socket.inet_ntop(socket.AF_INET, key[:4]), int.from_bytes(key[4:]))
        elif len(key) == 18:
            source = (socket.inet_ntop(socket.AF_INET6, key[:16]), int.from_bytes(key[16:]))
        else:
            source = ("", 0)
        if len(self._sources) >= _MAX_SOURCES:
            self._sources.clear()
        self._sources[key] = source
        return source


def _runs(datagrams: list[bytes], sources: list[_S]) -> list[tuple[list[bytes], _S]]:
    """The datagrams split into runs of one source each, in order."""
    if not datagrams:
        return []
    first = sources[0]
    if all(source == first for source in sources):  # one sender: the common case
        return [(datagrams, first)]
    runs: list[tuple[list[bytes], _S]] = []
    for data, source in zip(datagrams, sources, strict=True):
        if runs and runs[-1][1] == source:
            runs[-1][0].append(data)
        else:
            runs.append(([data], source))
    return runs
