"""The signalling of one recording call from the client side (UAC), sans-IO.

:class:`UacCall` sends the dialog-creating INVITE and every later request (ACK,
re-INVITE, UPDATE, BYE) of one call, each in its own client transaction, and answers what
the server sends into the dialog (its BYE).  It never reads a clock nor touches a socket:
time comes in as ``now``, bytes to send come out as :class:`Send`, and the shell arms one
timer at :meth:`UacCall.next_timer` and calls :meth:`UacCall.handle_timer`::

    call = UacCall(identity=..., target=..., via=..., contact=..., reliable=False)
    request, outputs = call.invite(body, content_type, headers, now)
    outputs = call.receive(message, now)    # every parsed message from the server
    outputs = call.handle_timer(now)        # when next_timer() is due
    request, outputs = call.request("BYE", now=now)

Client transactions follow RFC 3261 §17.1 with RFC 6026 §7.2 (the INVITE transaction
stays "Accepted" for Timer M so that 2xx retransmissions reach the core):

* INVITE: Timer A retransmits over UDP (T1, doubling); Timer B (64*T1) ends an
  unanswered INVITE; a 1xx stops both (§17.1.1.2: the UAC then waits for a final answer,
  which the shell bounds).  A non-2xx final is ACKed by the transaction (§17.1.1.3) and
  re-ACKed on retransmission until Timer D; a 2xx is ACKed by the core (§13.2.2.4), again
  for every retransmission of it.
* non-INVITE: Timer E retransmits over UDP (T1 doubling up to T2; T2 once a 1xx came),
  Timer F (64*T1) ends it; a final answer starts Timer K, which absorbs retransmissions.

Over TCP and TLS nothing is retransmitted and Timers D and K are zero (§17.1.1.2,
§17.1.2.2).  Requests from the server are answered statelessly: the same answer goes to a
retransmission, which is all a BYE or an OPTIONS needs.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from srs.errors import SipParseError, UsageError
from srs.sip.dialog import Dialog, DialogId
from srs.sip.headers import Via
from srs.sip.message import SipRequest, SipResponse, build_request, build_response
from srs.sip.timers import T1, T2, T4
from srs.sip.transaction import new_branch
from srs.sip.uri import NameAddr, SipUri

__all__ = [
    "ALLOW",
    "ByeReceived",
    "ClientTransaction",
    "RequestTimedOut",
    "ResponseReceived",
    "Send",
    "TxState",
    "UacCall",
    "UacOutput",
]

TIMER_B_S = 64 * T1  # RFC 3261 §17.1.1.2
TIMER_D_S = 32.0  # RFC 3261 §17.1.1.2: at least 32 s over UDP
TIMER_F_S = 64 * T1  # RFC 3261 §17.1.2.2
TIMER_K_S = T4  # RFC 3261 §17.1.2.2
TIMER_M_S = 64 * T1  # RFC 6026 §7.2
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"


@dataclass(frozen=True, slots=True)
class Send:
    """Put ``data`` on the call's signalling transport, towards the server."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to ``request`` (provisional or final; a 2xx again when retransmitted)."""

    request: SipRequest
    response: SipResponse


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """Timer B or F fired: ``request`` got no response (RFC 3261 §17.1.1.2, §17.1.2.2)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The server ended the call with a BYE; our 200 is already among the outputs."""

    request: SipRequest


UacOutput = Send | ResponseReceived | RequestTimedOut | ByeReceived


class TxState(enum.Enum):
    """RFC 3261 Figures 5 and 6, with RFC 6026's Accepted."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ClientTransaction:
    """One client transaction (RFC 3261 §17.1).  Stateful; the fields are read-only."""

    __slots__ = ("request", "data", "reliable", "state", "interval_s", "retransmit_at",
                 "timeout_at", "end_at", "ack")

    def __init__(self, request: SipRequest, *, reliable: bool, now: float) -> None:
        self.request = request
        self.data = bytes(request)
        self.reliable = reliable
        invite = request.method == "INVITE"
        self.state = TxState.CALLING if invite else TxState.TRYING
        self.interval_s = T1
        # Timer A / E: only over unreliable transports.
        self.retransmit_at: float | None = None if reliable else now + T1
        self.timeout_at: float | None = now + (TIMER_B_S if invite else TIMER_F_S)
        self.end_at: float | None = None  # Timer D, K or M
        self.ack: bytes | None = None  # the ACK for a non-2xx final (§17.1.1.3)

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    @property
    def key(self) -> tuple[str, str]:
        """RFC 3261 §17.1.3: responses match by top Via branch and CSeq method."""
        return self.request.top_via.branch or "", self.request.method

    def next_timer(self) -> float | None:
        deadlines = [t for t in (self.retransmit_at, self.timeout_at, self.end_at) if t is not None]
        return min(deadlines) if deadlines else None

    def receive(self, response: SipResponse, now: float) -> list[UacOutput]:
        """A response matched to this transaction."""
        status = response.status
        event = ResponseReceived(self.request, response)
        if self.state in (TxState.CALLING, TxState.TRYING, TxState.PROCEEDING):
            if status < 200:
                if self.is_invite:
                    # §17.1.1.2: no more retransmissions, and Timer B only runs in Calling.
                    self.retransmit_at = self.timeout_at = None
                elif self.retransmit_at is not None:
                    self.interval_s = T2  # §17.1.2.2: Proceeding retransmits at T2
                self.state = TxState.PROCEEDING
                return [event]
            self.retransmit_at = self.timeout_at = None
            if self.is_invite and status < 300:
                self.state = TxState.ACCEPTED  # RFC 6026 §7.2
                self.end_at = now + TIMER_M_S
                return [event]
            self.state = TxState.COMPLETED
            if self.is_invite:
                self.ack = bytes(_ack_for_failure(self.request, response))
                self.end_at = now + (0.0 if self.reliable else TIMER_D_S)
                return [Send(self.ack), event]
            self.end_at = now + (0.0 if self.reliable else TIMER_K_S)
            return [event]
        if self.state is TxState.ACCEPTED and 200 <= status < 300:
            return [event]  # RFC 6026 §7.2: a retransmitted 2xx goes to the core
        if self.state is TxState.COMPLETED and self.ack is not None and status >= 300:
            return [Send(self.ack)]  # §17.1.1.2: retransmitted final, ACK again
        return []

    def handle_timer(self, now: float) -> list[UacOutput]:
        if self.end_at is not None and now >= self.end_at:
            self.state = TxState.TERMINATED
            self.end_at = None
            return []
        if self.timeout_at is not None and now >= self.timeout_at:
            self.state = TxState.TERMINATED
            self.retransmit_at = self.timeout_at = None
            return [RequestTimedOut(self.request)]
        if self.retransmit_at is not None and now >= self.retransmit_at:
            if self.is_invite:
                self.interval_s *= 2  # Timer A doubles without a cap (§17.1.1.2)
            elif self.state is TxState.TRYING:
                self.interval_s = min(2 * self.interval_s, T2)  # Timer E (§17.1.2.2)
            self.retransmit_at = now + self.interval_s
            return [Send(self.data)]
        return []


def _ack_for_failure(invite: SipRequest, response: SipResponse) -> SipRequest:
    """RFC 3261 §17.1.1.3: the ACK of a non-2xx final response, built by the transaction:
    the INVITE's Request-URI, top Via (same branch), From, Call-ID, Route; To from the
    response; CSeq number of the INVITE with method ACK."""
    headers = [
        ("Via", invite.headers.get_all("Via")[0]),
        ("From", invite.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.number} ACK"),
    ]
    headers.extend(("Route", value) for value in invite.headers.get_all("Route"))
    return build_request("ACK", invite.uri, headers=headers)


class UacCall:
    """The signalling state of one call we place: its transactions and, once the INVITE
    is answered 2xx, its dialog (RFC 3261 §12.1.2).

    ``via`` names our transport and sent-by (each request gets a fresh branch);
    ``contact`` is our Contact (with ``+sip.src``, RFC 7866 §6.1.1); ``local`` and
    ``remote`` are the From (with our tag) and To of the INVITE.
    """

    def __init__(
        self,
        *,
        call_id: str,
        target: SipUri,
        local: NameAddr,
        remote: NameAddr,
        via: Via,
        contact: NameAddr,
        reliable: bool,
    ) -> None:
        if local.tag is None:
            raise UsageError("the From of a call needs our tag")
        self.call_id = call_id
        self.target = target
        self.local = local
        self.remote = remote
        self.via = via
        self.contact = contact
        self.reliable = reliable
        self.dialog: Dialog | None = None
        self._cseq = 0
        self._transactions: dict[tuple[str, str], ClientTransaction] = {}
        self._acks: dict[int, bytes] = {}  # INVITE CSeq number -> the ACK of its 2xx
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._sequence = itertools.count()

    # -- requests we send ---------------------------------------------------------------

    def invite(
        self, body: bytes, content_type: str, headers: Iterable[tuple[str, str]], now: float
    ) -> tuple[SipRequest, list[UacOutput]]:
        """The dialog-creating INVITE (RFC 3261 §8.1.1, §13.2.1)."""
        if self._cseq:
            raise UsageError("the INVITE of this call was already sent")
        self._cseq = 1
        request = build_request(
            "INVITE",
            self.target,
            headers=[
                ("Via", str(self.via.with_param("branch", new_branch()))),
                ("From", str(self.local)),
                ("To", str(self.remote)),
                ("Call-ID", self.call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", str(self.contact)),
                ("Allow", ALLOW),
                *headers,
            ],
            body=body,
            content_type=content_type,
        )
        return request, self._start(request, now)

    def request(
        self,
        method: str,
        *,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[SipRequest, list[UacOutput]]:
        """A request in the dialog (RFC 3261 §12.2.1.1): re-INVITE, UPDATE, BYE."""
        if self.dialog is None:
            raise UsageError(f"{method} needs an established dialog")
        contact = self.contact if method in ("INVITE", "UPDATE") else None
        request = self.dialog.create_request(
            method, via=self.via, contact=contact, extra_headers=headers, body=body,
            content_type=content_type,
        )
        return request, self._start(request, now)

    def _start(self, request: SipRequest, now: float) -> list[UacOutput]:
        transaction = ClientTransaction(request, reliable=self.reliable, now=now)
        self._transactions[transaction.key] = transaction
        self._arm(transaction)
        return [Send(transaction.data)]

    # -- what arrives -------------------------------------------------------------------

    def receive(self, message: SipRequest | SipResponse, now: float) -> list[UacOutput]:
        """A parsed message from the server.  Raises ``SipParseError`` for a response
        whose Via or CSeq cannot be read (the shell drops it, RFC 3261 §18.1.2)."""
        if isinstance(message, SipRequest):
            return self._receive_request(message)
        key = (message.top_via.branch or "", message.cseq.method)
        transaction = self._transactions.get(key)
        if transaction is None:
            return self._stray(message)
        outputs = transaction.receive(message, now)
        if transaction.is_invite and 200 <= message.status < 300:
            outputs = [*self._acknowledge(transaction.request, message), *outputs]
        self._arm(transaction)
        return outputs

    def _stray(self, response: SipResponse) -> list[UacOutput]:
        # A 2xx retransmitted after Timer M: still ACK it (RFC 3261 §13.2.2.4).
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            ack = self._acks.get(response.cseq.number)
            if ack is not None:
                return [Send(ack)]
        return []

    def _acknowledge(self, invite: SipRequest, response: SipResponse) -> list[UacOutput]:
        """RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx, the first one creating the
        dialog (§12.1.2); a retransmitted 2xx gets the same ACK again."""
        number = invite.cseq.number
        ack = self._acks.get(number)
        if ack is None:
            if self.dialog is None:
                self.dialog = _dialog_from_2xx(invite, response, self.local)
            ack = bytes(self._ack_for_2xx(number))
            self._acks[number] = ack
        return [Send(ack)]

    def _ack_for_2xx(self, number: int) -> SipRequest:
        """§13.2.2.4: an ACK built like an in-dialog request, with the INVITE's CSeq
        number and its own branch; it is not a transaction and is never retransmitted
        on its own."""
        dialog = self.dialog
        if dialog is None:
            raise UsageError("ACK without a dialog")
        routes = dialog.route_set
        # Loose routing only (every RFC 3261 proxy sets ;lr); srs's server adds no routes.
        headers = [
            ("Via", str(self.via.with_param("branch", new_branch()))),
            ("From", str(dialog.local)),
            ("To", str(dialog.remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} ACK"),
        ]
        headers.extend(("Route", f"<{uri}>") for uri in routes)
        return build_request("ACK", dialog.remote_target, headers=headers)

    def _receive_request(self, request: SipRequest) -> list[UacOutput]:
        if request.method == "ACK":
            return []  # RFC 3261 §17: an ACK is never answered
        ours = (
            self.dialog is not None
            and DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
            == self.dialog.id
        )
        if not ours:
            return [Send(bytes(build_response(request, 481)))]
        if request.method == "BYE":
            return [Send(bytes(build_response(request, 200))), ByeReceived(request)]
        if request.method == "OPTIONS":
            return [Send(bytes(build_response(request, 200, extra_headers=[("Allow", ALLOW)])))]
        # The server's re-INVITEs and UPDATEs are not something a recording client takes.
        return [Send(bytes(build_response(request, 488)))]

    # -- timers -------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        while self._heap:
            deadline, _, key = self._heap[0]
            transaction = self._transactions.get(key)
            if transaction is not None and transaction.next_timer() == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def handle_timer(self, now: float) -> list[UacOutput]:
        outputs: list[UacOutput] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, key = heapq.heappop(self._heap)
            transaction = self._transactions.get(key)
            if transaction is None or transaction.next_timer() != deadline:
                continue
            outputs.extend(transaction.handle_timer(now))
            self._arm(transaction)
        return outputs

    def _arm(self, transaction: ClientTransaction) -> None:
        if transaction.state is TxState.TERMINATED:
            self._transactions.pop(transaction.key, None)
            return
        deadline = transaction.next_timer()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._sequence), transaction.key))

    def __len__(self) -> int:
        """Live transactions."""
        return len(self._transactions)


def _dialog_from_2xx(invite: SipRequest, response: SipResponse, local: NameAddr) -> Dialog:
    """RFC 3261 §12.1.2: the UAC's dialog; the route set is Record-Route reversed, the
    remote target the 2xx's Contact, the remote tag its To tag."""
    remote = response.to
    contact = response.contact
    if contact is None or not isinstance(contact.uri, SipUri):
        raise SipParseError("2xx without a SIP Contact")  # RFC 3261 §13.3.1.4: MUST
    routes = []
    for entry in reversed(response.record_route):
        if not isinstance(entry.uri, SipUri):
            raise SipParseError("Record-Route is not a SIP URI")
        routes.append(entry.uri)
    return Dialog(
        DialogId(invite.call_id, local.tag or "", remote.tag or ""),
        local=local,
        remote=remote,
        remote_target=contact.uri,
        route_set=tuple(routes),
        remote_cseq=0,
        local_cseq=invite.cseq.number,
    )
