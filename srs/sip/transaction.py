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
  belongs to the core (RFC 3261 §17.2.3, RFC 6026 §8.5).  ``transaction`` is the INVITE
  transaction whose 2xx it acknowledged (retransmission stopped), or None.
* :class:`AckTimedOut` -- a 2xx to INVITE was retransmitted for 64*T1 without an ACK: the
  dialog is confirmed but the session SHOULD be ended with a BYE (RFC 3261 §13.3.1.4).
* :class:`TransactionTimedOut` -- Timer H fired: a non-2xx final answer was never
  acknowledged (RFC 3261 §17.2.1).  The core tears down whatever it kept for the request.
* :class:`TransportFailed` -- the transport reported an error sending on a transaction
  (RFC 3261 §17.2.4).
* :class:`Overloaded` -- a new request arrived while ``max_transactions`` are live.  The
  core answers it 503 statelessly with ``Retry-After: retry_after_s``.

Retransmitting the 2xx to an INVITE is the UAS core's duty (RFC 3261 §13.3.1.4), not the
transaction's (RFC 6026 §7.1).  The layer performs it on the core's behalf, because it
already owns the timers and sees every ACK: the core calls ``send_response`` once with its
2xx and hears back :class:`AckReceived` or :class:`AckTimedOut`.

The state machines are the tables ``INVITE_TRANSITIONS`` and ``NON_INVITE_TRANSITIONS``
(RFC 3261 Figures 7 and 8, RFC 6026 Figure 5); which timers a state arms is in
``STATE_TIMERS``.  A transaction is dropped the moment it reaches Terminated.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from srs.errors import SipParseError, UsageError
from srs.sip.message import SipRequest, SipResponse, build_response

__all__ = [
    "T1",
    "T2",
    "T4",
    "TIMER_G",
    "TIMER_H",
    "TIMER_I",
    "TIMER_J",
    "TIMER_L",
    "MAGIC_COOKIE",
    "new_branch",
    "SipTimers",
    "SourceLike",
    "Source",
    "Kind",
    "State",
    "Input",
    "Action",
    "Timer",
    "INVITE_TRANSITIONS",
    "NON_INVITE_TRANSITIONS",
    "STATE_TIMERS",
    "transition",
    "ServerTransaction",
    "TransactionLayer",
    "SendResponse",
    "RequestReceived",
    "CancelReceived",
    "AckReceived",
    "AckTimedOut",
    "TransactionTimedOut",
    "TransportFailed",
    "Overloaded",
    "Event",
]

# RFC 3261 §17 Table 4 (and Appendix A), in seconds.
T1 = 0.5  # RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message stays in the network
TIMER_G = T1  # initial INVITE final-response retransmit interval (unreliable only)
TIMER_H = 64 * T1  # wait for ACK receipt
TIMER_I = T4  # wait for ACK retransmits (unreliable; zero on reliable)
TIMER_J = 64 * T1  # wait for non-INVITE request retransmits (unreliable; zero on reliable)
TIMER_L = 64 * T1  # RFC 6026 §8.7: wait for INVITE retransmits after a 2xx

# RFC 3261 §8.1.1.7: branches made by RFC 3261 elements start with this cookie.
MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A fresh Via branch: the magic cookie and 64 random bits (RFC 3261 §8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class SipTimers:
    """The three base values of RFC 3261 §17 Table 4; every timer derives from them."""

    t1_s: float = T1
    t2_s: float = T2
    t4_s: float = T4

    def __post_init__(self) -> None:
        if not 0 < self.t1_s <= self.t2_s or self.t4_s <= 0:
            raise UsageError("SipTimers need 0 < t1_s <= t2_s and t4_s > 0")


class SourceLike(Protocol):
    """What the layer needs of the transport's address value: whether it is reliable."""

    @property
    def reliable(self) -> bool: ...


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


class Kind(Enum):
    INVITE = "INVITE"
    NON_INVITE = "non-INVITE"


class State(Enum):
    """States as named in RFC 3261 Figures 7 and 8 and RFC 6026 Figure 5."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(Enum):
    """What can happen to a server transaction."""

    REQUEST = "request retransmission"
    ACK = "ACK"
    PROVISIONAL = "1xx from TU"
    SUCCESS = "2xx from TU"
    FAILURE = "300-699 from TU"
    TIMER_G = "Timer G fires"
    TIMER_H = "Timer H fires"
    TIMER_I = "Timer I fires"
    TIMER_J = "Timer J fires"
    TIMER_L = "Timer L fires"
    TRANSPORT_ERROR = "transport error"


class Action(Enum):
    """What the transaction does on a transition."""

    NONE = "absorb"
    SEND = "send the TU's response"
    RESEND = "resend the last response"
    DISCARD = "discard the TU's response"
    PASS_ACK = "pass the ACK to the TU"
    TIMEOUT = "inform the TU of a timeout"
    TRANSPORT_ERROR = "inform the TU of a transport error"


class Timer(Enum):
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    L = "L"
    # RFC 3261 §13.3.1.4: the UAS core's 2xx retransmission (no letter in the RFC).
    RETRANSMIT_2XX = "2xx"


_TIMER_INPUT = {
    Timer.G: Input.TIMER_G,
    Timer.H: Input.TIMER_H,
    Timer.I: Input.TIMER_I,
    Timer.J: Input.TIMER_J,
    Timer.L: Input.TIMER_L,
}

Transitions = Mapping[State, Mapping[Input, tuple[State, Action]]]

_P, _C, _F, _A, _X = (
    State.PROCEEDING,
    State.COMPLETED,
    State.CONFIRMED,
    State.ACCEPTED,
    State.TERMINATED,
)

# RFC 3261 §17.2.1 Figure 7 with RFC 6026 §7.1 Figure 5 (2xx leads to Accepted, not
# Terminated).  Inputs not listed leave the state alone: a TU response is discarded (see
# transition), anything else is absorbed.
INVITE_TRANSITIONS: Transitions = {
    _P: {
        # §17.2.1: a retransmitted INVITE gets the most recent provisional response.
        Input.REQUEST: (_P, Action.RESEND),
        Input.PROVISIONAL: (_P, Action.SEND),
        Input.SUCCESS: (_A, Action.SEND),
        Input.FAILURE: (_C, Action.SEND),
        Input.TRANSPORT_ERROR: (_X, Action.TRANSPORT_ERROR),
    },
    _C: {
        Input.REQUEST: (_C, Action.RESEND),
        Input.TIMER_G: (_C, Action.RESEND),
        Input.ACK: (_F, Action.NONE),
        Input.TIMER_H: (_X, Action.TIMEOUT),
        Input.TRANSPORT_ERROR: (_X, Action.TRANSPORT_ERROR),
    },
    _F: {
        # §17.2.1: Confirmed absorbs further ACKs (and a late INVITE retransmission).
        Input.ACK: (_F, Action.NONE),
        Input.REQUEST: (_F, Action.NONE),
        Input.TIMER_I: (_X, Action.NONE),
    },
    _A: {
        # RFC 6026 §8.7: retransmitted INVITEs are absorbed, an ACK goes to the TU, further
        # 2xx from the TU are sent, and Timer L ends the transaction.
        Input.REQUEST: (_A, Action.NONE),
        Input.ACK: (_A, Action.PASS_ACK),
        Input.SUCCESS: (_A, Action.SEND),
        Input.TIMER_L: (_X, Action.NONE),
    },
    _X: {},
}

_T = State.TRYING

# RFC 3261 §17.2.2 Figure 8.
NON_INVITE_TRANSITIONS: Transitions = {
    _T: {
        # §17.2.2: retransmissions in Trying are discarded (nothing to resend yet).
        Input.REQUEST: (_T, Action.NONE),
        Input.PROVISIONAL: (_P, Action.SEND),
        Input.SUCCESS: (_C, Action.SEND),
        Input.FAILURE: (_C, Action.SEND),
    },
    _P: {
        Input.REQUEST: (_P, Action.RESEND),
        Input.PROVISIONAL: (_P, Action.SEND),
        Input.SUCCESS: (_C, Action.SEND),
        Input.FAILURE: (_C, Action.SEND),
        Input.TRANSPORT_ERROR: (_X, Action.TRANSPORT_ERROR),
    },
    _C: {
        # §17.2.2: further final responses from the TU are discarded (default below).
        Input.REQUEST: (_C, Action.RESEND),
        Input.TIMER_J: (_X, Action.NONE),
        Input.TRANSPORT_ERROR: (_X, Action.TRANSPORT_ERROR),
    },
    _X: {},
}

_TRANSITIONS: dict[Kind, Transitions] = {
    Kind.INVITE: INVITE_TRANSITIONS,
    Kind.NON_INVITE: NON_INVITE_TRANSITIONS,
}

# Timers a state arms on entry; leaving a state cancels them.
STATE_TIMERS: Mapping[tuple[Kind, State], tuple[Timer, ...]] = {
    (Kind.INVITE, State.COMPLETED): (Timer.G, Timer.H),  # RFC 3261 §17.2.1
    (Kind.INVITE, State.CONFIRMED): (Timer.I,),  # RFC 3261 §17.2.1
    (Kind.INVITE, State.ACCEPTED): (Timer.L,),  # RFC 6026 §8.7
    (Kind.NON_INVITE, State.COMPLETED): (Timer.J,),  # RFC 3261 §17.2.2
}

_TU_INPUTS = frozenset({Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE})


def transition(kind: Kind, state: State, event: Input) -> tuple[State, Action]:
    """The table cell for ``event`` in ``state``; unlisted cells keep the state and
    discard a TU response (RFC 3261 §17.2.2 "MUST be discarded") or absorb anything else."""
    row = _TRANSITIONS[kind][state]
    found = row.get(event)
    if found is not None:
        return found
    return (state, Action.DISCARD if event in _TU_INPUTS else Action.NONE)


def _duration_s(timers: SipTimers, timer: Timer, *, reliable: bool) -> float | None:
    """How long ``timer`` runs; None when it is not started at all (RFC 3261 §17.2)."""
    if timer is Timer.G:
        return None if reliable else timers.t1_s  # §17.2.1: only on unreliable transports
    if timer is Timer.I:
        return 0.0 if reliable else timers.t4_s  # §17.2.1
    if timer is Timer.J:
        return 0.0 if reliable else 64 * timers.t1_s  # §17.2.2
    if timer is Timer.RETRANSMIT_2XX:
        return timers.t1_s  # §13.3.1.4, on every transport
    return 64 * timers.t1_s  # H (§17.2.1) and L (RFC 6026 §8.7)


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


class ServerTransaction:
    """One server transaction.  Read its attributes; change it only through the layer.

    ``request`` is the request that created it, ``source`` where that came from,
    ``last_response`` the response most recently sent (resent on retransmissions).
    """

    __slots__ = (
        "kind",
        "request",
        "source",
        "reliable",
        "state",
        "last_response",
        "created_at_s",
        "_key",
        "_timers",
        "_deadlines",
        "_interval_s",
        "_ack_key",
    )

    def __init__(
        self,
        request: SipRequest,
        source: SourceLike,
        key: _MatchKey,
        timers: SipTimers,
        now: float,
    ) -> None:
        self.kind = Kind.INVITE if request.method == "INVITE" else Kind.NON_INVITE
        self.request = request
        self.source = source
        self.reliable = source.reliable
        # RFC 3261 §17.2.1 / §17.2.2: INVITE starts in Proceeding, the rest in Trying.
        self.state = State.PROCEEDING if self.kind is Kind.INVITE else State.TRYING
        self.last_response: SipResponse | None = None
        self.created_at_s = now
        self._key = key
        self._timers = timers
        self._deadlines: dict[Timer, float] = {}
        self._interval_s: dict[Timer, float] = {}
        # (Call-ID, To tag, CSeq number) of a 2xx waiting for its ACK (§13.3.1.4).
        self._ack_key: tuple[str, str, int] | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def awaiting_ack(self) -> bool:
        """True while a 2xx to this INVITE is being retransmitted for want of an ACK."""
        return self._ack_key is not None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.state.value}>"

    def _apply(self, event: Input, now: float) -> list[Action]:
        """Run one transition; zero-length timers armed on entry fire at once."""
        new_state, action = transition(self.kind, self.state, event)
        actions = [action]
        if new_state is not self.state:
            actions.extend(self._enter(new_state, now))
        return actions

    def _enter(self, state: State, now: float) -> list[Action]:
        self.state = state
        self._deadlines.clear()
        self._interval_s.clear()
        immediate: list[Timer] = []
        for timer in STATE_TIMERS.get((self.kind, state), ()):
            duration = _duration_s(self._timers, timer, reliable=self.reliable)
            if duration is None:
                continue
            if duration == 0:
                immediate.append(timer)
                continue
            self._deadlines[timer] = now + duration
            self._interval_s[timer] = duration
        actions: list[Action] = []
        for timer in immediate:
            if self.state is state:
                actions.extend(self._apply(_TIMER_INPUT[timer], now))
        return actions

    def _rearm_backoff(self, timer: Timer, now: float) -> None:
        """RFC 3261 §17.2.1 / §13.3.1.4: the interval doubles up to T2."""
        interval = min(2 * self._interval_s[timer], self._timers.t2_s)
        self._interval_s[timer] = interval
        self._deadlines[timer] = now + interval


@dataclass(frozen=True, slots=True, eq=False)
class SendResponse:
    """Send ``response`` towards ``destination`` (the request's source, RFC 3261 §18.2.2)."""

    response: SipResponse
    destination: SourceLike
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class RequestReceived:
    """A new request (not a retransmission) for the core to answer via ``send_response``."""

    transaction: ServerTransaction
    request: SipRequest
    source: SourceLike


@dataclass(frozen=True, slots=True, eq=False)
class CancelReceived:
    """A new CANCEL (its own transaction) and the INVITE transaction it matches, if any."""

    transaction: ServerTransaction
    request: SipRequest
    source: SourceLike
    invite: ServerTransaction | None


@dataclass(frozen=True, slots=True, eq=False)
class AckReceived:
    """An ACK for a 2xx (or one matching nothing): it belongs to the core's dialog."""

    request: SipRequest
    source: SourceLike
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
    """The transport could not send on this transaction (RFC 3261 §17.2.4)."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class Overloaded:
    """Too many live transactions: answer 503 statelessly (RFC 3261 §21.5.4)."""

    request: SipRequest
    source: SourceLike
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
    ``send_100_trying`` makes the layer answer each new INVITE with 100 (Trying) at once
    (RFC 3261 §17.2.1, §8.2.6.1: no To tag added).
    """

    def __init__(
        self,
        *,
        timers: SipTimers = SipTimers(),
        max_transactions: int = 4096,
        send_100_trying: bool = True,
        retry_after_s: int = 5,
    ) -> None:
        if max_transactions < 1:
            raise UsageError("max_transactions must be at least 1")
        self.timers = timers
        self.max_transactions = max_transactions
        self.send_100_trying = send_100_trying
        self.retry_after_s = retry_after_s
        self._transactions: dict[_MatchKey, ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, str, int], ServerTransaction] = {}
        self._heap: list[tuple[float, int, ServerTransaction, Timer]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        """How many transactions are live (not Terminated)."""
        return len(self._transactions)

    # -- inputs ---------------------------------------------------------------------------

    def receive_request(
        self, request: SipRequest, source: SourceLike, now: float
    ) -> list[Event]:
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
        if len(self._transactions) >= self.max_transactions:
            return [Overloaded(request, source, self.retry_after_s)]
        transaction = ServerTransaction(request, source, key, self.timers, now)
        self._transactions[key] = transaction
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
        if self._transactions.get(transaction._key) is not transaction:
            raise UsageError("send_response on a transaction this layer no longer holds")
        if not 100 <= response.status <= 699:
            raise UsageError(f"response status out of range: {response.status}")
        return self._respond(transaction, response, now)

    def transport_error(self, transaction: ServerTransaction, now: float) -> list[Event]:
        """The transport failed to send on ``transaction`` (RFC 3261 §17.2.4)."""
        if self._transactions.get(transaction._key) is not transaction:
            return []
        return self._run(transaction, Input.TRANSPORT_ERROR, now)

    def next_timer(self) -> float | None:
        """The earliest time ``handle_timer`` has work to do, or None."""
        heap = self._heap
        while heap:
            deadline, _, transaction, timer = heap[0]
            if transaction._deadlines.get(timer) == deadline and self._live(transaction):
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at or before ``now``."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction, timer = heapq.heappop(heap)
            if transaction._deadlines.get(timer) != deadline or not self._live(transaction):
                continue  # cancelled or re-armed since it was pushed
            del transaction._deadlines[timer]
            if timer is Timer.RETRANSMIT_2XX:
                events.extend(self._retransmit_2xx(transaction, now))
            else:
                events.extend(self._run(transaction, _TIMER_INPUT[timer], now))
        return events

    # -- internals ------------------------------------------------------------------------

    def _live(self, transaction: ServerTransaction) -> bool:
        return self._transactions.get(transaction._key) is transaction

    def _receive_ack(self, request: SipRequest, source: SourceLike, now: float) -> list[Event]:
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
            acked = transaction if transaction._ack_key is not None else None
        else:
            # RFC 6026 §8.5: an ACK matching no transaction goes to the core.  The 2xx it
            # acknowledges is found by Call-ID, To tag and CSeq number (§13.3.1.4).
            to_tag = request.to.tag
            if to_tag is not None:
                acked = self._awaiting_ack.get((request.call_id, to_tag, request.cseq.number))
        if acked is not None and acked._ack_key is not None:
            self._awaiting_ack.pop(acked._ack_key, None)
            acked._ack_key = None
            acked._deadlines.pop(Timer.RETRANSMIT_2XX, None)
        return [AckReceived(request, source, acked)]

    @staticmethod
    def _to_tag_matches(transaction: ServerTransaction, ack: SipRequest) -> bool:
        """RFC 2543 fallback: the ACK's To tag must be the one our response carried."""
        if isinstance(transaction._key, _BranchKey):
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
            transaction._ack_key = ack_key
            self._awaiting_ack[ack_key] = transaction
            self._arm(transaction, Timer.RETRANSMIT_2XX, now)
        return events

    def _retransmit_2xx(self, transaction: ServerTransaction, now: float) -> list[Event]:
        if transaction._ack_key is None or transaction.last_response is None:
            return []
        transaction._rearm_backoff(Timer.RETRANSMIT_2XX, now)
        self._push(transaction, Timer.RETRANSMIT_2XX)
        return [SendResponse(transaction.last_response, transaction.source, transaction)]

    def _arm(self, transaction: ServerTransaction, timer: Timer, now: float) -> None:
        duration = _duration_s(self.timers, timer, reliable=transaction.reliable)
        if duration is None:
            return
        transaction._deadlines[timer] = now + duration
        transaction._interval_s[timer] = duration
        self._push(transaction, timer)

    def _push(self, transaction: ServerTransaction, timer: Timer) -> None:
        deadline = transaction._deadlines[timer]
        heapq.heappush(self._heap, (deadline, next(self._sequence), transaction, timer))

    def _run(
        self,
        transaction: ServerTransaction,
        event: Input,
        now: float,
        response: SipResponse | None = None,
    ) -> list[Event]:
        """Feed one input to ``transaction`` and turn its actions into events."""
        before = dict(transaction._deadlines)
        actions = transaction._apply(event, now)
        if event is Input.TIMER_G and transaction.state is State.COMPLETED:
            transaction._rearm_backoff(Timer.G, now)  # §17.2.1: min(2*G, T2)
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
            if transaction._ack_key is not None:
                # RFC 3261 §13.3.1.4: 64*T1 (= Timer L) passed without an ACK for the 2xx.
                self._awaiting_ack.pop(transaction._ack_key, None)
                transaction._ack_key = None
                if event is Input.TIMER_L:
                    events.append(AckTimedOut(transaction))
            del self._transactions[transaction._key]
        else:
            for timer, deadline in transaction._deadlines.items():
                if before.get(timer) != deadline:
                    self._push(transaction, timer)
        return events
