"""Sockets for one call (asyncio glue only): its SIP transport and its RTP senders.

:class:`SipConnection` is one UDP socket, or one TCP or TLS connection, to the server.
It frames and parses with srs's parser (datagram by datagram, or by Content-Length on a
stream, RFC 3261 §18.3) and hands each message to a callback; what cannot be parsed is
dropped and counted (RFC 3261 §18.1.2).  :class:`RtpSocket` is a UDP socket that sends one
stream's packets and ignores what comes back (RTCP from the server).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Literal, cast

from srs.sip.message import SipRequest, SipResponse
from srs.sip.parser import SipMessageError, StreamParser, is_keepalive, parse_message

__all__ = ["RtpSocket", "SipConnection", "TransportName", "local_address_for"]

TransportName = Literal["udp", "tcp", "tls"]
MessageCallback = Callable[[SipRequest | SipResponse], None]
_EVEN_PORT_ATTEMPTS = 8


def local_address_for(host: str, port: int) -> str:
    """The local address the system routes to ``host`` from (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        return str(probe.getsockname()[0])


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: SipConnection) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: object) -> None:
        if is_keepalive(data):
            return
        try:
            message = parse_message(data)
        except SipMessageError:
            self.owner.dropped += 1
            return
        self.owner.deliver(message)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a server that is not listening: Timer B/F will tell.
        self.owner.errors += 1


class _Stream(asyncio.Protocol):
    def __init__(self, owner: SipConnection) -> None:
        self.owner = owner
        self.parser = StreamParser()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.parser.feed(data)
        except SipMessageError as error:
            self.owner.dropped += 1
            messages = list(error.messages)
            if error.framing_lost:
                self.owner.close()
        for message in messages:
            self.owner.deliver(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost = True


class SipConnection:
    """The signalling transport of one call.  ``send`` never blocks; ``lost`` says a
    TCP/TLS connection was closed by the server."""

    def __init__(self, transport_name: TransportName, host: str, port: int) -> None:
        self.name: TransportName = transport_name
        self.server = (host, port)
        self.local_host = ""
        self.local_port = 0
        self.dropped = 0
        self.errors = 0
        self.lost = False
        self.on_message: MessageCallback | None = None
        self._transport: asyncio.BaseTransport | None = None

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: every transport but UDP is reliable."""
        return self.name != "udp"

    @classmethod
    async def open(
        cls,
        transport_name: TransportName,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> SipConnection:
        """Open the socket or connection.  Raises ``OSError`` (refused, unreachable,
        TLS handshake failed) for the caller to report."""
        connection = cls(transport_name, host, port)
        loop = asyncio.get_running_loop()
        transport: asyncio.BaseTransport
        if transport_name == "udp":
            local = local_address_for(host, port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(connection), local_addr=(local, 0)
            )
        else:
            transport, _ = await loop.create_connection(
                lambda: _Stream(connection), host, port,
                ssl=ssl_context if transport_name == "tls" else None,
                server_hostname=server_hostname if transport_name == "tls" else None,
            )
        sockname = transport.get_extra_info("sockname")
        connection.local_host, connection.local_port = str(sockname[0]), int(sockname[1])
        connection._transport = transport
        return connection

    def deliver(self, message: SipRequest | SipResponse) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self.errors += 1
            return
        if self.name == "udp":  # uvloop's UDP transport is no asyncio.DatagramTransport
            cast(asyncio.DatagramTransport, transport).sendto(data, self.server)
        else:
            cast(asyncio.WriteTransport, transport).write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Ignore(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for RTP: the server closed the port; the call's signalling says why


class RtpSocket:
    """A UDP socket on ``host`` (an even port when one can be had, RFC 3550 §11) that
    sends one stream's packets to the address of the answer."""

    def __init__(self, transport: asyncio.DatagramTransport, port: int) -> None:
        self._transport = transport
        self.port = port
        self.destination: tuple[str, int] | None = None

    @classmethod
    async def open(cls, host: str) -> RtpSocket:
        loop = asyncio.get_running_loop()
        transport: asyncio.DatagramTransport | None = None
        for _ in range(_EVEN_PORT_ATTEMPTS):
            transport, _ = await loop.create_datagram_endpoint(_Ignore, local_addr=(host, 0))
            port = int(transport.get_extra_info("sockname")[1])
            if port % 2 == 0:
                return cls(transport, port)
            transport.close()
        transport, _ = await loop.create_datagram_endpoint(_Ignore, local_addr=(host, 0))
        return cls(transport, int(transport.get_extra_info("sockname")[1]))

    def send(self, data: bytes) -> None:
        if self.destination is not None and not self._transport.is_closing():
            self._transport.sendto(data, self.destination)

    def close(self) -> None:
        self._transport.close()
