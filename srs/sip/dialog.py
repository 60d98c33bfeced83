"""SIP dialogs on the UAS side (RFC 3261 §12), sans-IO.

srs only answers INVITEs, so every dialog here is created by an INVITE it accepts and
confirmed by its own 2xx.  The UAS core uses it like this::

    local_tag = new_tag()                                  # To tag of our answers
    dialog = Dialog.from_invite(invite, local_tag)         # §12.1.1, when sending the 2xx
    dialogs.add(dialog)                                    # DialogSet; 503 when full

    dialog = dialogs.match(request)                        # §12.2.2; 481 when unknown
    dialog.receive_request(request)                        # CSeq order (500), target refresh

    bye = dialog.create_request("BYE", via=Via("UDP", "203.0.113.7", 5060))   # §12.2.1.1
    # send bytes(bye) to dialog.next_hop (RFC 3261 §8.1.2) through a client transaction
    dialogs.remove(dialog.id)

Errors a peer causes are ``PeerError`` subclasses carrying their status (400, 481, 500,
503); calling the API wrongly is ``UsageError``.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from srs.errors import CallDoesNotExist, PeerError, ServiceUnavailable, SipParseError, UsageError
from srs.sip.headers import MAX_CSEQ, Via
from srs.sip.message import SipRequest, build_request
from srs.sip.transaction import new_branch
from srs.sip.uri import NameAddr, SipUri

__all__ = [
    "MAX_ROUTE_SET",
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogId",
    "DialogSet",
    "OutOfOrderRequest",
    "new_tag",
]

# A route set longer than this is not a real path through proxies: refuse it (bounded input).
MAX_ROUTE_SET = 16

# RFC 3261 §12.2 / RFC 3311 §5.2: requests that may change the dialog's remote target.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})

# RFC 3261 §8.1.1.5: any start value below 2**31 will do; ours count up from 1.
_FIRST_LOCAL_CSEQ = 1


def new_tag() -> str:
    """A fresh From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


class OutOfOrderRequest(PeerError):
    """RFC 3261 §12.2.2: an in-dialog request with a CSeq below the last one seen."""

    status = 500


@dataclass(frozen=True, slots=True)
class DialogId:
    """RFC 3261 §12: Call-ID, local tag and remote tag, compared exactly.

    ``remote_tag`` is ``""`` when the peer's From had no tag (RFC 3261 §12.1.1: RFC 2543
    UACs send none, and it then counts as null).
    """

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_request(cls, request: SipRequest) -> DialogId | None:
        """The id an incoming request names (UAS view: our tag is in To), or None when its
        To has no tag and so it is outside any dialog (RFC 3261 §12.2.2)."""
        local_tag = request.to.tag
        if local_tag is None:
            return None
        return cls(request.call_id, local_tag, request.from_.tag or "")


class Dialog:
    """The dialog state of RFC 3261 §12.1.1, UAS side.

    ``local`` is our address (the INVITE's To, with our tag), ``remote`` the peer's (its
    From).  ``remote_target`` is where in-dialog requests go (the peer's Contact) and
    ``route_set`` the proxies they pass, from Record-Route in order.  ``remote_cseq`` is the
    last CSeq number the peer used, ``local_cseq`` ours (None until we send a request).
    Read the attributes freely; change them only through the methods.
    """

    __slots__ = (
        "id",
        "local",
        "local_cseq",
        "remote",
        "remote_cseq",
        "remote_target",
        "route_set",
        "secure",
    )

    def __init__(
        self,
        id: DialogId,
        *,
        local: NameAddr,
        remote: NameAddr,
        remote_target: SipUri,
        route_set: tuple[SipUri, ...],
        remote_cseq: int,
        local_cseq: int | None = None,
        secure: bool = False,
    ) -> None:
        self.id = id
        self.local = local
        self.remote = remote
        self.remote_target = remote_target
        self.route_set = route_set
        self.remote_cseq = remote_cseq
        self.local_cseq = local_cseq
        self.secure = secure

    @classmethod
    def from_invite(
        cls, invite: SipRequest, local_tag: str, *, secure_transport: bool = False
    ) -> Dialog:
        """The dialog our 2xx to ``invite`` creates (RFC 3261 §12.1.1).

        ``local_tag`` is the To tag of that 2xx.  ``secure_transport`` says the INVITE came
        over TLS; with a ``sips:`` Request-URI the dialog is then secure.  Raises
        ``SipParseError`` (400) for a missing or non-SIP Contact or Record-Route.
        """
        if invite.method != "INVITE":
            raise UsageError(f"dialogs are created by INVITE, not {invite.method}")
        if not local_tag:
            raise UsageError("a dialog needs a local tag")
        to = invite.to
        if to.tag is not None:
            raise UsageError("the INVITE is already in a dialog (its To has a tag)")
        remote = invite.from_
        dialog_id = DialogId(invite.call_id, local_tag, remote.tag or "")
        secure = secure_transport and isinstance(invite.uri, SipUri) and invite.uri.scheme == "sips"
        remote_target = _contact_uri(invite)
        if remote_target is None:
            # RFC 3261 §8.1.1.8 makes Contact mandatory, but RFC 2543 clients omit it
            # (RFC 4475 §3.4.1): their From URI is the only address we have to reach them.
            from_uri = remote.uri
            if not isinstance(from_uri, SipUri):
                raise SipParseError("missing Contact")
            remote_target = from_uri
        return cls(
            dialog_id,
            local=to.with_param("tag", local_tag),
            remote=remote,
            remote_target=remote_target,
            route_set=_route_set(invite.record_route),
            remote_cseq=invite.cseq.number,
            secure=secure,
        )

    def __repr__(self) -> str:
        return f"<Dialog {self.id.call_id} local={self.id.local_tag} remote={self.id.remote_tag}>"

    @property
    def next_hop(self) -> SipUri:
        """Where our in-dialog requests are sent (RFC 3261 §8.1.2): the first route, or
        the remote target when there are no proxies in the path."""
        return self.route_set[0] if self.route_set else self.remote_target

    def receive_request(self, request: SipRequest) -> None:
        """Account for an in-dialog request from the peer (RFC 3261 §12.2.2).

        Raises :class:`OutOfOrderRequest` (500) when its CSeq is lower than the last one.
        ACK and CANCEL carry the INVITE's number and are not ordered.  A target refresh
        request (re-INVITE, UPDATE) with a Contact moves the remote target there.
        """
        if DialogId.of_request(request) != self.id:
            raise UsageError("request does not belong to this dialog")
        if request.method in ("ACK", "CANCEL"):
            return
        number = request.cseq.number
        if number < self.remote_cseq:
            raise OutOfOrderRequest(f"CSeq {number} is below {self.remote_cseq}")
        target = self.remote_target
        if request.method in TARGET_REFRESH_METHODS:
            target = _contact_uri(request) or target
        self.remote_cseq = number
        self.remote_target = target

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        contact: NameAddr | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """A new in-dialog request from us (RFC 3261 §12.2.1.1), e.g. BYE.

        ``via`` names our sent-by and transport; it gets a fresh branch.  The CSeq is the
        next of our own sequence.  Send the result to :attr:`next_hop`.
        """
        if method in ("ACK", "CANCEL"):
            raise UsageError(f"{method} reuses its INVITE's CSeq; it is not built here")
        cseq = _FIRST_LOCAL_CSEQ if self.local_cseq is None else self.local_cseq + 1
        if cseq > MAX_CSEQ:
            raise UsageError("local CSeq space exhausted")
        request_uri, routes = self._routing()
        headers: list[tuple[str, str]] = [
            ("Via", str(via.with_param("branch", new_branch()))),
            ("From", str(self.local)),
            ("To", str(self.remote)),
            ("Call-ID", self.id.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        headers.extend(("Route", f"<{uri}>") for uri in routes)
        if contact is not None:
            headers.append(("Contact", str(contact)))
        headers.extend(extra_headers)
        request = build_request(
            method, request_uri, headers=headers, body=body, content_type=content_type
        )
        self.local_cseq = cseq
        return request

    def _routing(self) -> tuple[SipUri, tuple[SipUri, ...]]:
        """Request-URI and Route values (RFC 3261 §12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0]
        if first.lr:
            return self.remote_target, self.route_set
        # Strict router (RFC 2543 proxies, no ;lr): it takes the Request-URI slot, minus
        # the parts a Request-URI may not carry (RFC 3261 §19.1.1: method, headers).
        params = tuple((n, v) for n, v in first.params if n.lower() != "method")
        stripped = dataclasses.replace(first, params=params, headers=())
        return stripped, (*self.route_set[1:], self.remote_target)


def _contact_uri(request: SipRequest) -> SipUri | None:
    """The SIP URI of the request's first Contact (RFC 3261 §12.1.1), None without one."""
    contact = request.contact
    if contact is None:
        return None
    if not isinstance(contact.uri, SipUri):
        raise SipParseError("Contact is not a SIP URI")
    return contact.uri


def _route_set(record_route: tuple[NameAddr, ...]) -> tuple[SipUri, ...]:
    """RFC 3261 §12.1.1: the Record-Route URIs in order, URI parameters kept."""
    if len(record_route) > MAX_ROUTE_SET:
        raise SipParseError("too many Record-Route entries")
    uris: list[SipUri] = []
    for entry in record_route:
        if not isinstance(entry.uri, SipUri):
            raise SipParseError("Record-Route is not a SIP URI")
        uris.append(entry.uri)
    return tuple(uris)


class DialogSet:
    """The live dialogs, keyed by :class:`DialogId`, at most ``max_dialogs`` of them."""

    def __init__(self, *, max_dialogs: int = 4096) -> None:
        if max_dialogs < 1:
            raise UsageError("max_dialogs must be at least 1")
        self.max_dialogs = max_dialogs
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Keep ``dialog``.  Raises ``ServiceUnavailable`` (503) when full."""
        if dialog.id in self._dialogs:
            raise UsageError(f"dialog already present: {dialog.id}")
        if len(self._dialogs) >= self.max_dialogs:
            raise ServiceUnavailable("too many dialogs")
        self._dialogs[dialog.id] = dialog

    def match(self, request: SipRequest) -> Dialog:
        """The dialog an in-dialog request belongs to (RFC 3261 §12.2.2).

        Raises ``CallDoesNotExist`` (481) when its To has no tag or no dialog has its id.
        """
        dialog_id = DialogId.of_request(request)
        dialog = self._dialogs.get(dialog_id) if dialog_id is not None else None
        if dialog is None:
            raise CallDoesNotExist("no such dialog")
        return dialog

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        """Forget a dialog (after BYE, or when its session ends); returns it if present."""
        return self._dialogs.pop(dialog_id, None)

    def __len__(self) -> int:
        return len(self._dialogs)

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs

    def __iter__(self) -> Iterator[Dialog]:
        return iter(tuple(self._dialogs.values()))
