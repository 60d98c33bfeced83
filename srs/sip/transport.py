"""SIP transports: UDP, TCP and TLS listeners (asyncio glue only).

This module moves bytes.  It frames and parses with the pure parser, hands each message
and where it came from to one ``receive`` callback, and sends what it is told to send.
RFC 3261 §18: responses to requests that arrived on a connection go back on that
connection; over UDP the caller picks the destination (§18.2.2, RFC 3581).

Limits: message size (parser), connection count, idle time per connection, and bytes
buffered for writing to a slow peer (beyond which the connection is closed).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from srs.sip.parser import SipMessageError, StreamParser, is_keepalive, parse_message

__all__ = ["Peer", "SipTransports", "MessageCallback", "ParseErrorCallback"]

TransportName = Literal["udp", "tcp", "tls"]

# A peer that stops reading: close the connection rather than buffer without bound.
MAX_WRITE_BUFFER_BYTES = 1 << 20

# Ephemeral ports: how many UDP ports the system may hand out whose number TCP cannot
# also bind, before start() gives up (each try is a new port; a clash is rare).
EPHEMERAL_ATTEMPTS = 16


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and so how to reach back (the transport's address)."""

    transport: TransportName
    host: str
    port: int
    connection_id: int | None = None
    local_port: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


MessageCallback = Callable[[Any, Peer], None]
ParseErrorCallback = Callable[[SipMessageError, Peer], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        peer = Peer("udp", _host(addr[0]), addr[1], None, self.owner.udp_port)
        if is_keepalive(data):
            return  # RFC 5626 §3.5.1 CRLF keepalive
        try:
            message = parse_message(data, max_message_bytes=self.owner.max_message_bytes)
        except SipMessageError as exc:
            self.owner.on_parse_error(exc, peer)
            return
        self.owner.on_message(message, peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from an earlier sendto (port unreachable): nothing to do per message.
        self.owner.counters["udp_errors"] += 1


class _Stream(asyncio.Protocol):
    def __init__(self, owner: SipTransports, name: TransportName) -> None:
        self.owner = owner
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.parser = StreamParser(max_message_bytes=owner.max_message_bytes)
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.owner.connections) >= self.owner.max_connections:
            self.owner.counters["connections_refused"] += 1
            transport.close()
            return
        addr = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        conn_id = next(self.owner.connection_ids)
        self.peer = Peer(self.name, _host(addr[0]), addr[1], conn_id, sock[1] if sock else 0)
        self.owner.connections[conn_id] = self

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            return
        self.last_activity = time.monotonic()
        try:
            messages = self.parser.feed(data)
        except SipMessageError as exc:
            for message in exc.messages:
                self.owner.on_message(message, self.peer)
            self.owner.on_parse_error(exc, self.peer)
            if exc.framing_lost:
                # The stream cannot be re-framed: answer if we could, then close.
                self.close()
            return
        for message in messages:
            self.owner.on_message(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.owner.connections.pop(self.peer.connection_id, None)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER_BYTES:
            self.owner.counters["slow_peer_closed"] += 1
            self.close()
            return
        self.last_activity = time.monotonic()
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipTransports:
    """The SIP listeners of one server.  ``start()`` binds; ``close()`` unbinds.

    With ``ephemeral`` the enabled listeners (a port of 0 still disables one) bind a port
    the system chooses instead of ``port`` and ``tls_port``; ``udp_port``, ``tcp_port``
    and ``bound_tls_port`` say what they got.

    ``on_message(message, peer)`` and ``on_parse_error(error, peer)`` are called from
    the event loop for every message received.  ``send(peer, data)`` sends to a peer:
    over UDP to ``(peer.host, peer.port)`` from the listening socket, over TCP/TLS on the
    connection ``peer.connection_id`` (dropped, and counted, if it has gone).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls_port: int,
        tls_context: ssl.SSLContext | None,
        on_message: MessageCallback,
        on_parse_error: ParseErrorCallback,
        max_message_bytes: int = 65535,
        max_connections: int = 1024,
        idle_timeout_s: float = 300.0,
        in_use: Callable[[int], bool] | None = None,
        ephemeral: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.ephemeral = ephemeral
        self.tls_context = tls_context
        self.on_message = on_message
        self.on_parse_error = on_parse_error
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        # Connections that still carry a dialog are never idle-closed: our BYE may need them
        # hours later (a recorded call sends no SIP while it lasts).
        self.in_use = in_use or (lambda connection_id: False)
        self.connections: dict[int, _Stream] = {}
        self.connection_ids = itertools.count(1)
        self.counters: dict[str, int] = {
            "udp_errors": 0,
            "connections_refused": 0,
            "slow_peer_closed": 0,
            "idle_closed": 0,
            "send_no_connection": 0,
        }
        self.udp_port = 0
        self.tcp_port = 0
        self.bound_tls_port = 0
        self._udp: _Udp | None = None
        self._udp_family = socket.AF_INET
        self._servers: list[asyncio.base_events.Server] = []
        self._idle_handle: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.port:
            udp, tcp = _bound_pair(family, self.host, 0 if self.ephemeral else self.port)
            try:
                _, protocol = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            self._udp = protocol
            self._udp_family = family
            self.udp_port = udp.getsockname()[1]
            server = await loop.create_server(lambda: _Stream(self, "tcp"), sock=tcp, backlog=256)
            self._servers.append(server)
            self.tcp_port = self.udp_port
        if self.tls_port and self.tls_context is not None:
            tls_port = 0 if self.ephemeral else self.tls_port
            tls = _bound_socket(family, socket.SOCK_STREAM, self.host, tls_port)
            server = await loop.create_server(
                lambda: _Stream(self, "tls"),
                sock=tls,
                ssl=self.tls_context,
                backlog=256,
                ssl_handshake_timeout=10.0,
            )
            self._servers.append(server)
            self.bound_tls_port = tls.getsockname()[1]
        self._schedule_idle_check()

    def send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "udp":
            if self._udp is not None and self._udp.transport is not None:
                host = peer.host
                if self._udp_family == socket.AF_INET6 and "." in host:
                    host = "::ffff:" + host  # an IPv4 peer of a dual-stack socket
                self._udp.transport.sendto(data, (host, peer.port))
            return
        connection = self.connections.get(peer.connection_id or -1)
        if connection is None:
            # RFC 3261 §18.2.2 would have us open a new connection to the Via sent-by;
            # a recording client that closed its connection mid-transaction gets nothing.
            self.counters["send_no_connection"] += 1
            return
        connection.send(data)

    def _schedule_idle_check(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(min(self.idle_timeout_s, 5.0), self._close_idle)

    def _close_idle(self) -> None:
        deadline = time.monotonic() - self.idle_timeout_s
        for connection_id, connection in list(self.connections.items()):
            if connection.last_activity < deadline and not self.in_use(connection_id):
                self.counters["idle_closed"] += 1
                connection.close()
        self._schedule_idle_check()

    async def close(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()


def _bound_pair(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port number (RFC 3261 §18: 5060 for
    both).  For port 0 the number is the one the system gave UDP; when TCP cannot have it
    too, try again with a new one, ``EPHEMERAL_ATTEMPTS`` times at most."""
    attempts = 1 if port else EPHEMERAL_ATTEMPTS
    while True:
        attempts -= 1
        udp = _bound_socket(family, socket.SOCK_DGRAM, host, port)
        try:
            return udp, _bound_socket(family, socket.SOCK_STREAM, host, udp.getsockname()[1])
        except OSError as exc:
            udp.close()
            if attempts == 0 or exc.errno != errno.EADDRINUSE:
                raise


def _bound_socket(family: int, kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" serves IPv4 too (as IPv4-mapped addresses).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _host(address: str) -> str:
    """Normalise a socket address: IPv4-mapped IPv6 back to IPv4 for logs and allow-lists."""
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address
