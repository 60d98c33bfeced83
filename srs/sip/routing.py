"""Where SIP messages go, sans-IO: the peer value, Via stamping and next hops.

* :class:`PeerLike`: what the SIP core needs of the transport's address value (the
  transport's own ``Peer``, or ``transaction.Source`` in tests and replay).
* :func:`stamp_via`: RFC 3261 §18.2.1 ``received`` and RFC 3581 §4 ``rport`` on a request
  as it arrives.
* :func:`response_destination`: RFC 3261 §18.2.2 with RFC 3581 §4, where a response goes.
* :func:`next_hop`: where our own in-dialog request goes (RFC 3263 without DNS).

No name is ever resolved here: a host name a peer hands us is never looked up.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from srs.errors import SipParseError
from srs.sip.headers import has_param
from srs.sip.message import SipRequest, SipResponse
from srs.sip.uri import SipUri

__all__ = ["PeerLike", "next_hop", "response_destination", "stamp_via", "uri_host"]


class PeerLike(Protocol):
    """The address a message came from, as the transport names it."""

    @property
    def transport(self) -> str: ...  # "udp", "tcp", "tls"

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def connection_id(self) -> int | None: ...  # the TCP/TLS connection, None over UDP

    @property
    def reliable(self) -> bool: ...


def stamp_via(request: SipRequest, peer: PeerLike) -> SipRequest:
    """RFC 3261 §18.2.1 ``received`` and RFC 3581 §4 ``rport`` on the top Via.

    Both always name the address the request came from: a ``received`` or ``rport``
    value the client wrote itself is overwritten, never trusted, so no datagram can
    direct srs's answers (and their retransmissions) at a third party.
    """
    host, port = peer.host, peer.port
    try:
        via = request.top_via
    except SipParseError:
        return request  # the transaction layer reports the missing Via
    stamped = via
    if via.host.strip("[]") != host or has_param(via.params, "received"):
        stamped = stamped.with_param("received", host)
    if has_param(via.params, "rport"):  # a flag or a value: either way the real port
        stamped = stamped.with_param("received", host).with_param("rport", str(port))
    return request if stamped is via else request.with_top_via(stamped)


def response_destination(response: SipResponse, peer: PeerLike) -> tuple[str, int]:
    """RFC 3261 §18.2.2 with RFC 3581 §4, for unreliable transports.

    Over TCP/TLS the response goes back on the connection (the peer value says which); the
    address returned is informational.  Over UDP: to ``received`` (the source address), at
    the ``rport`` value when the client asked for it, else at the Via's sent-by port
    (5060 when absent).
    """
    host, port = peer.host, peer.port
    if peer.reliable:
        return host, port
    try:
        via = response.top_via
    except SipParseError:
        return host, port
    try:
        rport = via.rport
    except SipParseError:
        rport = None  # a malformed rport: answer as if it were absent
    if isinstance(rport, int) and not isinstance(rport, bool):
        return via.received or host, rport
    return via.received or host, via.port or 5060


def next_hop(uri: SipUri, peer: PeerLike) -> tuple[str, int]:
    """Where a request to ``uri`` goes (RFC 3263 without DNS): an IP-literal host with its
    port, else back to the address the dialog's INVITE came from.  Twilio and SBCs put
    IP literals in Record-Route; a host name would need DNS, which srs does not do."""
    host = uri.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return peer.host, peer.port
    default = 5061 if uri.scheme == "sips" or (uri.transport or "").lower() == "tls" else 5060
    return host, uri.port or default


def uri_host(host: str) -> str:
    """``host`` as a URI or Via writes it: IPv6 literals in brackets (RFC 3261 §25.1)."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host
