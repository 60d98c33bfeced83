"""Client transactions (RFC 3261 §17.1, RFC 6026 §7.2) driven with a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SipParseError, UsageError
from srs.sip.client_transaction import (
    MAX_CLIENT_TRANSACTIONS,
    STATE_TIMERS,
    Action,
    ClientOutput,
    ClientTransactions,
    Input,
    ResponseReceived,
    SendRequest,
    State,
    TimedOut,
    Timer,
    Unmatched,
    ack_for_failure,
    cancel_for,
    duration_s,
    transition,
)
from srs.sip.message import SipRequest, SipResponse, build_request, build_response
from srs.sip.parser import parse_message
from srs.sip.timers import T1, T2, T4, TIMER_D_MIN_S, Kind, SipTimers


@dataclass(frozen=True)
class Hop:
    """A destination as a caller might pass one: anything with ``reliable``."""

    name: str
    reliable: bool


UDP = Hop("udp", False)
TCP = Hop("tcp", True)
TAG = "srs9f3a"
TINY = SipTimers(t1_s=0.001, t2_s=0.008, t4_s=0.01, timer_d_s=0.064)

Table = ClientTransactions[Hop]
Outputs = list[ClientOutput[Hop]]


def request(method: str = "INVITE", *, branch: str = "z9hG4bK-1", cseq: int = 1) -> SipRequest:
    return build_request(method, "sip:srs@198.51.100.5", headers=[
        ("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch}"),
        ("From", "<sip:+15550100@twilio.example>;tag=from-1"),
        ("To", "<sip:srs@198.51.100.5>"),
        ("Call-ID", "call-1@0.0.0.0"),
        ("CSeq", f"{cseq} {method}"),
        ("Route", "<sip:198.51.100.7;lr>"),
    ])


def answer(req: SipRequest, status: int) -> SipResponse:
    return build_response(req, status, to_tag=None if status == 100 else TAG)


def summary(outputs: Outputs) -> list[str]:
    out = []
    for o in outputs:
        if isinstance(o, SendRequest):
            out.append(f"send {o.request.method}")
        elif isinstance(o, ResponseReceived):
            out.append(f"response {o.response.status}")
        elif isinstance(o, TimedOut):
            out.append("timeout")
        else:
            out.append(f"unmatched {o.response.status}")
    return out


def run_timers(table: Table, until: float) -> list[tuple[float, list[str]]]:
    """Fire every timer up to ``until``, checking nothing fires a moment early."""
    fired = []
    while (deadline := table.next_timer()) is not None and deadline <= until:
        assert table.handle_timer(deadline - 1e-9) == []
        fired.append((deadline, summary(table.handle_timer(deadline))))
    return fired


def started(method: str = "INVITE", hop: Hop = UDP, *, timers: SipTimers | None = None,
            now: float = 0.0) -> tuple[Table, SipRequest]:
    table: Table = ClientTransactions(timers=timers)
    req = request(method)
    outputs = table.send(req, hop, now)
    assert outputs == [SendRequest(req, bytes(req), hop)]
    return table, req


def state_of(table: Table, req: SipRequest) -> State:
    transaction = table.get((req.top_via.branch or "", req.method))
    return State.TERMINATED if transaction is None else transaction.state


# -- the timers and the tables -----------------------------------------------------------


# RFC 3261 §17.1.1.2, §17.1.2.2 and Table 4; RFC 6026 §7.2 (Timer M).  (unreliable, reliable)
EXPECTED_DURATIONS = {
    Timer.A: (T1, None),
    Timer.B: (64 * T1, 64 * T1),
    Timer.D: (32.0, 0.0),
    Timer.E: (T1, None),
    Timer.F: (64 * T1, 64 * T1),
    Timer.K: (T4, 0.0),
    Timer.M: (64 * T1, 64 * T1),
}


@pytest.mark.parametrize("timer", list(Timer))
def test_timer_durations_are_rfc3261_table_4(timer: Timer) -> None:
    unreliable, reliable = EXPECTED_DURATIONS[timer]
    assert duration_s(SipTimers(), timer, reliable=False) == unreliable
    assert duration_s(SipTimers(), timer, reliable=True) == reliable
    assert TIMER_D_MIN_S == 32.0


CA, TR, PR, CO, AC, X = (
    State.CALLING,
    State.TRYING,
    State.PROCEEDING,
    State.COMPLETED,
    State.ACCEPTED,
    State.TERMINATED,
)
I = Input  # noqa: E741 - short for the tables below

# Written from RFC 3261 Figures 5 and 6 and RFC 6026 §7.2, independently of the module; the
# one addition (Timer B in Proceeding) is srs's, see the module docstring.
EXPECTED_INVITE = {
    (CA, I.TIMER_A): (CA, Action.RETRANSMIT),
    (CA, I.TIMER_B): (X, Action.TIMEOUT),
    (CA, I.PROVISIONAL): (PR, Action.PASS),
    (CA, I.SUCCESS): (AC, Action.PASS),
    (CA, I.FAILURE): (CO, Action.ACK_AND_PASS),
    (PR, I.PROVISIONAL): (PR, Action.PASS),
    (PR, I.SUCCESS): (AC, Action.PASS),
    (PR, I.FAILURE): (CO, Action.ACK_AND_PASS),
    (PR, I.TIMER_B): (X, Action.TIMEOUT),
    (CO, I.FAILURE): (CO, Action.RESEND_ACK),
    (CO, I.TIMER_D): (X, Action.NONE),
    (AC, I.SUCCESS): (AC, Action.PASS),
    (AC, I.TIMER_M): (X, Action.NONE),
}
EXPECTED_NON_INVITE = {
    (TR, I.TIMER_E): (TR, Action.RETRANSMIT),
    (TR, I.TIMER_F): (X, Action.TIMEOUT),
    (TR, I.PROVISIONAL): (PR, Action.PASS),
    (TR, I.SUCCESS): (CO, Action.PASS),
    (TR, I.FAILURE): (CO, Action.PASS),
    (PR, I.TIMER_E): (PR, Action.RETRANSMIT),
    (PR, I.TIMER_F): (X, Action.TIMEOUT),
    (PR, I.PROVISIONAL): (PR, Action.PASS),
    (PR, I.SUCCESS): (CO, Action.PASS),
    (PR, I.FAILURE): (CO, Action.PASS),
    (CO, I.TIMER_K): (X, Action.NONE),
}


@pytest.mark.parametrize(
    ("kind", "states", "expected"),
    [
        (Kind.INVITE, (CA, PR, CO, AC, X), EXPECTED_INVITE),
        (Kind.NON_INVITE, (TR, PR, CO, X), EXPECTED_NON_INVITE),
    ],
)
def test_every_table_cell(
    kind: Kind, states: tuple[State, ...], expected: dict[tuple[State, Input], tuple[State, Action]]
) -> None:
    for state, event in itertools.product(states, Input):
        default = (state, Action.NONE)  # anything else is absorbed
        assert transition(kind, state, event) == expected.get((state, event), default), (
            state,
            event,
        )


def test_state_timers() -> None:
    assert STATE_TIMERS == {
        (Kind.INVITE, CA): (Timer.A, Timer.B),
        (Kind.INVITE, PR): (Timer.B,),
        (Kind.INVITE, CO): (Timer.D,),
        (Kind.INVITE, AC): (Timer.M,),
        (Kind.NON_INVITE, TR): (Timer.E, Timer.F),
        (Kind.NON_INVITE, PR): (Timer.E, Timer.F),
        (Kind.NON_INVITE, CO): (Timer.K,),
    }


# -- (state, event) -> (next state, outputs) over UDP and TCP ---------------------------

# Each row: the responses that bring a fresh transaction into a state at t=0.1, then the
# event (a response status at t=0.2, or a timer letter fired at its deadline after any
# timer due earlier), then the expected state and that event's outputs.
Row = tuple[str, str, tuple[int, ...], str, State, list[str]]
ROWS: list[Row] = [
    # INVITE, unreliable
    ("INVITE", "udp", (), "A", CA, ["send INVITE"]),
    ("INVITE", "udp", (), "100", PR, ["response 100"]),
    ("INVITE", "udp", (), "200", AC, ["response 200"]),
    ("INVITE", "udp", (), "486", CO, ["send ACK", "response 486"]),
    ("INVITE", "udp", (180,), "180", PR, ["response 180"]),
    ("INVITE", "udp", (180,), "200", AC, ["response 200"]),
    ("INVITE", "udp", (180,), "603", CO, ["send ACK", "response 603"]),
    ("INVITE", "udp", (180,), "B", X, ["timeout"]),
    ("INVITE", "udp", (486,), "486", CO, ["send ACK"]),
    ("INVITE", "udp", (486,), "200", CO, []),
    ("INVITE", "udp", (486,), "180", CO, []),
    ("INVITE", "udp", (486,), "D", X, []),
    ("INVITE", "udp", (200,), "200", AC, ["response 200"]),
    ("INVITE", "udp", (200,), "180", AC, []),
    ("INVITE", "udp", (200,), "486", AC, []),
    ("INVITE", "udp", (200,), "M", X, []),
    # INVITE, reliable: no Timer A, Timer D zero
    ("INVITE", "tcp", (), "B", X, ["timeout"]),
    ("INVITE", "tcp", (), "100", PR, ["response 100"]),
    ("INVITE", "tcp", (), "486", X, ["send ACK", "response 486"]),
    ("INVITE", "tcp", (180,), "500", X, ["send ACK", "response 500"]),
    ("INVITE", "tcp", (), "200", AC, ["response 200"]),
    ("INVITE", "tcp", (200,), "200", AC, ["response 200"]),
    ("INVITE", "tcp", (200,), "M", X, []),
    # non-INVITE, unreliable
    ("BYE", "udp", (), "E", TR, ["send BYE"]),
    ("BYE", "udp", (), "F", X, ["timeout"]),
    ("BYE", "udp", (), "100", PR, ["response 100"]),
    ("BYE", "udp", (), "200", CO, ["response 200"]),
    ("BYE", "udp", (), "481", CO, ["response 481"]),
    ("BYE", "udp", (100,), "E", PR, ["send BYE"]),
    ("BYE", "udp", (100,), "180", PR, ["response 180"]),
    ("BYE", "udp", (100,), "200", CO, ["response 200"]),
    ("BYE", "udp", (100,), "F", X, ["timeout"]),
    ("BYE", "udp", (200,), "200", CO, []),
    ("BYE", "udp", (200,), "500", CO, []),
    ("BYE", "udp", (200,), "K", X, []),
    # non-INVITE, reliable: no Timer E, Timer K zero
    ("BYE", "tcp", (), "F", X, ["timeout"]),
    ("BYE", "tcp", (), "100", PR, ["response 100"]),
    ("BYE", "tcp", (), "200", X, ["response 200"]),
    ("BYE", "tcp", (100,), "F", X, ["timeout"]),
    ("BYE", "tcp", (100,), "408", X, ["response 408"]),
]


@pytest.mark.parametrize(("method", "transport", "before", "event", "state", "outputs"), ROWS)
def test_state_event_outputs(
    method: str, transport: str, before: tuple[int, ...], event: str, state: State,
    outputs: list[str],
) -> None:
    table, req = started(method, TCP if transport == "tcp" else UDP)
    for status in before:
        table.receive_response(answer(req, status), 0.1)
    if event.isdigit():
        got = table.receive_response(answer(req, int(event)), 0.2)
    else:
        transaction = table.get((req.top_via.branch or "", method))
        assert transaction is not None
        deadline = transaction.deadlines[Timer(event)]
        run_timers(table, deadline - 1e-6)
        got = table.handle_timer(deadline)
    assert summary(got) == outputs
    assert state_of(table, req) is state
    assert len(table) == (0 if state is X else 1)


# -- exact schedules ---------------------------------------------------------------------


def test_invite_over_udp_timer_a_doubles_without_cap_until_timer_b() -> None:
    table, _ = started("INVITE", UDP)
    # RFC 3261 §17.1.1.2: T1, 2*T1, 4*T1 ... after the first send; Timer B at 64*T1.
    assert run_timers(table, 100.0) == [
        (t, ["send INVITE"]) for t in (0.5, 1.5, 3.5, 7.5, 15.5, 31.5)
    ] + [(32.0, ["timeout"])]
    assert len(table) == 0 and table.next_timer() is None


def test_non_invite_over_udp_timer_e_caps_at_t2_until_timer_f() -> None:
    table, _ = started("BYE", UDP)
    fired = run_timers(table, 100.0)
    resends = [t for t, what in fired if what == ["send BYE"]]
    # RFC 3261 §17.1.2.2: T1 doubling up to T2, then every T2; Timer F at 64*T1.
    assert resends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (32.0, ["timeout"])
    assert all(b - a <= T2 for a, b in itertools.pairwise(resends))


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    table, req = started("BYE", UDP)
    assert run_timers(table, 0.6) == [(0.5, ["send BYE"])]
    assert summary(table.receive_response(answer(req, 100), 0.6)) == ["response 100"]
    # The running Timer E (due at 1.5) fires as armed, then is reset to T2 each time.
    fired = run_timers(table, 100.0)
    assert [t for t, _ in fired] == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5, 32.0]
    assert fired[-1] == (32.0, ["timeout"])


@pytest.mark.parametrize("method", ["INVITE", "BYE"])
def test_reliable_transport_never_retransmits(method: str) -> None:
    table, _ = started(method, TCP)
    assert run_timers(table, 100.0) == [(32.0, ["timeout"])]


def test_tiny_timers_run_the_same_schedule_scaled() -> None:
    table, _ = started("BYE", UDP, timers=TINY)
    fired = run_timers(table, 1.0)
    assert [t for t, _ in fired][:5] == pytest.approx([0.001, 0.003, 0.007, 0.015, 0.023])
    assert fired[-1][0] == pytest.approx(0.064) and fired[-1][1] == ["timeout"]


# -- absorption: Timers D, K and M -------------------------------------------------------


def test_timer_m_passes_2xx_retransmissions_to_the_tu_then_ends() -> None:
    table, req = started("INVITE", UDP)
    ok = answer(req, 200)
    assert table.receive_response(ok, 1.0) == [ResponseReceived(req, ok)]
    assert table.next_timer() == 33.0  # Timer A stopped; Timer M = 64*T1 runs
    # RFC 6026 §7.2: in Accepted a retransmitted 2xx (or a forked one) reaches the TU,
    # which ACKs it (RFC 3261 §13.2.2.4); other responses are absorbed.
    assert table.receive_response(ok, 2.0) == [ResponseReceived(req, ok)]
    assert table.receive_response(answer(req, 486), 2.1) == []
    assert run_timers(table, 100.0) == [(33.0, [])]
    # After Timer M the 2xx matches nothing: the core gets it (RFC 6026 §8.9).
    assert table.receive_response(ok, 40.0) == [Unmatched(ok)]


def test_timer_d_absorbs_final_retransmissions_and_acks_each() -> None:
    table, req = started("INVITE", UDP)
    busy = answer(req, 486)
    outputs = table.receive_response(busy, 1.0)
    assert summary(outputs) == ["send ACK", "response 486"]
    first = outputs[0]
    assert isinstance(first, SendRequest) and first.destination is UDP
    assert table.receive_response(busy, 5.0) == [first]  # the same ACK, not passed up
    assert table.next_timer() == 1.0 + 32.0  # Timer D, at least 32 s over UDP
    assert run_timers(table, 100.0) == [(33.0, [])]
    assert table.receive_response(busy, 40.0) == [Unmatched(busy)]


def test_timer_k_absorbs_response_retransmissions() -> None:
    table, req = started("BYE", UDP)
    ok = answer(req, 200)
    assert table.receive_response(ok, 1.0) == [ResponseReceived(req, ok)]
    assert table.unanswered() == 0 and len(table) == 1
    assert table.receive_response(ok, 2.0) == []
    assert run_timers(table, 100.0) == [(1.0 + T4, [])]
    assert table.receive_response(ok, 7.0) == [Unmatched(ok)]


def test_ack_of_a_failure_is_built_by_the_transaction() -> None:
    req = request("INVITE")
    ack = ack_for_failure(req, answer(req, 486))
    # RFC 3261 §17.1.1.3: same Request-URI, top Via (branch), From, Call-ID, Route, CSeq
    # number; To with the response's tag.
    assert ack.method == "ACK" and ack.uri == req.uri
    assert ack.top_via.branch == req.top_via.branch
    assert ack.from_ == req.from_ and ack.call_id == req.call_id
    assert ack.to.tag == TAG and (ack.cseq.number, ack.cseq.method) == (1, "ACK")
    assert ack.headers.get_all("Route") == req.headers.get_all("Route")
    assert parse_message(bytes(ack)) == ack


def test_cancel_matches_the_invite_hop_by_hop() -> None:
    req = request("INVITE")
    cancel = cancel_for(req)
    # RFC 3261 §9.1: Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE.
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.headers.get_all("Via") == req.headers.get_all("Via")[:1]
    assert (cancel.from_, cancel.to, cancel.call_id) == (req.from_, req.to, req.call_id)
    assert (cancel.cseq.number, cancel.cseq.method) == (1, "CANCEL")
    # Its own transaction: same branch, other CSeq method (RFC 3261 §17.1.3).
    table, _ = started("INVITE", UDP)
    table.send(cancel, UDP, 0.1)
    assert len(table) == 2
    assert summary(table.receive_response(answer(cancel, 200), 0.2)) == ["response 200"]
    assert state_of(table, req) is CA


# -- matching, bounds and misuse ---------------------------------------------------------


def test_response_with_other_branch_or_method_is_unmatched() -> None:
    table, req = started("INVITE", UDP)
    other = answer(request("INVITE", branch="z9hG4bK-2"), 200)
    assert table.receive_response(other, 0.1) == [Unmatched(other)]
    bye = answer(request("BYE"), 200)  # same branch, CSeq method BYE
    assert table.receive_response(bye, 0.1) == [Unmatched(bye)]
    assert state_of(table, req) is CA


def test_unreadable_response_raises_parse_error() -> None:
    table, req = started("INVITE", UDP)
    ok = answer(req, 200)
    with pytest.raises(SipParseError):
        table.receive_response(ok.with_headers(ok.headers.remove("Via")), 0.1)


def test_cap_sends_once_untracked() -> None:
    table: Table = ClientTransactions(max_transactions=2)
    first, second, third = (request("BYE", branch=f"z9hG4bK-{n}") for n in range(3))
    table.send(first, UDP, 0.0)
    table.send(second, UDP, 0.0)
    assert summary(table.send(third, UDP, 0.0)) == ["send BYE"]
    assert len(table) == 2
    fired = run_timers(table, 0.5)
    assert fired == [(0.5, ["send BYE", "send BYE"])]  # only the tracked two retransmit
    ok = answer(third, 200)
    assert table.receive_response(ok, 0.6) == [Unmatched(ok)]
    assert MAX_CLIENT_TRANSACTIONS == 4096


def test_misuse_is_usage_error() -> None:
    table, req = started("INVITE", UDP)
    with pytest.raises(UsageError):
        table.send(req, UDP, 0.1)  # that branch and method are live
    with pytest.raises(UsageError):
        table.send(ack_for_failure(req, answer(req, 486)), UDP, 0.1)
    with pytest.raises(UsageError):
        ClientTransactions(max_transactions=0)


def test_unanswered_counts_transactions_waiting_for_a_final_response() -> None:
    table: Table = ClientTransactions()
    invite, bye = request("INVITE"), request("BYE", branch="z9hG4bK-2")
    table.send(invite, UDP, 0.0)
    table.send(bye, UDP, 0.0)
    table.receive_response(answer(invite, 180), 0.1)
    assert table.unanswered() == 2
    table.receive_response(answer(bye, 200), 0.2)
    table.receive_response(answer(invite, 200), 0.3)
    assert table.unanswered() == 0 and len(table) == 2


# -- properties --------------------------------------------------------------------------

_STEPS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.02),
        st.sampled_from(["100", "180", "200", "486", "503", "wait"]),
    ),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from(["INVITE", "BYE"]), reliable=st.booleans(), steps=_STEPS)
def test_any_interleaving_keeps_a_timer_and_ends_in_time(
    method: str, reliable: bool, steps: list[tuple[float, str]]
) -> None:
    hop = TCP if reliable else UDP
    table, req = started(method, hop, timers=TINY)
    ours = {bytes(req)}
    ended_at: float | None = None
    now = 0.0

    def check(outputs: Outputs) -> None:
        nonlocal ended_at
        for o in outputs:
            if isinstance(o, SendRequest):
                assert ended_at is None, "sent after Terminated"
                ours.add(o.data)
            elif isinstance(o, ResponseReceived | TimedOut):
                assert ended_at is None, "reported after Terminated"
        live = table.get((req.top_via.branch or "", method))
        if live is None:
            ended_at = now if ended_at is None else ended_at
        else:
            assert live.deadlines, f"{live!r} has no timer"
            deadline = table.next_timer()
            assert deadline is not None and deadline > now

    def advance(until: float) -> None:
        nonlocal now
        while (deadline := table.next_timer()) is not None and deadline <= until:
            now = deadline  # each timer fires at its own deadline: ended_at is exact
            check(table.handle_timer(now))
        now = until

    for delay, what in steps:
        advance(now + delay)
        if what != "wait":
            check(table.receive_response(answer(req, int(what)), now))
    advance(1000.0)
    assert ended_at is not None and len(table) == 0
    # RFC 3261 §17.1 with RFC 6026: the longest life is a final response just before
    # Timer B/F, then Timer D or M.
    assert ended_at <= 64 * TINY.t1_s + max(TINY.timer_d_s, 64 * TINY.t1_s) + 1e-9
    # Only the request and, for INVITE, one ACK ever went out.
    assert len(ours) <= 2
