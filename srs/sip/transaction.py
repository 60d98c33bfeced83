"""SIP server transactions (RFC 3261 §17.2, amended by RFC 6026), sans-IO.

One object, :class:`TransactionLayer`, sits between the transport and the UAS core.  It
matches every incoming request to a server transaction (RFC 3261 §17.2.3), absorbs
retransmissions, retransmits what the RFC says must be retransmitted and reports what the
core must know.  It never reads a clock and never sleeps: time comes in as ``now``
(seconds, any monotonic origin) and every call returns the events it produced::

    layer = TransactionLayer()
    events = layer.receive_request(request, source, now)      # from the transport
    events = layer.send_response(transaction, response, now)  # from the core
    deadline = layer.next_timer()                             # arm one timer for this
    events = layer.handle_timer(now)                          # when it fires
    events = layer.transport_error(transaction, now)          # a send failed

Events (frozen dataclasses, handled in the order returned):

* :class:`SendResponse` -- put ``bytes(response)`` on the wire towards ``destination``.
* :class:`RequestReceived` -- a new request for the core.  For INVITE the layer has already
  emitted ``SendResponse`` with a 100 (Trying) just before it (RFC 3261 §17.2.1) unless
  constructed with ``send_100_trying=False``.
* :class:`CancelReceived` -- a new CANCEL; ``invite`` is the INVITE server transaction it
  cancels (RFC 3261 §9.2), or None: the core answers the CANCEL 481.  Otherwise it answers
  the CANCEL 200 and, if the INVITE has no final response yet, the INVITE 487.
* :class:`AckReceived` -- an ACK that no transaction absorbed: the ACK for a 2xx, which
  belongs to the core (RFC 3261 §17.2.3, §18.2.1).  ``transaction`` is the INVITE
  transaction whose 2xx it acknowledged (retransmission stopped), or None.
* :class:`AckTimedOut` -- a 2xx to INVITE was retransmitted for 64*T1 without an ACK: the
  dialog is confirmed but the session SHOULD be ended with a BYE (RFC 3261 §13.3.1.4).
* :class:`TransactionTimedOut` -- Timer H fired: a non-2xx final answer was never
  acknowledged (RFC 3261 §17.2.1).  The core tears down whatever it kept for the request.
* :class:`TransportFailed` -- the transport reported an error sending on a transaction.
  The transaction stays in its state (RFC 6026 §8.8) and its timers still end it; the core
  decides whether the session can go on.
* :class:`Overloaded` -- a new request arrived while ``max_transactions`` are live.  The
  core answers it statelessly: ``build_response(request, 503, extra_headers=[("Retry-After",
  str(retry_after_s))])`` sent to ``source``.

``source`` is whatever address value the transport uses (:class:`Source` here, or any
value with a ``reliable`` property); it comes back unchanged as ``SendResponse.destination``.
Requests whose Via, CSeq, Call-ID, From or To cannot be read raise ``SipParseError``.

Retransmitting the 2xx to an INVITE is the UAS core's duty (RFC 3261 §13.3.1.4), not the
transaction's (RFC 6026 §7.1, §8.7).  The layer performs it on the core's behalf, because it
already owns the timers and sees every ACK: the core calls ``send_response`` once with its
2xx and hears back :class:`AckReceived` or :class:`AckTimedOut`.

The state machines themselves (tables, timers, :class:`ServerTransaction`) live in
:mod:`srs.sip.server_transaction`; this module matches, keeps the transactions and the one
timer heap, and speaks in events.  A transaction is dropped the moment it is Terminated.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Hashable
from dataclasses import dataclass

from srs.errors import SipParseError, UsageError
from srs.sip.message import SipRequest, SipResponse, build_response
from srs.sip.routing import PeerLike
from srs.sip.server_transaction import TIMER_INPUTS, Action, Input, ServerTransaction, State, Timer
from srs.sip.timers import Kind, SipTimers, TimerHeap

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "AckTimedOut",
    "CancelReceived",
    "Event",
    "Overloaded",
    "RequestReceived",
    "SendResponse",
    "Source",
    "TransactionLayer",
    "TransactionTimedOut",
    "TransportFailed",
    "new_branch",
]

# RFC 3261 §8.1.1.7: branches made by RFC 3261 elements start with this cookie.
MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A fresh Via branch: the magic cookie and 64 random bits (RFC 3261 §8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a request came from, as the transport names it.  Opaque to this module apart
    from ``reliable``; any value with a ``reliable`` property is accepted instead."""

    transport: str  # "udp", "tcp", "tls", "ws", "wss", "sctp"
    host: str
    port: int
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: every transport but UDP is reliable."""
        return self.transport.lower() != "udp"


@dataclass(frozen=True, slots=True)
class _BranchKey:
    """RFC 3261 §17.2.3 matching for branches with the magic cookie."""

    branch: str
    sent_by_host: str
    sent_by_port: int | None
    method: str


@dataclass(frozen=True, slots=True)
class _Rfc2543Key:
    """RFC 3261 §17.2.3 fallback matching for requests from RFC 2543 elements."""

    method: str
    request_uri: str
    call_id: str
    from_tag: str | None
    to_tag: str | None
    cseq_number: int
    top_via: str


_MatchKey = _BranchKey | _Rfc2543Key


def _match_key(request: SipRequest, method: str) -> _MatchKey:
    """The §17.2.3 key of ``request`` as if its method were ``method``."""
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return _BranchKey(branch, via.host.lower(), via.port, method)
    # RFC 2543 elements (old gateways) send no cookie, or no branch at all.
    return _Rfc2543Key(
        method,
        str(request.uri),
        request.call_id,
        request.from_.tag,
        request.to.tag,
        request.cseq.number,
        str(via),
    )


def _check_request(request: SipRequest) -> None:
    """The headers every request needs before a transaction can hold it (RFC 3261 §8.1.1).

    Each typed view raises ``SipParseError`` naming the header when it is missing or bad.
    """
    if request.cseq.method != request.method:
        raise SipParseError("CSeq method does not match the request method")  # §8.1.1.5
    _ = (request.call_id, request.from_, request.to, request.top_via)


@dataclass(frozen=True, slots=True, eq=False)
class SendResponse:
    """Send ``response`` towards ``destination`` (the request's source, RFC 3261 §18.2.2)."""

    response: SipResponse
    destination: PeerLike
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class RequestReceived:
    """A new request (not a retransmission) for the core to answer via ``send_response``."""

    transaction: ServerTransaction
    request: SipRequest
    source: PeerLike


@dataclass(frozen=True, slots=True, eq=False)
class CancelReceived:
    """A new CANCEL (its own transaction) and the INVITE transaction it matches, if any."""

    transaction: ServerTransaction
    request: SipRequest
    source: PeerLike
    invite: ServerTransaction | None


@dataclass(frozen=True, slots=True, eq=False)
class AckReceived:
    """An ACK for a 2xx (or one matching nothing): it belongs to the core's dialog."""

    request: SipRequest
    source: PeerLike
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True, eq=False)
class AckTimedOut:
    """No ACK within 64*T1 of our 2xx (RFC 3261 §13.3.1.4): end the session with a BYE."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class TransactionTimedOut:
    """Timer H fired: our non-2xx final response to INVITE was never acknowledged."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class TransportFailed:
    """The transport could not send on this transaction (RFC 3261 §17.2.4, RFC 6026 §8.8)."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class Overloaded:
    """Too many live transactions: answer 503 statelessly (RFC 3261 §21.5.4)."""

    request: SipRequest
    source: PeerLike
    retry_after_s: int


Event = (
    SendResponse
    | RequestReceived
    | CancelReceived
    | AckReceived
    | AckTimedOut
    | TransactionTimedOut
    | TransportFailed
    | Overloaded
)


class TransactionLayer:
    """Every server transaction of one SIP endpoint, matched per RFC 3261 §17.2.3.

    ``max_transactions`` bounds memory: beyond it new requests yield :class:`Overloaded`.
    Of that table, ``reserved_in_dialog`` entries are kept for requests inside a dialog
    (those with a To tag) and CANCELs, so a burst of new INVITEs never stops the BYE of
    a call in progress; and no source host holds more than ``max_per_source`` of the
    transactions that open outside a dialog.
    ``send_100_trying`` makes the layer answer each new INVITE with 100 (Trying) at once
    (RFC 3261 §17.2.1, §8.2.6.1: no To tag added).
    """

    def __init__(
        self,
        *,
        timers: SipTimers | None = None,
        max_transactions: int = 4096,
        send_100_trying: bool = True,
        retry_after_s: int = 5,
        reserved_in_dialog: int | None = None,
        max_per_source: int | None = None,
    ) -> None:
        if max_transactions < 1:
            raise UsageError("max_transactions must be at least 1")
        self.reserved_in_dialog = (max_transactions // 8 if reserved_in_dialog is None
                                   else reserved_in_dialog)
        self.max_per_source = max_per_source if max_per_source is not None else max(
            1, max_transactions // 2)
        if not 0 <= self.reserved_in_dialog < max_transactions or self.max_per_source < 1:
            raise UsageError("reserved_in_dialog must be below max_transactions and "
                             "max_per_source at least 1")
        self._per_source: dict[str, int] = {}
        self.timers = timers if timers is not None else SipTimers()
        self.max_transactions = max_transactions
        self.send_100_trying = send_100_trying
        self.retry_after_s = retry_after_s
        self._transactions: dict[Hashable, ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, str, int], ServerTransaction] = {}
        self._heap: TimerHeap[tuple[ServerTransaction, Timer]] = TimerHeap(self._current)

    def __len__(self) -> int:
        """How many transactions are live (not Terminated)."""
        return len(self._transactions)

    # -- inputs ---------------------------------------------------------------------------

    def receive_request(self, request: SipRequest, source: PeerLike, now: float) -> list[Event]:
        """Match a request from the network (RFC 3261 §17.2.3) and say what to do.

        Raises ``SipParseError`` when a header needed for matching (Via, CSeq, Call-ID,
        From, To) is missing or malformed, or when the CSeq method differs from the
        request's (RFC 3261 §8.1.1.5); the transport answers those 400 if it can.
        """
        _check_request(request)
        if request.method == "ACK":
            return self._receive_ack(request, source, now)
        key = _match_key(request, request.method)
        existing = self._transactions.get(key)
        if existing is not None:
            return self._run(existing, Input.REQUEST, now)
        in_dialog = request.to.tag is not None or request.method == "CANCEL"
        limit = self.max_transactions - (0 if in_dialog else self.reserved_in_dialog)
        held = self._per_source.get(source.host, 0)
        if len(self._transactions) >= limit or (not in_dialog and held >= self.max_per_source):
            return [Overloaded(request, source, self.retry_after_s)]
        transaction = ServerTransaction(request, source, key, self.timers, now)
        self._transactions[key] = transaction
        if not in_dialog:
            transaction.source_host = source.host
            self._per_source[source.host] = held + 1
        events: list[Event] = []
        if request.method == "INVITE":
            if self.send_100_trying:
                trying = build_response(request, 100)
                events.extend(self._respond(transaction, trying, now))
            events.append(RequestReceived(transaction, request, source))
        elif request.method == "CANCEL":
            events.append(CancelReceived(transaction, request, source, self._cancelled(request)))
        else:
            events.append(RequestReceived(transaction, request, source))
        return events

    def send_response(
        self, transaction: ServerTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        """Send the core's response on ``transaction`` (RFC 3261 §17.2.1, §17.2.2).

        Responses the state machine discards (a second final answer, a 487 after a 2xx)
        yield no events.  A 2xx to INVITE is then retransmitted until its ACK arrives
        (RFC 3261 §13.3.1.4).
        """
        if self._transactions.get(transaction.key) is not transaction:
            raise UsageError("send_response on a transaction this layer no longer holds")
        if not 100 <= response.status <= 699:
            raise UsageError(f"response status out of range: {response.status}")
        return self._respond(transaction, response, now)

    def matches(self, request: SipRequest) -> bool:
        """Whether ``request`` (not an ACK) is a retransmission of a live transaction's
        request (RFC 3261 §17.2.3).  Raises ``SipParseError`` as ``receive_request``."""
        _check_request(request)
        return _match_key(request, request.method) in self._transactions

    def cancels(self, cancel: SipRequest, source_host: str) -> bool:
        """Whether ``cancel`` matches a live INVITE transaction that ``source_host`` started
        (RFC 3261 §9.2); any other CANCEL is answered statelessly and holds nothing."""
        _check_request(cancel)
        invite = self._cancelled(cancel)
        return invite is not None and invite.source.host == source_host

    def holds(self, transaction: ServerTransaction) -> bool:
        """Whether ``transaction`` is still live here (not Terminated, not dropped), i.e.
        whether the core may still answer on it: a CANCEL or a timer may have ended it
        while the session layer was preparing its answer."""
        return self._live(transaction)

    def transport_error(self, transaction: ServerTransaction, now: float) -> list[Event]:
        """The transport failed to send on ``transaction`` (RFC 3261 §17.2.4, RFC 6026 §8.8)."""
        if self._transactions.get(transaction.key) is not transaction:
            return []
        return self._run(transaction, Input.TRANSPORT_ERROR, now)

    def next_timer(self) -> float | None:
        """The earliest time ``handle_timer`` has work to do, or None."""
        return self._heap.next_timer()

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at or before ``now``."""
        events: list[Event] = []
        for (transaction, timer), _ in self._heap.pop_due(now):
            transaction.disarm(timer)
            if timer is Timer.RETRANSMIT_2XX:
                events.extend(self._retransmit_2xx(transaction, now))
            else:
                events.extend(self._run(transaction, TIMER_INPUTS[timer], now))
        return events

    # -- internals ------------------------------------------------------------------------

    def _release_source(self, transaction: ServerTransaction) -> None:
        host = transaction.source_host
        if host is None:
            return
        transaction.source_host = None
        left = self._per_source.get(host, 1) - 1
        if left > 0:
            self._per_source[host] = left
        else:
            self._per_source.pop(host, None)

    def _live(self, transaction: ServerTransaction) -> bool:
        return self._transactions.get(transaction.key) is transaction

    def _current(self, key: tuple[ServerTransaction, Timer], deadline: float) -> bool:
        """Whether a heap entry still stands: not cancelled, re-armed or outlived."""
        transaction, timer = key
        return transaction.deadlines.get(timer) == deadline and self._live(transaction)

    def _receive_ack(self, request: SipRequest, source: PeerLike, now: float) -> list[Event]:
        # §17.2.3: an ACK matches the INVITE transaction it acknowledges.
        key = _match_key(request, "INVITE")
        transaction = self._transactions.get(key)
        if transaction is None and isinstance(key, _Rfc2543Key) and key.to_tag is not None:
            # RFC 2543 fallback: the INVITE had no To tag; the ACK carries our response's.
            transaction = self._transactions.get(dataclasses.replace(key, to_tag=None))
        if transaction is not None and not self._to_tag_matches(transaction, request):
            transaction = None
        acked: ServerTransaction | None = None
        if transaction is not None:
            events = self._run(transaction, Input.ACK, now)
            if transaction.state is not State.ACCEPTED:
                return events  # absorbed: the ACK for a non-2xx final response
            # RFC 6026 §8.7: in Accepted the ACK goes to the TU.  (It normally carries a new
            # branch, RFC 3261 §17.1.1.3; some UACs reuse the INVITE's.)
            acked = transaction if transaction.ack_key is not None else None
        else:
            # RFC 3261 §18.2.1: a request matching no transaction goes to the core.  The 2xx it
            # acknowledges is found by Call-ID, To tag and CSeq number (§13.3.1.4).
            to_tag = request.to.tag
            if to_tag is not None:
                acked = self._awaiting_ack.get((request.call_id, to_tag, request.cseq.number))
        if acked is not None and acked.ack_key is not None:
            self._awaiting_ack.pop(acked.ack_key, None)
            acked.ack_key = None
            acked.disarm(Timer.RETRANSMIT_2XX)
        return [AckReceived(request, source, acked)]

    @staticmethod
    def _to_tag_matches(transaction: ServerTransaction, ack: SipRequest) -> bool:
        """RFC 2543 fallback: the ACK's To tag must be the one our response carried."""
        if isinstance(transaction.key, _BranchKey):
            return True
        sent = transaction.last_response
        return sent is not None and sent.to.tag == ack.to.tag

    def _cancelled(self, cancel: SipRequest) -> ServerTransaction | None:
        """RFC 3261 §9.2: the INVITE transaction a CANCEL matches (same key, method INVITE)."""
        return self._transactions.get(_match_key(cancel, "INVITE"))

    def _respond(
        self, transaction: ServerTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        status = response.status
        if status < 200:
            event = Input.PROVISIONAL
        elif status < 300:
            event = Input.SUCCESS
        else:
            event = Input.FAILURE
        if transaction.kind is Kind.INVITE and event is Input.SUCCESS:
            return self._respond_2xx(transaction, response, now)
        return self._run(transaction, event, now, response)

    def _respond_2xx(
        self, transaction: ServerTransaction, response: SipResponse, now: float
    ) -> list[Event]:
        to_tag = response.to.tag
        if to_tag is None:
            raise UsageError("a 2xx to INVITE needs a To tag (RFC 3261 §8.2.6.2)")
        first = transaction.state is State.PROCEEDING
        events = self._run(transaction, Input.SUCCESS, now, response)
        if first and events:
            # RFC 3261 §13.3.1.4: retransmit from T1, doubling up to T2, until the ACK.
            ack_key = (response.call_id, to_tag, response.cseq.number)
            transaction.ack_key = ack_key
            self._awaiting_ack[ack_key] = transaction
            transaction.arm(Timer.RETRANSMIT_2XX, now)
            self._push(transaction, Timer.RETRANSMIT_2XX)
        return events

    def _retransmit_2xx(self, transaction: ServerTransaction, now: float) -> list[Event]:
        if transaction.ack_key is None or transaction.last_response is None:
            return []
        transaction.back_off(Timer.RETRANSMIT_2XX, now)
        self._push(transaction, Timer.RETRANSMIT_2XX)
        return [SendResponse(transaction.last_response, transaction.source, transaction)]

    def _push(self, transaction: ServerTransaction, timer: Timer) -> None:
        self._heap.push((transaction, timer), transaction.deadlines[timer])

    def _run(
        self,
        transaction: ServerTransaction,
        event: Input,
        now: float,
        response: SipResponse | None = None,
    ) -> list[Event]:
        """Feed one input to ``transaction`` and turn its actions into events."""
        before = dict(transaction.deadlines)
        actions = transaction.apply(event, now)
        if event is Input.TIMER_G and transaction.state is State.COMPLETED:
            transaction.back_off(Timer.G, now)  # §17.2.1: min(2*G, T2)
        events: list[Event] = []
        for action in actions:
            if action is Action.SEND and response is not None:
                transaction.last_response = response
                events.append(SendResponse(response, transaction.source, transaction))
            elif action is Action.RESEND and transaction.last_response is not None:
                events.append(
                    SendResponse(transaction.last_response, transaction.source, transaction)
                )
            elif action is Action.TIMEOUT:
                events.append(TransactionTimedOut(transaction))
            elif action is Action.TRANSPORT_ERROR:
                events.append(TransportFailed(transaction))
        if transaction.state is State.TERMINATED:
            if transaction.ack_key is not None:
                # RFC 3261 §13.3.1.4: 64*T1 (= Timer L) passed without an ACK for the 2xx.
                self._awaiting_ack.pop(transaction.ack_key, None)
                transaction.ack_key = None
                if event is Input.TIMER_L:
                    events.append(AckTimedOut(transaction))
            del self._transactions[transaction.key]
            self._release_source(transaction)
        else:
            for timer, deadline in transaction.deadlines.items():
                if before.get(timer) != deadline:
                    self._push(transaction, timer)
        return events
