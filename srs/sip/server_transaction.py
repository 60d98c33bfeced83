"""One SIP server transaction: the state machines of RFC 3261 §17.2 (amended by RFC 6026).

The machines are data: ``INVITE_TRANSITIONS`` (RFC 3261 Figure 7 as RFC 6026 §7.1 redraws it)
and ``NON_INVITE_TRANSITIONS`` (RFC 3261 Figure 8) map a state and an :class:`Input` to the
next state and an :class:`Action`; ``STATE_TIMERS`` lists the timers a state arms on entry
and :func:`duration_s` how long each runs on a reliable or unreliable transport.

:class:`ServerTransaction` applies the tables and keeps its own deadlines.  It is driven by
:class:`srs.sip.transaction.TransactionLayer`, which matches requests to transactions and
turns actions into events; the UAS core only reads transactions.  Time is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import Enum

from srs.sip.message import SipRequest, SipResponse
from srs.sip.routing import PeerLike
from srs.sip.timers import T1, T4, Kind, SipTimers

__all__ = [
    "INVITE_TRANSITIONS",
    "NON_INVITE_TRANSITIONS",
    "STATE_TIMERS",
    "TIMER_G",
    "TIMER_H",
    "TIMER_I",
    "TIMER_INPUTS",
    "TIMER_J",
    "TIMER_L",
    "Action",
    "Input",
    "ServerTransaction",
    "State",
    "Timer",
    "duration_s",
    "transition",
]

# RFC 3261 §17 Table 4 with the default base values of srs.sip.timers, in seconds.
TIMER_G = T1  # initial INVITE final-response retransmit interval (unreliable only)
TIMER_H = 64 * T1  # wait for ACK receipt
TIMER_I = T4  # wait for ACK retransmits (unreliable; zero on reliable)
TIMER_J = 64 * T1  # wait for non-INVITE request retransmits (unreliable; zero on reliable)
TIMER_L = 64 * T1  # RFC 6026 §8.7: wait for INVITE retransmits after a 2xx


class State(Enum):
    """States as named in RFC 3261 Figures 7 and 8 and RFC 6026 §7.1."""

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
    PASS_ACK = "pass the ACK to the TU"  # noqa: S105 - RFC 3261 wording, not a secret
    TIMEOUT = "inform the TU of a timeout"
    TRANSPORT_ERROR = "inform the TU of a transport error"


class Timer(Enum):
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC 3261 name of Timer I
    J = "J"
    L = "L"
    # RFC 3261 §13.3.1.4: the UAS core's 2xx retransmission (no letter in the RFC).
    RETRANSMIT_2XX = "2xx"


TIMER_INPUTS: Mapping[Timer, Input] = {
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

# RFC 3261 §17.2.1 Figure 7 as RFC 6026 §7.1 redraws it (a 2xx leads to Accepted, not
# Terminated).  A transport error no longer terminates: RFC 6026 §8.8 (updating RFC 3261
# §17.2.4) says inform the TU and MUST remain in the current state; the timers still end
# the transaction.  Inputs not listed leave the state alone: a TU response is discarded
# (see transition), anything else is absorbed.
INVITE_TRANSITIONS: Transitions = {
    _P: {
        # §17.2.1: a retransmitted INVITE gets the most recent provisional response.
        Input.REQUEST: (_P, Action.RESEND),
        Input.PROVISIONAL: (_P, Action.SEND),
        Input.SUCCESS: (_A, Action.SEND),
        Input.FAILURE: (_C, Action.SEND),
        Input.TRANSPORT_ERROR: (_P, Action.TRANSPORT_ERROR),
    },
    _C: {
        Input.REQUEST: (_C, Action.RESEND),
        Input.TIMER_G: (_C, Action.RESEND),
        Input.ACK: (_F, Action.NONE),
        Input.TIMER_H: (_X, Action.TIMEOUT),
        Input.TRANSPORT_ERROR: (_C, Action.TRANSPORT_ERROR),
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
        Input.TRANSPORT_ERROR: (_A, Action.TRANSPORT_ERROR),
    },
    _X: {},
}

_T = State.TRYING

# RFC 3261 §17.2.2 Figure 8, with transport errors per RFC 6026 §8.8 as above.
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
        Input.TRANSPORT_ERROR: (_P, Action.TRANSPORT_ERROR),
    },
    _C: {
        # §17.2.2: further final responses from the TU are discarded (default below).
        Input.REQUEST: (_C, Action.RESEND),
        Input.TIMER_J: (_X, Action.NONE),
        Input.TRANSPORT_ERROR: (_C, Action.TRANSPORT_ERROR),
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


def duration_s(timers: SipTimers, timer: Timer, *, reliable: bool) -> float | None:
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


class ServerTransaction:
    """One server transaction.  The core reads it; only the layer calls its methods.

    ``request`` is the request that created it and ``source`` where that came from;
    ``last_response`` is the response most recently sent, resent on retransmissions.
    ``deadlines`` maps each armed :class:`Timer` to the time it fires.  ``key`` (the
    RFC 3261 §17.2.3 match key) and ``ack_key`` (the Call-ID, To tag and CSeq number of a
    2xx still waiting for its ACK, RFC 3261 §13.3.1.4) belong to the layer.
    """

    __slots__ = (
        "_interval_s",
        "_timers",
        "ack_key",
        "created_at_s",
        "deadlines",
        "key",
        "kind",
        "last_response",
        "reliable",
        "request",
        "source",
        "source_host",
        "state",
    )

    def __init__(
        self,
        request: SipRequest,
        source: PeerLike,
        key: Hashable,
        timers: SipTimers,
        now: float,
    ) -> None:
        self.kind = Kind.of(request.method)
        self.request = request
        self.source = source
        self.reliable = source.reliable
        # RFC 3261 §17.2.1 / §17.2.2: INVITE starts in Proceeding, the rest in Trying.
        self.state = State.PROCEEDING if self.kind is Kind.INVITE else State.TRYING
        self.last_response: SipResponse | None = None
        self.created_at_s = now
        self.deadlines: dict[Timer, float] = {}
        self.key = key
        self.ack_key: tuple[str, str, int] | None = None
        # The host this transaction counts against in the layer's per-source share.
        self.source_host: str | None = None
        self._timers = timers
        self._interval_s: dict[Timer, float] = {}

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def awaiting_ack(self) -> bool:
        """True while a 2xx to this INVITE is being retransmitted for want of an ACK."""
        return self.ack_key is not None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.state.value}>"

    def apply(self, event: Input, now: float) -> list[Action]:
        """Run one transition; a zero-length timer armed on entry fires at once."""
        new_state, action = transition(self.kind, self.state, event)
        actions = [action]
        if new_state is not self.state:
            actions.extend(self._enter(new_state, now))
        return actions

    def arm(self, timer: Timer, now: float) -> None:
        """Start ``timer`` at its initial duration (not at all if that is None)."""
        duration = duration_s(self._timers, timer, reliable=self.reliable)
        if duration is not None:
            self.deadlines[timer] = now + duration
            self._interval_s[timer] = duration

    def disarm(self, timer: Timer) -> None:
        self.deadlines.pop(timer, None)

    def back_off(self, timer: Timer, now: float) -> None:
        """Re-arm ``timer`` at twice its last interval, at most T2 (RFC 3261 §17.2.1 for
        Timer G, §13.3.1.4 for the 2xx)."""
        interval = min(2 * self._interval_s[timer], self._timers.t2_s)
        self._interval_s[timer] = interval
        self.deadlines[timer] = now + interval

    def _enter(self, state: State, now: float) -> list[Action]:
        # Leaving a state cancels its timers; the new state arms its own.
        self.state = state
        self.deadlines.clear()
        self._interval_s.clear()
        immediate: list[Timer] = []
        for timer in STATE_TIMERS.get((self.kind, state), ()):
            if duration_s(self._timers, timer, reliable=self.reliable) == 0:
                immediate.append(timer)
            else:
                self.arm(timer, now)
        actions: list[Action] = []
        for timer in immediate:
            if self.state is state:
                actions.extend(self.apply(TIMER_INPUTS[timer], now))
        return actions
