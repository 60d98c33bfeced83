"""SIP client transactions (RFC 3261 §17.1, amended by RFC 6026 §7.2), sans-IO.

The machines are data, shaped like :mod:`srs.sip.server_transaction`: ``INVITE_TRANSITIONS``
(RFC 3261 Figure 5 as RFC 6026 §7.2 redraws it) and ``NON_INVITE_TRANSITIONS`` (Figure 6)
map a state and an :class:`Input` to the next state and an :class:`Action`;
``STATE_TIMERS`` lists the timers that run in each state and :func:`duration_s` how long
each runs on a reliable or unreliable transport.

:class:`ClientTransactions` holds every client transaction of one user, matched by top Via
branch and CSeq method (RFC 3261 §17.1.3), and the one timer heap.  It never reads a clock:
time comes in as ``now`` and every call returns outputs::

    table = ClientTransactions()                    # ClientTransactions[YourDestination]
    outputs = table.send(request, destination, now) # start a transaction
    outputs = table.receive_response(response, now) # every response from the transport
    deadline = table.next_timer()                   # arm one timer for this
    outputs = table.handle_timer(now)               # when it fires

Outputs (frozen dataclasses, handled in the order returned):

* :class:`SendRequest` -- put ``data`` on the wire towards ``destination``, the value the
  caller gave :meth:`ClientTransactions.send`: the request, a retransmission of it
  (Timers A and E, unreliable transports only), or the ACK of a non-2xx final response,
  which the INVITE transaction sends itself (RFC 3261 §17.1.1.3).
* :class:`ResponseReceived` -- a response for the TU: each 1xx, the final response, and
  every retransmitted 2xx to INVITE while Accepted (RFC 6026 §7.2).  The TU ACKs a 2xx
  itself (RFC 3261 §13.2.2.4).
* :class:`TimedOut` -- Timer B or F fired: no final response came.
* :class:`Unmatched` -- a response no transaction matches; RFC 6026 §8.9 hands it to the
  core (a 2xx retransmitted after Timer M still needs its ACK).

Over reliable transports nothing is retransmitted and Timers D and K are zero
(RFC 3261 §17.1.1.2, §17.1.2.2).  A transaction is dropped the moment it is Terminated.

One deliberate addition to Figure 5: Timer B keeps running in Proceeding and ends the
transaction there too.  RFC 3261 §17.1.1.2 stops nothing in Proceeding but a final answer
and leaves the wait to the TU (§13.3.1); srs's UAC gives up after 64*T1 anyway, and with
the timer the transaction goes with it instead of being held for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar, assert_never

from srs.errors import UsageError
from srs.sip.message import SipRequest, SipResponse, build_request
from srs.sip.timers import Kind, SipTimers, SourceLike, TimerHeap

__all__ = [
    "INVITE_TRANSITIONS",
    "MAX_CLIENT_TRANSACTIONS",
    "NON_INVITE_TRANSITIONS",
    "STATE_TIMERS",
    "TIMER_INPUTS",
    "Action",
    "ClientOutput",
    "ClientTransaction",
    "ClientTransactions",
    "Input",
    "ResponseReceived",
    "SendRequest",
    "State",
    "TimedOut",
    "Timer",
    "Unmatched",
    "ack_for_failure",
    "cancel_for",
    "duration_s",
    "transaction_key",
    "retransmit_interval_s",
    "transition",
]

# A memory bound, not an RFC value: beyond it a request is sent once, untracked.
MAX_CLIENT_TRANSACTIONS = 4096


class State(Enum):
    """States as named in RFC 3261 Figures 5 and 6 and RFC 6026 §7.2."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(Enum):
    """What can happen to a client transaction."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    TIMER_A = "Timer A fires"
    TIMER_B = "Timer B fires"
    TIMER_D = "Timer D fires"
    TIMER_E = "Timer E fires"
    TIMER_F = "Timer F fires"
    TIMER_K = "Timer K fires"
    TIMER_M = "Timer M fires"


class Action(Enum):
    """What the transaction does on a transition."""

    NONE = "absorb"
    PASS = "pass the response to the TU"  # noqa: S105 - RFC 3261 wording, not a secret
    ACK_AND_PASS = "send the ACK, pass the response to the TU"  # noqa: S105 - ditto
    RESEND_ACK = "send the ACK again"
    RETRANSMIT = "retransmit the request"
    TIMEOUT = "inform the TU of a timeout"


class Timer(Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    K = "K"
    M = "M"


TIMER_INPUTS: Mapping[Timer, Input] = {
    Timer.A: Input.TIMER_A,
    Timer.B: Input.TIMER_B,
    Timer.D: Input.TIMER_D,
    Timer.E: Input.TIMER_E,
    Timer.F: Input.TIMER_F,
    Timer.K: Input.TIMER_K,
    Timer.M: Input.TIMER_M,
}

Transitions = Mapping[State, Mapping[Input, tuple[State, Action]]]

_CALLING, _TRYING, _PROCEEDING = State.CALLING, State.TRYING, State.PROCEEDING
_COMPLETED, _ACCEPTED, _TERMINATED = State.COMPLETED, State.ACCEPTED, State.TERMINATED

# RFC 3261 §17.1.1.2 Figure 5 as RFC 6026 §7.2 redraws it: a 2xx leads to Accepted, where
# retransmitted 2xx still reach the TU until Timer M.  Inputs not listed are absorbed.
INVITE_TRANSITIONS: Transitions = {
    _CALLING: {
        Input.TIMER_A: (_CALLING, Action.RETRANSMIT),
        Input.TIMER_B: (_TERMINATED, Action.TIMEOUT),
        Input.PROVISIONAL: (_PROCEEDING, Action.PASS),
        Input.SUCCESS: (_ACCEPTED, Action.PASS),
        Input.FAILURE: (_COMPLETED, Action.ACK_AND_PASS),
    },
    _PROCEEDING: {
        Input.PROVISIONAL: (_PROCEEDING, Action.PASS),
        Input.SUCCESS: (_ACCEPTED, Action.PASS),
        Input.FAILURE: (_COMPLETED, Action.ACK_AND_PASS),
        Input.TIMER_B: (_TERMINATED, Action.TIMEOUT),  # srs's addition: see the docstring
    },
    _COMPLETED: {
        # §17.1.1.2: a retransmitted final response is ACKed again, not passed up.
        Input.FAILURE: (_COMPLETED, Action.RESEND_ACK),
        Input.TIMER_D: (_TERMINATED, Action.NONE),
    },
    _ACCEPTED: {
        Input.SUCCESS: (_ACCEPTED, Action.PASS),  # RFC 6026 §7.2
        Input.TIMER_M: (_TERMINATED, Action.NONE),
    },
    _TERMINATED: {},
}

# RFC 3261 §17.1.2.2 Figure 6.  Completed absorbs retransmitted responses until Timer K.
NON_INVITE_TRANSITIONS: Transitions = {
    _TRYING: {
        Input.TIMER_E: (_TRYING, Action.RETRANSMIT),
        Input.TIMER_F: (_TERMINATED, Action.TIMEOUT),
        Input.PROVISIONAL: (_PROCEEDING, Action.PASS),
        Input.SUCCESS: (_COMPLETED, Action.PASS),
        Input.FAILURE: (_COMPLETED, Action.PASS),
    },
    _PROCEEDING: {
        Input.TIMER_E: (_PROCEEDING, Action.RETRANSMIT),
        Input.TIMER_F: (_TERMINATED, Action.TIMEOUT),
        Input.PROVISIONAL: (_PROCEEDING, Action.PASS),
        Input.SUCCESS: (_COMPLETED, Action.PASS),
        Input.FAILURE: (_COMPLETED, Action.PASS),
    },
    _COMPLETED: {
        Input.TIMER_K: (_TERMINATED, Action.NONE),
    },
    _TERMINATED: {},
}

_TRANSITIONS: dict[Kind, Transitions] = {
    Kind.INVITE: INVITE_TRANSITIONS,
    Kind.NON_INVITE: NON_INVITE_TRANSITIONS,
}

# The timers that run in each state.  Entering a state starts those not yet running and
# cancels the rest, so Timers B, E and F run on from one state into the next.
STATE_TIMERS: Mapping[tuple[Kind, State], tuple[Timer, ...]] = {
    (Kind.INVITE, _CALLING): (Timer.A, Timer.B),  # RFC 3261 §17.1.1.2
    (Kind.INVITE, _PROCEEDING): (Timer.B,),  # srs's addition: see the docstring
    (Kind.INVITE, _COMPLETED): (Timer.D,),  # RFC 3261 §17.1.1.2
    (Kind.INVITE, _ACCEPTED): (Timer.M,),  # RFC 6026 §7.2
    (Kind.NON_INVITE, _TRYING): (Timer.E, Timer.F),  # RFC 3261 §17.1.2.2
    (Kind.NON_INVITE, _PROCEEDING): (Timer.E, Timer.F),  # RFC 3261 §17.1.2.2
    (Kind.NON_INVITE, _COMPLETED): (Timer.K,),  # RFC 3261 §17.1.2.2
}

# Responses that can still change a transaction: the ones the TU waits for.
_UNANSWERED = frozenset({_CALLING, _TRYING, _PROCEEDING})


def transition(kind: Kind, state: State, event: Input) -> tuple[State, Action]:
    """The table cell for ``event`` in ``state``; unlisted cells absorb the input."""
    return _TRANSITIONS[kind][state].get(event, (state, Action.NONE))


def duration_s(timers: SipTimers, timer: Timer, *, reliable: bool) -> float | None:
    """How long ``timer`` first runs; None when it is not started at all."""
    if timer in (Timer.A, Timer.E):
        return None if reliable else timers.t1_s  # §17.1.1.2, §17.1.2.2: unreliable only
    if timer is Timer.D:
        return 0.0 if reliable else timers.timer_d_s  # §17.1.1.2: at least 32 s
    if timer is Timer.K:
        return 0.0 if reliable else timers.t4_s  # §17.1.2.2
    return 64 * timers.t1_s  # B (§17.1.1.2), F (§17.1.2.2), M (RFC 6026 §7.2)


def retransmit_interval_s(
    timers: SipTimers, timer: Timer, state: State, previous_s: float
) -> float:
    """The next interval of a retransmission timer that just fired in ``state``."""
    if timer is Timer.A:
        return 2 * previous_s  # §17.1.1.2: doubles, without the T2 cap of Timer E
    if state is _PROCEEDING:
        return timers.t2_s  # §17.1.2.2: Timer E in Proceeding is reset to T2
    return min(2 * previous_s, timers.t2_s)  # §17.1.2.2: Timer E in Trying


def transaction_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """RFC 3261 §17.1.3: (top Via branch, CSeq method).  A response matches the client
    transaction whose request has the same key.  Raises ``SipParseError`` for an unreadable
    Via or CSeq (the transport then drops the response, §18.1.2)."""
    return message.top_via.branch or "", message.cseq.method


def ack_for_failure(invite: SipRequest, response: SipResponse) -> SipRequest:
    """RFC 3261 §17.1.1.3: the ACK of a non-2xx final response, built by the transaction:
    the INVITE's Request-URI, top Via (same branch), From, Call-ID and Route; To from the
    response; the INVITE's CSeq number with method ACK."""
    return _same_hop("ACK", invite, response.headers.get("To") or "")


def cancel_for(invite: SipRequest) -> SipRequest:
    """RFC 3261 §9.1: the CANCEL of ``invite``: its Request-URI, top Via (same branch),
    From, To, Call-ID and Route, its CSeq number with method CANCEL.  It is a client
    transaction of its own, matched apart from the INVITE by its CSeq method."""
    return _same_hop("CANCEL", invite, invite.headers.get("To") or "")


def _same_hop(method: str, invite: SipRequest, to: str) -> SipRequest:
    headers = [
        ("Via", invite.headers.get_all("Via")[0]),
        ("From", invite.headers.get("From") or ""),
        ("To", to),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.number} {method}"),
    ]
    headers.extend(("Route", value) for value in invite.headers.get_all("Route"))
    return build_request(method, invite.uri, headers=headers)


D = TypeVar("D", bound=SourceLike)


# Generic frozen dataclasses without slots: CPython 3.11 cannot combine slots with a
# subscripted constructor call (``SendRequest[X](...)``).
@dataclass(frozen=True)
class SendRequest(Generic[D]):
    """Send ``data`` (the bytes of ``request``) towards ``destination``."""

    request: SipRequest
    data: bytes
    destination: D


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to ``request`` for the TU (RFC 3261 §17.1.1.2, §17.1.2.2)."""

    request: SipRequest
    response: SipResponse


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F fired: ``request`` got no final response (RFC 3261 §17.1.1.2,
    §17.1.2.2)."""

    request: SipRequest

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def call_id(self) -> str:
        return self.request.call_id


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A response that matches no transaction (RFC 3261 §17.1.3); RFC 6026 §8.9 passes it
    to the core instead of dropping it."""

    response: SipResponse


ClientOutput = SendRequest[D] | ResponseReceived | TimedOut | Unmatched


class ClientTransaction(Generic[D]):
    """One client transaction.  Its users read it; only the table calls its methods.

    ``request`` is the request that created it, ``data`` its bytes (sent again unchanged)
    and ``destination`` where they go.  ``ack`` is the ACK of a non-2xx final response
    once there is one (RFC 3261 §17.1.1.3).  ``deadlines`` maps each running
    :class:`Timer` to the time it fires.
    """

    __slots__ = (
        "_interval_s",
        "_timers",
        "ack",
        "created_at_s",
        "data",
        "deadlines",
        "destination",
        "kind",
        "reliable",
        "request",
        "state",
    )

    def __init__(self, request: SipRequest, destination: D, timers: SipTimers, now: float):
        self.kind = Kind.of(request.method)
        self.request = request
        self.data = bytes(request)
        self.destination = destination
        self.reliable = destination.reliable
        self.ack: SipRequest | None = None
        self.created_at_s = now
        self.deadlines: dict[Timer, float] = {}
        self._timers = timers
        self._interval_s: dict[Timer, float] = {}
        # RFC 3261 §17.1.1.2 / §17.1.2.2: INVITE starts in Calling, the rest in Trying.
        self.state = _CALLING if self.kind is Kind.INVITE else _TRYING
        self._enter(self.state, now)

    @property
    def key(self) -> tuple[str, str]:
        return transaction_key(self.request)

    @property
    def method(self) -> str:
        return self.request.method

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.state.value}>"

    def apply(self, event: Input, now: float) -> list[Action]:
        """Run one transition; a zero-length timer started on entry fires at once."""
        new_state, action = transition(self.kind, self.state, event)
        actions = [action]
        if action is Action.RETRANSMIT:
            timer = Timer.A if event is Input.TIMER_A else Timer.E
            interval = retransmit_interval_s(
                self._timers, timer, self.state, self._interval_s[timer]
            )
            self._interval_s[timer] = interval
            self.deadlines[timer] = now + interval
        if new_state is not self.state:
            actions.extend(self._enter(new_state, now))
        return actions

    def fire(self, timer: Timer, now: float) -> list[Action]:
        """``timer`` is due: it stops running, then its input is applied."""
        del self.deadlines[timer]
        return self.apply(TIMER_INPUTS[timer], now)

    def _enter(self, state: State, now: float) -> list[Action]:
        self.state = state
        running = STATE_TIMERS.get((self.kind, state), ())
        for timer in [t for t in self.deadlines if t not in running]:
            del self.deadlines[timer]
        immediate: list[Timer] = []
        for timer in running:
            if timer in self.deadlines:
                continue  # runs on from the previous state
            duration = duration_s(self._timers, timer, reliable=self.reliable)
            if duration == 0:
                immediate.append(timer)
            elif duration is not None:
                self.deadlines[timer] = now + duration
                self._interval_s[timer] = duration
        actions: list[Action] = []
        for timer in immediate:
            if self.state is state:
                actions.extend(self.apply(TIMER_INPUTS[timer], now))
        return actions


class ClientTransactions(Generic[D]):
    """Every client transaction of one user, matched per RFC 3261 §17.1.3.

    ``max_transactions`` bounds memory: beyond it :meth:`send` still sends the request
    once but tracks nothing (no retransmission, no timeout; its responses are
    :class:`Unmatched`).
    """

    def __init__(
        self, *, timers: SipTimers | None = None, max_transactions: int = MAX_CLIENT_TRANSACTIONS
    ) -> None:
        if max_transactions < 1:
            raise UsageError("max_transactions must be at least 1")
        self.timers = timers if timers is not None else SipTimers()
        self.max_transactions = max_transactions
        self._transactions: dict[tuple[str, str], ClientTransaction[D]] = {}
        self._heap: TimerHeap[tuple[ClientTransaction[D], Timer]] = TimerHeap(self._current)

    def __len__(self) -> int:
        """How many transactions are live (not Terminated)."""
        return len(self._transactions)

    def get(self, key: tuple[str, str]) -> ClientTransaction[D] | None:
        """The live transaction with this (branch, method) key, if any."""
        return self._transactions.get(key)

    def unanswered(self) -> int:
        """How many live transactions still wait for a final response."""
        return sum(t.state in _UNANSWERED for t in self._transactions.values())

    # -- inputs ---------------------------------------------------------------------------

    def send(self, request: SipRequest, destination: D, now: float) -> list[ClientOutput[D]]:
        """Start a client transaction for ``request`` and send it (RFC 3261 §17.1.1.2,
        §17.1.2.2).  ``destination`` comes back in every :class:`SendRequest`."""
        if request.method == "ACK":
            raise UsageError("an ACK is not a client transaction (RFC 3261 §17.1.1.3)")
        key = transaction_key(request)
        if key in self._transactions:
            raise UsageError(f"a {key[1]} client transaction with branch {key[0]} is live")
        outputs: list[ClientOutput[D]] = []
        if len(self._transactions) < self.max_transactions:
            transaction = ClientTransaction(request, destination, self.timers, now)
            self._transactions[key] = transaction
            self._push_changed(transaction, {})
            outputs.append(SendRequest(request, transaction.data, destination))
        else:
            outputs.append(SendRequest(request, bytes(request), destination))
        return outputs

    def receive_response(self, response: SipResponse, now: float) -> list[ClientOutput[D]]:
        """Match a response from the network (RFC 3261 §17.1.3) and say what to do.
        Raises ``SipParseError`` when its top Via or CSeq cannot be read."""
        transaction = self._transactions.get(transaction_key(response))
        if transaction is None:
            return [Unmatched(response)]
        if response.status < 200:
            event = Input.PROVISIONAL
        elif response.status < 300:
            event = Input.SUCCESS
        else:
            event = Input.FAILURE
        return self._run(transaction, event, now, response)

    def next_timer(self) -> float | None:
        """The earliest time ``handle_timer`` has work to do, or None."""
        return self._heap.next_timer()

    def handle_timer(self, now: float) -> list[ClientOutput[D]]:
        """Fire every timer due at or before ``now``."""
        outputs: list[ClientOutput[D]] = []
        for (transaction, timer), _ in self._heap.pop_due(now):
            outputs.extend(self._run(transaction, timer, now))
        return outputs

    # -- internals ------------------------------------------------------------------------

    def _current(self, key: tuple[ClientTransaction[D], Timer], deadline: float) -> bool:
        transaction, timer = key
        live = self._transactions.get(transaction.key) is transaction
        return live and transaction.deadlines.get(timer) == deadline

    def _push_changed(
        self, transaction: ClientTransaction[D], before: Mapping[Timer, float]
    ) -> None:
        for timer, deadline in transaction.deadlines.items():
            if before.get(timer) != deadline:
                self._heap.push((transaction, timer), deadline)

    def _run(
        self,
        transaction: ClientTransaction[D],
        event: Input | Timer,
        now: float,
        response: SipResponse | None = None,
    ) -> list[ClientOutput[D]]:
        """Feed one input (a response or a due timer) to ``transaction`` and turn its
        actions into outputs."""
        before = dict(transaction.deadlines)
        if isinstance(event, Timer):
            actions = transaction.fire(event, now)
        else:
            actions = transaction.apply(event, now)
        outputs: list[ClientOutput[D]] = []
        for action in actions:
            if action is Action.NONE:
                pass
            elif action is Action.PASS or action is Action.ACK_AND_PASS:
                if response is None:  # pragma: no cover - the tables pass only responses
                    raise UsageError(f"{action} without a response")
                if action is Action.ACK_AND_PASS:
                    transaction.ack = ack_for_failure(transaction.request, response)
                    outputs.extend(self._send_ack(transaction))
                outputs.append(ResponseReceived(transaction.request, response))
            elif action is Action.RESEND_ACK:
                outputs.extend(self._send_ack(transaction))
            elif action is Action.RETRANSMIT:
                outputs.append(
                    SendRequest(transaction.request, transaction.data, transaction.destination)
                )
            elif action is Action.TIMEOUT:
                outputs.append(TimedOut(transaction.request))
            else:
                assert_never(action)
        if transaction.state is _TERMINATED:
            del self._transactions[transaction.key]
        else:
            self._push_changed(transaction, before)
        return outputs

    @staticmethod
    def _send_ack(transaction: ClientTransaction[D]) -> list[ClientOutput[D]]:
        ack = transaction.ack
        if ack is None:
            return []
        return [SendRequest(ack, bytes(ack), transaction.destination)]
