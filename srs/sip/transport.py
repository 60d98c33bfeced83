"""SIP transports: UDP, TCP and TLS listeners (asyncio glue only).

This module moves bytes.  It frames and parses with the pure parser, hands each message
and where it came from to one ``receive`` callback, and sends what it is told to send.
RFC 3261 §18: responses to requests that arrived on a connection go back on that
connection; over UDP the caller picks the destination (§18.2.2, RFC 3581).

Limits: message size (parser); bytes buffered for writing to a slow peer (beyond which the
connection is aborted); and for TCP/TLS connections, decided when one is accepted, before
a byte of it is read (for TLS: before the handshake):

* a source outside the address allow-list is closed at once;
* at most ``max_connections_per_ip`` per source (an IPv6 source counts per /64);
* at most ``max_connections`` in all; when full, a new connection evicts the oldest one
  that has not sent a complete message yet, else the oldest that carries no dialog
  (hoarders, idle or chatty, cannot shut callers out), and is refused only when every
  connection carries a call;
* a connection must complete its first message (and TLS handshake) within
  ``first_message_timeout_s`` of being accepted, and is then closed after
  ``idle_timeout_s`` without traffic (unless a dialog still uses it).

The deadlines sit in a heap checked by one timer, so a check costs work for what is due,
not for every connection.  ``send`` never raises: what cannot be sent is counted and
dropped.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import ipaddress
import itertools
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from srs.config import IpAddress, IpNetwork, ip_of
from srs.sip.parser import SipMessageError, StreamParser, is_keepalive, parse_message

__all__ = ["Peer", "SipTransports", "MessageCallback", "ParseErrorCallback"]

TransportName = Literal["udp", "tcp", "tls"]

# A peer that stops reading: close the connection rather than buffer without bound.
MAX_WRITE_BUFFER_BYTES = 1 << 20

# Ephemeral ports: how many UDP ports the system may hand out whose number TCP cannot
# also bind, before start() gives up (each try is a new port; a clash is rare).
EPHEMERAL_ATTEMPTS = 16

LISTEN_BACKLOG = 256
# After accept() fails (out of file descriptors), wait this long before the next one.
ACCEPT_RETRY_S = 0.1

# A TLS close waits this long for the peer's close_notify before dropping the socket.
TLS_SHUTDOWN_TIMEOUT_S = 5.0


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
    """One TCP or TLS connection, taken by ``SipTransports`` before asyncio sees it;
    ``connection_made`` brings its transport (for TLS, after the handshake)."""

    def __init__(self, owner: SipTransports, peer: Peer, source: str) -> None:
        self.owner = owner
        self.peer = peer
        self.source = source  # the key per-source limits count under
        self.transport: asyncio.Transport | None = None  # None until connected
        self.connecting: asyncio.Task[None] | None = None  # while the handshake runs
        self.registered = False
        self.closed = False
        self.framed = False  # a first complete message has arrived
        self.parser = StreamParser(max_message_bytes=owner.max_message_bytes)
        self.opened_at = self.last_activity = owner.now()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream socket's transport
        if self.closed:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.owner.now()
        while not self.closed:
            try:
                messages = self.parser.feed(data)
            except SipMessageError as exc:
                self.mark_framed()
                for message in exc.messages:
                    self.owner.on_message(message, self.peer)
                self.owner.on_parse_error(exc, self.peer)
                if exc.framing_lost:
                    # The stream cannot be re-framed: answer if we could, then close.
                    self.close()
                    return
                # The bad message was framed and skipped: what is buffered behind it is
                # parsed now, not when the peer next sends (it may be waiting for us).
                data = b""
                continue
            if messages:
                self.mark_framed()
            for message in messages:
                self.owner.on_message(message, self.peer)
            return

    def mark_framed(self) -> None:
        if not self.framed:
            self.framed = True
            self.owner.framed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.forget(self)

    def deadline(self, first_message_timeout_s: float, idle_timeout_s: float) -> float:
        if self.framed:
            return self.last_activity + idle_timeout_s
        return self.opened_at + first_message_timeout_s

    def send(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.owner.counters["send_dropped"] += 1
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER_BYTES:
            self.owner.counters["slow_peer_closed"] += 1
            self.abort()  # close() would wait for a peer that does not read
            return
        self.last_activity = self.owner.now()
        try:
            transport.write(data)
        except (OSError, RuntimeError):  # RuntimeError: written after the transport's EOF
            self.owner.counters["send_dropped"] += 1
            self.abort()

    def close(self) -> None:
        """Flush what is buffered, then close."""
        self.closed = True
        self.owner.forget(self)
        if self.transport is not None:
            self.transport.close()
        elif self.connecting is not None:
            self.connecting.cancel()  # during the TLS handshake: the socket is closed

    def abort(self) -> None:
        """Close now, dropping what is buffered (the socket is released at once)."""
        self.closed = True
        self.owner.forget(self)
        if self.transport is not None:
            self.transport.abort()
        elif self.connecting is not None:
            self.connecting.cancel()


class SipTransports:
    """The SIP listeners of one server.  ``start()`` binds; ``close()`` unbinds.

    With ``ephemeral`` the enabled listeners (a port of 0 still disables one) bind a port
    the system chooses instead of ``port`` and ``tls_port``; ``udp_port``, ``tcp_port``
    and ``bound_tls_port`` say what they got.

    ``on_message(message, peer)`` and ``on_parse_error(error, peer)`` are called from
    the event loop for every message received.  ``send(peer, data)`` sends to a peer:
    over UDP to ``(peer.host, peer.port)`` from the listening socket, over TCP/TLS on the
    connection ``peer.connection_id``.  It never raises: a connection that has gone, is
    closing or is over its write buffer, a destination that is not an IP address literal
    of the socket's family, and a send the system refuses are counted and dropped.

    ``allow_networks``, when not empty, is the only sources TCP and TLS connections are
    accepted from (UDP requests from elsewhere are refused by the SIP core, with a 403).
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
        max_connections_per_ip: int = 64,
        first_message_timeout_s: float = 5.0,
        idle_timeout_s: float = 300.0,
        allow_networks: Sequence[IpNetwork] = (),
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
        self.max_connections_per_ip = max_connections_per_ip
        self.first_message_timeout_s = first_message_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.allow_networks = tuple(allow_networks)
        # Connections that still carry a dialog are never idle-closed: our BYE may need them
        # hours later (a recorded call sends no SIP while it lasts).
        self.in_use = in_use or (lambda connection_id: False)
        self.connections: dict[int, _Stream] = {}
        self.connection_ids = itertools.count(1)
        self.counters: dict[str, int] = {
            "udp_errors": 0,
            "connections_refused": 0,  # all connections have sent a message, and it is full
            "connections_refused_source": 0,  # its source is at max_connections_per_ip
            "connections_not_allowed": 0,  # its source is outside allow_networks
            "connections_evicted": 0,  # made way for a new one before sending a message
            "first_message_timeout": 0,
            "idle_closed": 0,
            "tls_handshake_failed": 0,
            "accept_errors": 0,
            "slow_peer_closed": 0,
            "send_no_connection": 0,
            "send_dropped": 0,  # TCP/TLS: closing, not yet usable, or the write failed
            "udp_send_dropped": 0,  # not an IP literal of the socket's family, or refused
        }
        self.udp_port = 0
        self.tcp_port = 0
        self.bound_tls_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: _Udp | None = None
        self._udp_family = socket.AF_INET
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()  # accept loops, connections starting
        # Connections that have not completed a message yet, oldest first (eviction order).
        self._unframed: dict[int, _Stream] = {}
        self._per_source: dict[str, int] = {}
        # (due, connection id): at most one live entry per connection; entries of closed
        # connections are skipped when due, and the heap is rebuilt when they pile up.
        self._deadlines: list[tuple[float, int]] = []
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
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
            self._listen(tcp, "tcp")
            self.tcp_port = self.udp_port
        if self.tls_port and self.tls_context is not None:
            tls_port = 0 if self.ephemeral else self.tls_port
            tls = _bound_socket(family, socket.SOCK_STREAM, self.host, tls_port)
            self._listen(tls, "tls")
            self.bound_tls_port = tls.getsockname()[1]

    def _listen(self, sock: socket.socket, name: TransportName) -> None:
        sock.listen(LISTEN_BACKLOG)
        self._listeners.append(sock)
        task = asyncio.get_running_loop().create_task(self._accept(sock, name))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _accept(self, listener: socket.socket, name: TransportName) -> None:
        """Accept connections ourselves rather than through ``create_server``: the
        source is checked and counted before asyncio reads a byte (for TLS: before the
        handshake costs anything)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, addr = await loop.sock_accept(listener)
            except OSError:  # EMFILE, ENFILE, ENOBUFS: out of descriptors or memory
                self.counters["accept_errors"] += 1
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            sock.setblocking(False)
            stream = self._admit(sock, addr, name)
            if stream is None:
                sock.close()
                continue
            task = loop.create_task(self._connect(stream, sock, name))
            stream.connecting = task
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    async def _connect(self, stream: _Stream, sock: socket.socket, name: TransportName) -> None:
        loop = asyncio.get_running_loop()
        try:
            if name == "tls" and self.tls_context is not None:
                await loop.connect_accepted_socket(
                    lambda: stream, sock, ssl=self.tls_context,
                    ssl_handshake_timeout=self.first_message_timeout_s,
                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S)
            else:
                await loop.connect_accepted_socket(lambda: stream, sock)
        except OSError:  # ssl.SSLError, a reset, the handshake timeout
            self.counters["tls_handshake_failed" if name == "tls" else "accept_errors"] += 1
            stream.abort()
        finally:
            stream.connecting = None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            task.get_loop().call_exception_handler(
                {"message": "SIP transport task failed", "exception": task.exception(),
                 "task": task})

    # -- connections ----------------------------------------------------------------------

    def _admit(self, sock: socket.socket, addr: tuple[Any, ...],
               name: TransportName) -> _Stream | None:
        """Take a connection just accepted, or say why not (counted): its source is not
        allowed or at its limit, or every connection has completed a message."""
        host = _host(addr[0])
        address = ip_of(host)
        if self.allow_networks and not _allowed(address, self.allow_networks):
            self.counters["connections_not_allowed"] += 1
            return None
        source = _source_key(address, host)
        if self._per_source.get(source, 0) >= self.max_connections_per_ip:
            self.counters["connections_refused_source"] += 1
            return None
        if len(self.connections) >= self.max_connections:
            victim = self._evictable()
            if victim is None:
                self.counters["connections_refused"] += 1
                return None
            self.counters["connections_evicted"] += 1
            victim.abort()
        connection_id = next(self.connection_ids)
        local_port = self.bound_tls_port if name == "tls" else self.tcp_port
        stream = _Stream(self, Peer(name, host, addr[1], connection_id, local_port), source)
        stream.registered = True
        self.connections[connection_id] = stream
        self._unframed[connection_id] = stream
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._watch(stream.opened_at + self.first_message_timeout_s, connection_id)
        return stream

    def _evictable(self) -> _Stream | None:
        """The connection a newcomer to a full server replaces: the oldest that has not
        completed a message, else the oldest that carries no dialog (a message alone, say
        an unauthenticated OPTIONS, earns no seat).  None when every one carries a call.
        A pass over the connections, but only when all ``max_connections`` are taken."""
        if self._unframed:
            return next(iter(self._unframed.values()))
        for connection_id, stream in self.connections.items():
            if not self.in_use(connection_id):
                return stream
        return None

    def forget(self, stream: _Stream) -> None:
        if not stream.registered or stream.peer.connection_id is None:
            return
        stream.registered = False
        connection_id = stream.peer.connection_id
        self.connections.pop(connection_id, None)
        self._unframed.pop(connection_id, None)
        left = self._per_source.get(stream.source, 1) - 1
        if left > 0:
            self._per_source[stream.source] = left
        else:
            self._per_source.pop(stream.source, None)

    def framed(self, stream: _Stream) -> None:
        self._unframed.pop(stream.peer.connection_id or -1, None)

    def _watch(self, due: float, connection_id: int) -> None:
        heapq.heappush(self._deadlines, (due, connection_id))
        if self._sweep_handle is not None and self._sweep_at <= due:
            return
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        loop = asyncio.get_running_loop()
        self._sweep_at = due
        self._sweep_handle = loop.call_at(due, self._sweep)

    def _sweep(self) -> None:
        """Close the connections whose deadline has passed; the work is for the entries
        that are due (a connection active since is put back with its new deadline)."""
        self._sweep_handle = None
        now = self.now()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, connection_id = heapq.heappop(heap)
            stream = self.connections.get(connection_id)
            if stream is None:
                continue
            due = stream.deadline(self.first_message_timeout_s, self.idle_timeout_s)
            if due > now:
                heapq.heappush(heap, (due, connection_id))
            elif not stream.framed:
                self.counters["first_message_timeout"] += 1
                stream.abort()
            elif self.in_use(connection_id):
                heapq.heappush(heap, (now + self.idle_timeout_s, connection_id))
            else:
                self.counters["idle_closed"] += 1
                stream.close()
        if len(heap) > 2 * len(self.connections) + 64:
            heap[:] = [(s.deadline(self.first_message_timeout_s, self.idle_timeout_s), i)
                       for i, s in self.connections.items()]
            heapq.heapify(heap)
        if heap:
            self._watch(*heapq.heappop(heap))

    # -- sending --------------------------------------------------------------------------

    def send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "udp":
            self._send_udp(peer.host, peer.port, data)
            return
        connection = self.connections.get(peer.connection_id or -1)
        if connection is None:
            # RFC 3261 §18.2.2 would have us open a new connection to the Via sent-by;
            # a recording client that closed its connection mid-transaction gets nothing.
            self.counters["send_no_connection"] += 1
            return
        connection.send(data)

    def _send_udp(self, host: str, port: int, data: bytes) -> None:
        udp = self._udp.transport if self._udp is not None else None
        address = _literal(self._udp_family, host)
        if udp is None or address is None or not 0 < port < 65536:
            # A host name is never resolved here: the name came from a peer, and a lookup
            # would block the loop (and let the peer steer our resolver).
            self.counters["udp_send_dropped"] += 1
            return
        try:
            udp.sendto(data, (address, port))
        except (OSError, ValueError):  # unreachable, or refused by the loop's own check
            self.counters["udp_send_dropped"] += 1

    async def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for task in list(self._tasks):
            task.cancel()  # accept loops, and connections still in their TLS handshake
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._listeners:
            sock.close()
        for connection in list(self.connections.values()):
            connection.close()
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


def _allowed(address: IpAddress | None,
             networks: tuple[IpNetwork, ...]) -> bool:
    if address is None:
        return False
    return any(address.version == net.version and address in net for net in networks)


def _source_key(address: IpAddress | None, host: str) -> str:
    """What per-source limits count under: the IPv4 address, or the IPv6 /64 (one host
    is commonly given a whole /64, RFC 6177)."""
    if isinstance(address, ipaddress.IPv6Address):
        return address.exploded[:19] + "::/64"
    return host


def _literal(family: int, host: str) -> str | None:
    """``host`` as a destination of a ``family`` socket if it is an IP address literal
    (IPv4 mapped for a dual-stack IPv6 socket), else None; never a name lookup."""
    for candidate in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(candidate, host)
        except OSError:
            continue
        if candidate == family:
            return host
        if family == socket.AF_INET6:
            return "::ffff:" + host  # an IPv4 peer of a dual-stack socket
        return None  # IPv6 destination, IPv4 socket
    return None
