"""RTP sockets of the live server: one UDP socket per recorded stream.

The recording core asks for ports (:class:`~srs.recording.core.OpenPorts`), attaches each
stream to its port and gives ports back; :class:`SocketMedia` binds real UDP sockets from
the port pool and hands every datagram to its stream (the per-packet path).  A replay
binds nothing: it routes captured datagrams to the streams itself.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

from srs.errors import ServiceUnavailable
from srs.recording.stream import StreamState
from srs.rtp.ports import PortPool

__all__ = ["SocketMedia"]

# Ports of the range another process holds are skipped; this many in a row give 503.
_BIND_ATTEMPTS = 32
_RTP_RCVBUF_BYTES = 256 * 1024
# A drain reads at most this many datagrams a port (what a full receive buffer holds).
_DRAIN_MAX = 2048
_DATAGRAM_MAX = 65535


class _RtpProtocol(asyncio.DatagramProtocol):
    """The per-packet path: one call into the stream, nothing else."""

    __slots__ = ("stream", "clock")

    def __init__(self, stream: StreamState, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.clock = clock

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stream.receive(data, (addr[0], addr[1]), self.clock())

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP for a datagram we never sent: nothing to do


class SocketMedia:
    """UDP sockets on even ports from ``media.port_min``-``media.port_max``."""

    def __init__(self, host: str, port_min: int, port_max: int, clock: Callable[[], float]) -> None:
        self.host = host
        self.pool = PortPool(port_min, port_max)
        self.clock = clock
        self.transports: dict[int, asyncio.DatagramTransport] = {}
        self.sockets: dict[int, socket.socket] = {}
        self.streams: dict[int, StreamState] = {}

    async def open(self, count: int, near: int | None) -> list[int]:
        if count == 0:
            return []
        skip: set[int] = set()
        for _ in range(_BIND_ATTEMPTS):
            now = self.clock()
            if near is not None:
                ports = [self.pool.allocate_near(near, now, skip=frozenset(skip))]
                while len(ports) < count:
                    ports.append(self.pool.allocate_near(ports[-1], now, skip=frozenset(skip)))
            else:
                ports = self.pool.allocate(count, now, skip=frozenset(skip))
            bound: dict[int, asyncio.DatagramTransport] = {}
            failed = None
            for port in ports:
                try:
                    bound[port] = await self._bind(port)
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        # Not a busy port (no permission, no such address): give back what
                        # this attempt took before the error surfaces.
                        self._close_bound(bound)
                        self.pool.release(ports, self.clock())
                        raise
                    failed = port
                    break
            if failed is None:
                self.transports.update(bound)
                return ports
            self._close_bound(bound)
            self.pool.release(ports, self.clock() - self.pool.cooldown_s)
            skip.add(failed)
        raise ServiceUnavailable("Service Unavailable: RTP ports busy", retry_after_s=10)

    async def _bind(self, port: int) -> asyncio.DatagramTransport:
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
        # A placeholder protocol until the stream exists (the client learns the port only
        # from our answer, so nothing of value arrives before attach).
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=sock)
        self.sockets[port] = sock  # for drain(): uvloop's transport hides its socket
        return transport

    def _close_bound(self, bound: dict[int, asyncio.DatagramTransport]) -> None:
        for port, transport in bound.items():
            self.sockets.pop(port, None)
            transport.close()

    def attach(self, port: int, stream: StreamState) -> None:
        self.transports[port].set_protocol(_RtpProtocol(stream, self.clock))
        self.streams[port] = stream

    def drain(self, ports: list[int]) -> int:
        """Deliver what is already queued on ``ports`` to their streams now; how many
        datagrams that was."""
        delivered = 0
        now = self.clock()
        for port in ports:
            sock, stream = self.sockets.get(port), self.streams.get(port)
            if sock is None or stream is None:
                continue
            for _ in range(_DRAIN_MAX):
                try:
                    data, addr = sock.recvfrom(_DATAGRAM_MAX)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # ICMP error queued on the socket: nothing more to read
                stream.receive(data, (addr[0], addr[1]), now)
                delivered += 1
        return delivered

    def close(self, ports: list[int]) -> None:
        released = []
        for port in ports:
            self.sockets.pop(port, None)
            self.streams.pop(port, None)
            transport = self.transports.pop(port, None)
            if transport is not None:
                transport.close()
                released.append(port)
        if released:
            self.pool.release(released, self.clock())
