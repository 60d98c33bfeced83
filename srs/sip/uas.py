"""The UAS core of srs (RFC 3261 §8.2), sans-IO.

It sits on the transaction layer and the dialog set, and answers everything that needs no
recording: OPTIONS, CANCEL, unknown dialogs, unknown methods, unsupported extensions and
failed authentication.  Everything about a recording leaves as a *session event* for the
session layer, which answers through :meth:`SipCore.answer`.  Like the layers below it,
it never reads a clock and never does I/O: every call takes ``now`` and returns outputs::

    outputs = core.receive(message, peer, now)          # a parsed message from a transport
    outputs = core.parse_failed(error, peer, now)       # a message that did not parse
    outputs = core.answer(pending, 200, now, body=sdp)  # the session layer's decision
    outputs = core.hang_up(dialog_id, now, local=...)   # we end a session (BYE)
    deadline = core.next_timer(); outputs = core.handle_timer(now)

Outputs, in order: :class:`Transmit`, the session events :class:`NewSession`,
:class:`SessionUpdate`, :class:`SessionEnded`, and :class:`Refused` and ``TimedOut`` (our
BYE, run in :class:`~srs.sip.client_transaction.ClientTransactions`, got no answer).

RFC 4028 session timers (``sip/session_timer.py``): a missing refresh makes
:meth:`SipCore.handle_timer` send the BYE and report ``SessionEnded``.

Order of checks for a dialog-creating INVITE (RFC 3261 §8.2): authentication first, so an
unauthenticated peer learns nothing and costs nothing (no transaction state beyond the
answer, no ports, no files); then ``Require`` (§8.2.2.3, 420); then the session layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeGuard, assert_never

from srs.errors import (
    BadExtension,
    CallDoesNotExist,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    PeerError,
    ServiceUnavailable,
    SessionIntervalTooSmall,
    SipParseError,
    UnsupportedUriScheme,
    UsageError,
)
from srs.sip.auth import Authenticator
from srs.sip.client_transaction import (
    ClientOutput,
    ClientTransactions,
    ResponseReceived,
    SendRequest,
    TimedOut,
    Unmatched,
)
from srs.sip.dialog import Dialog, DialogId, DialogSet, new_tag
from srs.sip.events import (
    Answerable,
    Local,
    NewSession,
    NextHop,
    Refused,
    SessionEnded,
    SessionUpdate,
    Transmit,
)
from srs.sip.message import ALLOW, SipMessage, SipRequest, SipResponse, build_response
from srs.sip.parser import SipMessageError, build_error_response
from srs.sip.routing import PeerLike, next_hop, response_destination, stamp_via
from srs.sip.server_transaction import ServerTransaction
from srs.sip.session_timer import (
    MIN_SE_S,
    SessionTimers,
    check_session_interval,
    enforced_interval_s,
    session_timer_headers,
)
from srs.sip.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    Event,
    Overloaded,
    RequestReceived,
    SendResponse,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
)
from srs.sip.uri import AbsoluteUri, SipUri

__all__ = [
    "ALLOW",
    "SUPPORTED",
    "ACCEPT",
    "Answerable",
    "Local",
    "NextHop",
    "Transmit",
    "response_destination",
    "NewSession",
    "SessionUpdate",
    "SessionEnded",
    "Refused",
    "Output",
    "SipCore",
]

# RFC 7866 §6.1.2 (siprec) and RFC 4028 (timer).
SUPPORTED = ("siprec", "timer")
ACCEPT = ("application/sdp", "application/rs-metadata+xml", "application/rs-metadata",
          "multipart/mixed")
USER_AGENT = "srs"


Output = Transmit | NewSession | SessionUpdate | SessionEnded | TimedOut | Refused


class SipCore:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        transactions: TransactionLayer | None = None,
        max_dialogs: int = 10000,
        min_se_s: int = MIN_SE_S,
    ) -> None:
        self.authenticator = authenticator
        self.transactions = transactions if transactions is not None else TransactionLayer()
        self.dialogs = DialogSet(max_dialogs=max_dialogs)
        self.client: ClientTransactions[NextHop] = ClientTransactions(
            timers=self.transactions.timers
        )
        # Where each dialog's INVITE came from: our BYE goes back over that transport
        # (and, for TCP/TLS, that connection).
        self._dialog_peers: dict[DialogId, PeerLike] = {}
        # RFC 4028: each dialog's BYE deadline when a refresh is missing, and how we name
        # ourselves in that BYE.
        self.session_timers: SessionTimers[DialogId, Local] = SessionTimers(min_se_s)
        self.counters: dict[str, int] = {"auth_failures": 0, "requests": 0, "parse_errors": 0}

    # -- inputs ------------------------------------------------------------------------

    def receive(self, message: SipMessage, peer: PeerLike, now: float) -> list[Output]:
        if isinstance(message, SipResponse):
            try:
                return self._client(self.client.receive_response(message, now))
            except SipParseError:
                return []  # RFC 3261 §18.1.2: a response that cannot be matched is dropped
        self.counters["requests"] += 1
        request = message
        try:
            request = stamp_via(message, peer)
            refused = self._refuse_statelessly(request, peer)
            if refused is not None:
                return refused
            events = self.transactions.receive_request(request, peer, now)
        except SipParseError as exc:
            return self._stateless(request, peer, exc.status, exc.reason)
        return self._handle(events, now)

    def parse_failed(self, error: SipMessageError, peer: PeerLike, now: float) -> list[Output]:
        """Answer a request that failed to parse (RFC 3261 §8.2.2, RFC 4475) if we can.

        The answer goes to the address and port the datagram came from: the Via of a
        message that did not parse is not read for a destination (its ``received`` or
        ``rport`` could name anyone)."""
        self.counters["parse_errors"] += 1
        response = build_error_response(error)
        if response is None:
            return []  # a broken response, or no Via to answer to: dropped
        return [Transmit(peer, bytes(response), peer.host, peer.port, "")]

    def answer(
        self,
        pending: Answerable,
        status: int,
        now: float,
        *,
        local: Local,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[list[Output], DialogId | None]:
        """The session layer's answer to a NewSession or SessionUpdate.

        A 2xx to a dialog-creating INVITE creates the dialog and returns its id.  Returns
        no outputs and no id when the transaction is gone (cancelled, timed out): the
        caller must then release what it allocated.
        """
        if not self._answerable(pending):
            return [], None
        request = pending.request
        headers = [("Allow", ", ".join(ALLOW)), ("Supported", ", ".join(SUPPORTED))]
        headers.append(("User-Agent", USER_AGENT))
        dialog_id = DialogId.of_request(request)
        to_tag = None
        session = 200 <= status < 300 and request.method in ("INVITE", "UPDATE")
        timer: list[tuple[str, str]] = []
        if session:
            sips = isinstance(request.uri, SipUri) and request.uri.scheme == "sips"
            headers.append(("Contact", str(local.contact(sips=sips))))
            timer = session_timer_headers(request)
            headers.extend(timer)
        if dialog_id is None and 200 <= status < 300:
            to_tag = new_tag()
            dialog = Dialog.from_invite(request, to_tag, secure_transport=local.transport == "tls")
            self.dialogs.add(dialog)
            self._dialog_peers[dialog.id] = pending.source
            dialog_id = dialog.id
        elif dialog_id is None:
            to_tag = new_tag()  # RFC 3261 §8.2.6.2: a final response carries a To tag
        headers.extend(extra_headers)
        response = build_response(
            request,
            status,
            to_tag=to_tag,
            extra_headers=headers,
            body=body,
            content_type=content_type,
        )
        events = self.transactions.send_response(pending, response, now)
        if session and dialog_id is not None:
            # RFC 4028 §10: the 2xx (re)starts the interval the client must refresh within.
            self.session_timers.answered(
                dialog_id, enforced_interval_s(request) if timer else None, now, local)
        return self._handle(events, now), (dialog_id if 200 <= status < 300 else None)

    def reject(self, pending: Answerable, error: PeerError, now: float) -> list[Output]:
        """Answer a NewSession or SessionUpdate with ``error``'s status (a deliberate,
        documented answer: the reason phrase names the problem)."""
        if not self._answerable(pending):
            return []
        response = self._error_response(pending.request, error)
        return self._handle(self.transactions.send_response(pending, response, now), now)

    def fail(self, pending: Answerable, now: float) -> list[Output]:
        """Answer a NewSession or SessionUpdate with 500 (RFC 3261 §21.5.1): srs's own
        fault, not the peer's, so no PeerError stands for it."""
        if not self._answerable(pending):
            return []
        return self._reply(pending, 500, now)

    def hang_up(self, dialog_id: DialogId, now: float, *, local: Local) -> list[Output]:
        """End a session from our side: BYE along the dialog's route set (RFC 3261 §15.1.1).

        The dialog is forgotten at once; the BYE is retransmitted over UDP until answered
        (RFC 3261 §17.1.2, Timer E/F).
        """
        dialog = self.dialogs.remove(dialog_id)
        peer = self._dialog_peers.pop(dialog_id, None)
        self.session_timers.cancel(dialog_id)
        if dialog is None or peer is None:
            return []
        bye = dialog.create_request("BYE", via=local.via())
        host, port = next_hop(dialog.next_hop, peer)
        return self._client(self.client.send(bye, NextHop(peer, host, port), now))

    def connection_in_use(self, connection_id: int) -> bool:
        """Whether a dialog still needs the TCP/TLS connection ``connection_id``."""
        return any(peer.connection_id == connection_id
                   for peer in self._dialog_peers.values())

    def next_timer(self) -> float | None:
        """The earliest deadline of the server and the client transactions, or None."""
        deadlines = [self.transactions.next_timer(), self.client.next_timer(),
                     self.session_timers.next_timer()]
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> list[Output]:
        outputs = self._handle(self.transactions.handle_timer(now), now)
        outputs.extend(self._client(self.client.handle_timer(now)))
        for dialog_id, local in self.session_timers.expired(now):
            # RFC 4028 §10: no refresh came in time; the side not refreshing sends BYE.
            if dialog_id in self.dialogs:
                outputs.append(SessionEnded("expired", dialog_id=dialog_id, at=now))
                outputs.extend(self.hang_up(dialog_id, now, local=local))
        return outputs

    # -- internals -----------------------------------------------------------------------

    def _answerable(self, pending: Answerable) -> TypeGuard[ServerTransaction]:
        """One of ours, still live and without a final answer (a CANCEL may have sent
        the 487)."""
        if not isinstance(pending, ServerTransaction):
            return False
        last = pending.last_response
        return self.transactions.holds(pending) and (last is None or last.status < 200)

    def _handle(self, events: list[Event], now: float) -> list[Output]:
        outputs: list[Output] = []
        for event in events:
            if isinstance(event, SendResponse):
                outputs.append(self._transmit(event.response, event.destination))
            elif isinstance(event, RequestReceived):
                outputs.extend(self._request(event, now))
            elif isinstance(event, CancelReceived):
                outputs.extend(self._cancel(event, now))
            elif isinstance(event, AckReceived):
                pass  # the 2xx is acknowledged; the transaction layer stopped resending it
            elif isinstance(event, AckTimedOut):
                outputs.extend(self._ack_timed_out(event.transaction, now))
            elif isinstance(event, TransactionTimedOut | TransportFailed):
                pass  # a non-2xx answer was not acknowledged: nothing was allocated for it
            elif isinstance(event, Overloaded):
                error = ServiceUnavailable("Service Unavailable", retry_after_s=event.retry_after_s)
                outputs.append(self._transmit(self._error_response(event.request, error),
                                              event.source))
            else:  # pragma: no cover - a new event type this core does not know is a bug
                raise UsageError(f"unhandled transaction event {event!r}")
        return outputs

    def _client(self, outputs: list[ClientOutput[NextHop]]) -> list[Output]:
        """Our BYEs' transaction outputs as core outputs.  Their answers change nothing (the
        session ended with the BYE, RFC 3261 §15.1.1), nor do stray responses (§18.1.2)."""
        result: list[Output] = []
        for output in outputs:
            if isinstance(output, SendRequest):
                hop = output.destination
                result.append(Transmit(hop.peer, output.data, hop.host, hop.port,
                                       output.request.call_id))
            elif isinstance(output, TimedOut):
                result.append(output)
            elif not isinstance(output, ResponseReceived | Unmatched):
                assert_never(output)
        return result

    def _request(self, event: RequestReceived, now: float) -> list[Output]:
        request, peer, pending = event.request, event.source, event.transaction
        method = request.method
        try:
            if method not in ALLOW:
                raise MethodNotAllowed("Method Not Allowed")
            dialog_id = DialogId.of_request(request)
            if dialog_id is None and method == "INVITE":
                return self._new_invite(request, peer, pending, now)
            _check_headers(request)
            if dialog_id is None:
                return self._outside_dialog(request, pending, now)
            dialog = self.dialogs.match(request)  # 481 when unknown (RFC 3261 §12.2.2)
            if dialog.secure and peer.transport != "tls":
                # RFC 3261 §12.1.1, §26.2.2: a sips: dialog is TLS on every hop; a request
                # in it over UDP/TCP is refused (403, §21.4.4: srs supports the scheme, so
                # not 416) before it changes any dialog state (§12.2.2).
                raise Forbidden("Forbidden: this dialog takes requests over TLS only")
            dialog.receive_request(request)  # 500 when out of order
            if method == "BYE":
                self.dialogs.remove(dialog.id)
                self._dialog_peers.pop(dialog.id, None)
                self.session_timers.cancel(dialog.id)
                outputs = self._reply(pending, 200, now)
                outputs.append(SessionEnded("bye", dialog_id=dialog.id, at=now))
                return outputs
            if method in ("INVITE", "UPDATE"):
                check_session_interval(request, self.session_timers.min_se_s)
                return [SessionUpdate(pending, request, dialog.id, peer, now)]
            return self._reply(pending, 200, now)  # OPTIONS, INFO in a dialog
        except PeerError as exc:
            error = exc
        response = self._error_response(request, error)
        outputs = self._handle(self.transactions.send_response(pending, response, now), now)
        outputs.append(Refused(method, response.status, response.reason, request.call_id, peer))
        return outputs

    def _outside_dialog(
        self, request: SipRequest, pending: ServerTransaction, now: float
    ) -> list[Output]:
        if request.method == "OPTIONS":
            return self._reply(pending, 200, now, headers=[
                ("Allow", ", ".join(ALLOW)),
                ("Accept", ", ".join(ACCEPT)),
                ("Supported", ", ".join(SUPPORTED)),
            ])
        raise CallDoesNotExist("Call/Transaction Does Not Exist")  # RFC 3261 §12.2.2

    def _new_invite(self, request: SipRequest, peer: PeerLike, pending: ServerTransaction,
                    now: float) -> list[Output]:
        """A dialog-creating INVITE, already authenticated by ``_refuse_statelessly``."""
        _check_headers(request)
        _check_accept(request)
        check_session_interval(request, self.session_timers.min_se_s)
        return [NewSession(pending, request, peer, now)]

    def _cancel(self, event: CancelReceived, now: float) -> list[Output]:
        # RFC 3261 §9.2: 200 to the CANCEL; 487 to the INVITE if it has no final answer.
        invite = event.invite
        if invite is None:
            return self._reply(event.transaction, 481, now)
        outputs = self._reply(event.transaction, 200, now)
        if invite.last_response is None or invite.last_response.status < 200:
            outputs.extend(self._reply(invite, 487, now))
            outputs.append(SessionEnded("cancel", pending=invite, at=now))
        return outputs

    def _ack_timed_out(self, transaction: ServerTransaction, now: float) -> list[Output]:
        response = transaction.last_response
        if response is None:
            return []
        dialog_id = DialogId(response.call_id, response.to.tag or "", response.from_.tag or "")
        if self.dialogs.get(dialog_id) is None:
            return []
        return [SessionEnded("timeout", dialog_id=dialog_id, at=now)]

    def _reply(
        self,
        pending: ServerTransaction,
        status: int,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> list[Output]:
        to_tag = new_tag() if pending.request.to.tag is None and status >= 200 else None
        response = build_response(pending.request, status, to_tag=to_tag,
                                  extra_headers=[*headers, ("User-Agent", USER_AGENT)])
        return self._handle(self.transactions.send_response(pending, response, now), now)

    def _error_response(self, request: SipRequest, error: PeerError) -> SipResponse:
        headers: list[tuple[str, str]] = [("User-Agent", USER_AGENT)]
        if isinstance(error, ServiceUnavailable):
            headers.append(("Retry-After", str(error.retry_after_s)))
        if isinstance(error, BadExtension):
            headers.append(("Unsupported", ", ".join(error.unsupported)))
        if isinstance(error, SessionIntervalTooSmall):
            headers.append(("Min-SE", str(error.min_se_s)))  # RFC 4028 §6
        if error.status == 405:  # RFC 3261 §8.2.1: the answer lists what is allowed
            headers.append(("Allow", ", ".join(ALLOW)))
        if error.status in (415,):
            headers.append(("Accept", ", ".join(ACCEPT)))
        to_tag = new_tag() if request.to.tag is None else None
        return build_response(request, error.status, error.reason, to_tag=to_tag,
                              extra_headers=headers)

    def _refuse_statelessly(self, request: SipRequest, peer: PeerLike) -> list[Output] | None:
        """Requests refused before any state exists get one stateless answer (RFC 3261
        §8.2.7): no transaction, no retransmission, nothing held for 32 s.  Those are a
        dialog-creating INVITE without the credential or from outside the allowed
        networks (403), an unknown method (405), and a request for a dialog srs does not
        have (481), a CANCEL that matches no INVITE of its source (481), and an in-dialog
        request from another host without the credential (403).  Out-of-dialog OPTIONS is
        answered the same way: it creates nothing.  ACK reaches the transaction layer.
        Returns None when the request goes on to the transaction layer."""
        method = request.method
        if method == "ACK" or self.transactions.matches(request):
            return None  # a retransmission meets its transaction (a BYE's 200 again)
        error: PeerError
        if method == "CANCEL" and self.transactions.cancels(request, peer.host):
            return None
        if method == "CANCEL":
            error = CallDoesNotExist("Call/Transaction Does Not Exist")  # §9.2: no INVITE
        elif method not in ALLOW:
            error = MethodNotAllowed("Method Not Allowed")
        elif request.to.tag is None and method == "INVITE":
            try:
                self.authenticator.check(request.headers.get(self.authenticator.header),
                                         peer.host)
            except Forbidden as exc:
                self.counters["auth_failures"] += 1
                error = exc
            else:
                return None
        elif request.to.tag is None:
            if method != "OPTIONS":
                error = CallDoesNotExist("Call/Transaction Does Not Exist")  # §12.2.2
            else:
                return self._options_statelessly(request, peer)
        elif (dialog_id := DialogId.of_request(request)) is None or dialog_id not in self.dialogs:
            error = CallDoesNotExist("Call/Transaction Does Not Exist")  # §12.2.2
        elif ((origin := self._dialog_peers.get(dialog_id)) is None or origin.host == peer.host
              or self.authenticator.vouches_for(request.headers.get(self.authenticator.header),
                                                peer.host)):
            return None
        else:
            # A dialog's identifiers are not the credential (docs/architecture.md).
            error = Forbidden("Forbidden: in-dialog request from another host")
        response = self._error_response(request, error)
        return [self._transmit(response, peer),
                Refused(method, response.status, response.reason, request.call_id, peer)]

    def _options_statelessly(self, request: SipRequest, peer: PeerLike) -> list[Output]:
        try:
            _check_headers(request)
        except PeerError as exc:
            response = self._error_response(request, exc)
            return [self._transmit(response, peer),
                    Refused("OPTIONS", response.status, response.reason, request.call_id, peer)]
        response = build_response(request, 200, to_tag=new_tag(), extra_headers=[
            ("Allow", ", ".join(ALLOW)),
            ("Accept", ", ".join(ACCEPT)),
            ("Supported", ", ".join(SUPPORTED)),
            ("User-Agent", USER_AGENT),
        ])
        return [self._transmit(response, peer)]

    def _stateless(self, request: SipRequest, peer: PeerLike, status: int,
                   reason: str) -> list[Output]:
        """Answer a request the transaction layer refused (unreadable headers)."""
        if request.method == "ACK":
            return []
        try:
            response = build_response(request, status, reason)
        except SipParseError:
            return []  # not even enough headers to answer: dropped
        return [self._transmit(response, peer)]

    def _transmit(self, response: SipResponse, peer: PeerLike) -> Transmit:
        host, port = response_destination(response, peer)
        try:
            call_id = response.call_id
        except SipParseError:
            call_id = ""  # a 400 echoing a broken request's headers
        return Transmit(peer, bytes(response), host, port, call_id)


def _check_headers(request: SipRequest) -> None:
    """RFC 3261 §8.2.2: Request-URI scheme (416) and Require (420), in that order."""
    if isinstance(request.uri, AbsoluteUri):
        raise UnsupportedUriScheme("Unsupported URI Scheme")  # §8.2.2.1: tel:, urn:, ...
    if request.method in ("ACK", "CANCEL"):
        return  # §8.2.2.3: never rejected for Require
    unsupported = tuple(tag for tag in request.require if tag.lower() not in SUPPORTED)
    if unsupported:
        raise BadExtension(unsupported)


_SDP_RANGES = frozenset({"application/sdp", "application/*", "*/*"})


def _check_accept(request: SipRequest) -> None:
    """RFC 3261 §8.2.3, §21.4.7: our answer is application/sdp; an INVITE whose Accept
    excludes it gets 406 (an empty Accept header means no body is acceptable at all)."""
    if "Accept" not in request.headers:
        return
    ranges = {value.split(";", 1)[0].strip().lower() for value in request.headers.get_all("Accept")}
    if not ranges & _SDP_RANGES:
        raise NotAcceptable("Not Acceptable: the answer is application/sdp")
