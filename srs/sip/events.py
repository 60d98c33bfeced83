"""The values the UAS core hands the session layer and the shell (srs.sip.uas).

Frozen values without behaviour beyond naming ourselves (:class:`Local`): what to send
(:class:`Transmit`, :class:`NextHop`), the session events (:class:`NewSession`,
:class:`SessionUpdate`, :class:`SessionEnded`) and the core's own refusals
(:class:`Refused`).  Kept apart from the core so that a media worker, which runs the
session layer without a SIP core, uses the same types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from srs.sip.dialog import DialogId
from srs.sip.headers import Via
from srs.sip.message import SipRequest
from srs.sip.routing import PeerLike, uri_host
from srs.sip.uri import NameAddr, SipUri

__all__ = ["Answerable", "Local", "NewSession", "NextHop", "Refused", "SessionEnded",
           "SessionUpdate", "Transmit"]


@dataclass(frozen=True, slots=True)
class Local:
    """How we name ourselves to a peer: host and port for Via and Contact."""

    host: str
    port: int
    transport: str  # "udp", "tcp", "tls"

    def via(self) -> Via:
        return Via(self.transport.upper(), uri_host(self.host), self.port)

    def contact(self, *, sips: bool = False) -> NameAddr:
        """Our Contact.  Over TLS: ``sips:`` when the peer addressed us with a ``sips:``
        URI (RFC 3261 §19.1.2), else ``sip:`` with ``;transport=tls``, so in-dialog
        requests come back over TLS either way."""
        params: tuple[tuple[str, str | None], ...] = ()
        if self.transport != "udp":
            params = (("transport", self.transport),)
        scheme = "sips" if sips and self.transport == "tls" else "sip"
        if scheme == "sips":
            params = ()
        uri = SipUri(scheme, uri_host(self.host), user="srs", port=self.port, params=params)
        # RFC 7866 §6.1.2: an SRS marks its Contact with the +sip.srs feature tag.
        return NameAddr(uri, params=(("+sip.srs", None),))


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``host``:``port`` using the transport of ``peer``."""

    peer: PeerLike
    data: bytes
    host: str
    port: int
    call_id: str = ""  # for per-session capture


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where our request goes (RFC 3261 §8.1.2): ``host``:``port`` via ``peer``'s transport."""

    peer: PeerLike
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.peer.reliable


class Answerable(Protocol):
    """What the session layer holds of a request it must answer: the server transaction
    here, a token for it in a media worker (srs.server.worker).  :meth:`SipCore.answer`,
    :meth:`SipCore.reject` and :meth:`SipCore.fail` answer only their own transactions."""

    @property
    def request(self) -> SipRequest: ...


@dataclass(frozen=True, slots=True, eq=False)
class NewSession:
    """An authenticated dialog-creating INVITE.  Answer it with :meth:`SipCore.answer`
    (a 2xx creates the dialog) or :meth:`SipCore.reject`."""

    pending: Answerable
    request: SipRequest
    peer: PeerLike
    received_at: float = 0.0  # the ``now`` the INVITE arrived at: the session's origin


@dataclass(frozen=True, slots=True, eq=False)
class SessionUpdate:
    """A re-INVITE or UPDATE in an established dialog; answer it like a NewSession."""

    pending: Answerable
    request: SipRequest
    dialog_id: DialogId
    peer: PeerLike
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session ``dialog_id`` (or the pending INVITE ``pending``) is over.

    ``reason``: ``bye`` (the peer hung up), ``cancel`` (CANCEL before our answer; no dialog
    existed), ``timeout`` (no ACK for our 2xx: RFC 3261 §13.3.1.4), ``expired`` (no
    session refresh in time: RFC 4028 §10; the core has sent the BYE itself).
    """

    reason: str
    dialog_id: DialogId | None = None
    pending: Answerable | None = None
    at: float = 0.0  # the ``now`` it ended at (the BYE's arrival): the session's end


@dataclass(frozen=True, slots=True)
class Refused:
    """The core itself refused a request (403, 420, 405, 481, ...): for logs and metrics.
    ``reason`` is the reason phrase sent; it never holds a credential."""

    method: str
    status: int
    reason: str
    call_id: str
    peer: PeerLike
