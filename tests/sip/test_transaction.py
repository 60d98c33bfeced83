"""Server transactions (RFC 3261 §17.2, RFC 6026) driven with a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SipParseError, UsageError
from srs.sip.message import SipRequest, SipResponse, build_response
from srs.sip.parser import parse_message
from srs.sip.server_transaction import (
    TIMER_G,
    TIMER_H,
    TIMER_I,
    TIMER_J,
    TIMER_L,
    Action,
    Input,
    ServerTransaction,
    State,
    transition,
)
from srs.sip.timers import T1, T2, T4, Kind, SipTimers
from srs.sip.transaction import (
    MAGIC_COOKIE,
    AckReceived,
    AckTimedOut,
    CancelReceived,
    Event,
    Overloaded,
    RequestReceived,
    SendResponse,
    Source,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    new_branch,
)

UDP = Source("udp", "192.0.2.10", 5060)
TCP = Source("tcp", "192.0.2.10", 40112, connection_id=7)
TAG = "srs9f3a"


def parse(text: str) -> SipRequest:
    """A request through the wire parser, from test text with ``\n`` line ends."""
    message = parse_message(text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n")
    assert isinstance(message, SipRequest)
    return message


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    sent_by: str = "192.0.2.10:5060",
    to_tag: str | None = None,
    call_id: str = "call-1@0.0.0.0",
    uri: str = "sip:srs@198.51.100.5",
) -> SipRequest:
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch else "")
    to = "<sip:srs@198.51.100.5>" + (f";tag={to_tag}" if to_tag else "")
    return parse(
        f"""
{method} {uri} SIP/2.0
Via: {via}
Max-Forwards: 70
From: <sip:+15550100@twilio.example>;tag=from-1
To: {to}
Call-ID: {call_id}
CSeq: {cseq} {cseq_method or method}
Contact: <sip:172.16.0.9:5060>
"""
    )


def summary(events: list[Event]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, SendResponse):
            out.append(f"send {e.response.status}")
        elif isinstance(e, RequestReceived):
            out.append(f"request {e.request.method}")
        elif isinstance(e, CancelReceived):
            out.append("cancel" + (" matched" if e.invite is not None else " unmatched"))
        elif isinstance(e, AckReceived):
            out.append("ack 2xx" if e.transaction is not None else "ack")
        elif isinstance(e, AckTimedOut):
            out.append("ack timeout")
        elif isinstance(e, TransactionTimedOut):
            out.append("timeout")
        elif isinstance(e, TransportFailed):
            out.append("transport failed")
        elif isinstance(e, Overloaded):
            out.append(f"overloaded {e.retry_after_s}")
    return out


def new_tx(events: list[Event]) -> ServerTransaction:
    for e in events:
        if isinstance(e, RequestReceived | CancelReceived):
            return e.transaction
    raise AssertionError("no new transaction")


def answer(tx: ServerTransaction, status: int) -> SipResponse:
    return build_response(tx.request, status, to_tag=None if status == 100 else TAG)


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[str]]]:
    """Fire every timer up to ``until``, checking nothing fires a moment early."""
    fired = []
    while (deadline := layer.next_timer()) is not None and deadline <= until:
        assert layer.handle_timer(deadline - 1e-6) == []
        fired.append((deadline, summary(layer.handle_timer(deadline))))
    return fired


# -- constants and the tables ------------------------------------------------------------


def test_timer_values_are_rfc3261_table_4() -> None:
    assert (T1, T2, T4) == (0.5, 4.0, 5.0)
    assert (TIMER_G, TIMER_H, TIMER_I, TIMER_J, TIMER_L) == (0.5, 32.0, 5.0, 32.0, 32.0)


def test_sip_timers_reject_inconsistent_values() -> None:
    with pytest.raises(UsageError):
        SipTimers(t1_s=5.0, t2_s=4.0)
    with pytest.raises(UsageError):
        SipTimers(t4_s=0)
    with pytest.raises(UsageError):
        SipTimers(timer_d_s=0)


def test_new_branch_has_cookie_and_64_random_bits() -> None:
    branches = {new_branch() for _ in range(50)}
    assert len(branches) == 50
    for b in branches:
        assert b.startswith(MAGIC_COOKIE)
        assert len(b) == len(MAGIC_COOKIE) + 16
        int(b[len(MAGIC_COOKIE) :], 16)


P, C, F, A, X, T = (
    State.PROCEEDING,
    State.COMPLETED,
    State.CONFIRMED,
    State.ACCEPTED,
    State.TERMINATED,
    State.TRYING,
)
In = Input

# Written from RFC 3261 Figures 7/8 and RFC 6026 §7.1 and §8.8, independently of the module.
EXPECTED_INVITE = {
    (P, In.REQUEST): (P, Action.RESEND),
    (P, In.PROVISIONAL): (P, Action.SEND),
    (P, In.SUCCESS): (A, Action.SEND),
    (P, In.FAILURE): (C, Action.SEND),
    (P, In.TRANSPORT_ERROR): (P, Action.TRANSPORT_ERROR),
    (C, In.REQUEST): (C, Action.RESEND),
    (C, In.TIMER_G): (C, Action.RESEND),
    (C, In.ACK): (F, Action.NONE),
    (C, In.TIMER_H): (X, Action.TIMEOUT),
    (C, In.TRANSPORT_ERROR): (C, Action.TRANSPORT_ERROR),
    (F, In.ACK): (F, Action.NONE),
    (F, In.REQUEST): (F, Action.NONE),
    (F, In.TIMER_I): (X, Action.NONE),
    (A, In.REQUEST): (A, Action.NONE),
    (A, In.ACK): (A, Action.PASS_ACK),
    (A, In.SUCCESS): (A, Action.SEND),
    (A, In.TIMER_L): (X, Action.NONE),
    (A, In.TRANSPORT_ERROR): (A, Action.TRANSPORT_ERROR),
}
EXPECTED_NON_INVITE = {
    (T, In.REQUEST): (T, Action.NONE),
    (T, In.PROVISIONAL): (P, Action.SEND),
    (T, In.SUCCESS): (C, Action.SEND),
    (T, In.FAILURE): (C, Action.SEND),
    (P, In.REQUEST): (P, Action.RESEND),
    (P, In.PROVISIONAL): (P, Action.SEND),
    (P, In.SUCCESS): (C, Action.SEND),
    (P, In.FAILURE): (C, Action.SEND),
    (P, In.TRANSPORT_ERROR): (P, Action.TRANSPORT_ERROR),
    (C, In.REQUEST): (C, Action.RESEND),
    (C, In.TIMER_J): (X, Action.NONE),
    (C, In.TRANSPORT_ERROR): (C, Action.TRANSPORT_ERROR),
}
TU_INPUTS = {In.PROVISIONAL, In.SUCCESS, In.FAILURE}


@pytest.mark.parametrize(
    ("kind", "states", "expected"),
    [
        (Kind.INVITE, (P, C, F, A, X), EXPECTED_INVITE),
        (Kind.NON_INVITE, (T, P, C, X), EXPECTED_NON_INVITE),
    ],
)
def test_every_table_cell(
    kind: Kind, states: tuple[State, ...], expected: dict[tuple[State, Input], tuple[State, Action]]
) -> None:
    for state, event in itertools.product(states, Input):
        default = (state, Action.DISCARD if event in TU_INPUTS else Action.NONE)
        assert transition(kind, state, event) == expected.get((state, event), default), (
            state,
            event,
        )


# -- INVITE server transaction -----------------------------------------------------------


def test_invite_sends_100_and_resends_latest_provisional() -> None:
    layer = TransactionLayer()
    events = layer.receive_request(request(), UDP, 0.0)
    assert summary(events) == ["send 100", "request INVITE"]
    tx = new_tx(events)
    trying = events[0]
    assert isinstance(trying, SendResponse) and trying.destination is UDP
    assert trying.response.to.tag is None  # RFC 3261 §17.2.1: no To tag on 100
    assert tx.state is State.PROCEEDING and tx.kind is Kind.INVITE
    assert summary(layer.receive_request(request(), UDP, 0.1)) == ["send 100"]
    assert summary(layer.send_response(tx, answer(tx, 180), 0.2)) == ["send 180"]
    again = layer.receive_request(request(), UDP, 0.3)
    assert summary(again) == ["send 180"]
    assert isinstance(again[0], SendResponse) and again[0].response.status == 180
    assert layer.next_timer() is None  # Proceeding runs no timer
    assert len(layer) == 1


def test_invite_without_automatic_100_absorbs_retransmission() -> None:
    layer = TransactionLayer(send_100_trying=False)
    assert summary(layer.receive_request(request(), UDP, 0.0)) == ["request INVITE"]
    assert layer.receive_request(request(), UDP, 0.1) == []


def test_invite_failure_over_udp_timer_g_backoff_then_timer_h() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    assert summary(layer.send_response(tx, answer(tx, 486), 1.0)) == ["send 486"]
    assert tx.state is State.COMPLETED
    # RFC 3261 §17.2.1: G = T1, doubling to T2; H = 64*T1 after entering Completed.
    fired = run_timers(layer, 100.0)
    retransmits = [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert fired == [(t, ["send 486"]) for t in retransmits] + [(33.0, ["timeout"])]
    assert tx.state is State.TERMINATED
    assert len(layer) == 0 and layer.next_timer() is None


def test_invite_failure_retransmitted_invite_gets_final_again() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 403), 0.1)
    assert summary(layer.receive_request(request(), UDP, 0.2)) == ["send 403"]


def test_invite_failure_acked_over_udp_waits_timer_i() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 486), 1.0)
    ack = request("ACK", to_tag=TAG, cseq_method="ACK")
    assert layer.receive_request(ack, UDP, 2.0) == []
    assert tx.state is State.CONFIRMED
    assert layer.receive_request(ack, UDP, 3.0) == []  # absorbed in Confirmed
    assert layer.receive_request(request(), UDP, 3.5) == []  # late INVITE too
    assert layer.next_timer() == 7.0  # Timer I = T4 after the first ACK
    assert run_timers(layer, 100.0) == [(7.0, [])]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_invite_failure_over_tcp_has_no_timer_g_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), TCP, 0.0))
    assert tx.reliable
    layer.send_response(tx, answer(tx, 486), 1.0)
    assert layer.next_timer() == 33.0  # only H
    ack = request("ACK", to_tag=TAG, cseq_method="ACK")
    assert layer.receive_request(ack, TCP, 2.0) == []
    assert tx.state is State.TERMINATED  # Timer I is zero on reliable transports
    assert len(layer) == 0 and layer.next_timer() is None


def test_invite_failure_over_tcp_timer_h() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), TCP, 0.0))
    layer.send_response(tx, answer(tx, 500), 1.0)
    assert run_timers(layer, 100.0) == [(33.0, ["timeout"])]


@pytest.mark.parametrize("source", [UDP, TCP])
def test_2xx_retransmitted_until_64_t1_then_ack_timeout(source: Source) -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), source, 0.0))
    assert summary(layer.send_response(tx, answer(tx, 200), 1.0)) == ["send 200"]
    assert tx.state is State.ACCEPTED and tx.awaiting_ack
    assert layer.receive_request(request(), source, 1.2) == []  # RFC 6026: absorbed
    # RFC 3261 §13.3.1.4 (every transport): T1, 2*T1, ... capped at T2; give up at 64*T1.
    fired = run_timers(layer, 100.0)
    retransmits = [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert fired == [(t, ["send 200"]) for t in retransmits] + [(33.0, ["ack timeout"])]
    assert len(layer) == 0 and not tx.awaiting_ack


def test_2xx_ack_with_new_branch_stops_retransmission() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 200), 1.0)
    assert run_timers(layer, 2.0) == [(1.5, ["send 200"])]
    ack = request("ACK", branch="z9hG4bK-ack-2", to_tag=TAG, cseq_method="ACK")
    events = layer.receive_request(ack, UDP, 2.2)
    assert summary(events) == ["ack 2xx"]
    assert isinstance(events[0], AckReceived) and events[0].transaction is tx
    assert not tx.awaiting_ack
    # Retransmission stopped; Timer L still absorbs INVITE retransmissions until 33.0.
    assert layer.next_timer() == 33.0
    assert layer.receive_request(request(), UDP, 5.0) == []
    assert run_timers(layer, 100.0) == [(33.0, [])]
    assert len(layer) == 0
    # A retransmitted ACK still reaches the core, matched to nothing.
    assert summary(layer.receive_request(ack, UDP, 40.0)) == ["ack"]


def test_2xx_ack_reusing_invite_branch_is_passed_to_core() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 200), 1.0)
    ack = request("ACK", to_tag=TAG, cseq_method="ACK")  # same branch as the INVITE
    events = layer.receive_request(ack, UDP, 1.1)
    assert summary(events) == ["ack 2xx"]
    assert isinstance(events[0], AckReceived) and events[0].transaction is tx
    assert tx.state is State.ACCEPTED and layer.next_timer() == 33.0


def test_ack_with_wrong_cseq_does_not_stop_2xx() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 200), 1.0)
    ack = request("ACK", branch="z9hG4bK-a", to_tag=TAG, cseq=2, cseq_method="ACK")
    assert summary(layer.receive_request(ack, UDP, 1.1)) == ["ack"]
    assert tx.awaiting_ack


def test_second_2xx_from_core_is_sent_in_accepted_and_late_failure_discarded() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 200), 1.0)
    assert summary(layer.send_response(tx, answer(tx, 200), 1.1)) == ["send 200"]
    assert layer.send_response(tx, answer(tx, 487), 1.2) == []  # RFC 6026: discarded
    assert layer.send_response(tx, answer(tx, 180), 1.3) == []
    assert layer.next_timer() == 1.5  # one retransmission schedule, not two


def test_2xx_to_invite_without_to_tag_is_misuse() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    with pytest.raises(UsageError):
        layer.send_response(tx, build_response(tx.request, 200), 1.0)


def test_transport_error_informs_core_and_keeps_state() -> None:
    # RFC 6026 §8.8: inform the TU, MUST remain in the current state; timers still run.
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(), TCP, 0.0))
    assert summary(layer.transport_error(tx, 0.1)) == ["transport failed"]
    assert tx.state is State.PROCEEDING and len(layer) == 1
    layer.send_response(tx, answer(tx, 486), 1.0)
    assert summary(layer.transport_error(tx, 1.1)) == ["transport failed"]
    assert tx.state is State.COMPLETED
    assert run_timers(layer, 100.0) == [(33.0, ["timeout"])]
    assert layer.transport_error(tx, 40.0) == []  # already gone
    tx2 = new_tx(layer.receive_request(request(branch="z9hG4bK-2"), UDP, 50.0))
    layer.send_response(tx2, answer(tx2, 200), 50.0)
    assert summary(layer.transport_error(tx2, 50.1)) == ["transport failed"]
    assert tx2.state is State.ACCEPTED and tx2.awaiting_ack


def test_response_on_terminated_transaction_is_misuse() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request("OPTIONS"), TCP, 0.0))
    layer.send_response(tx, answer(tx, 200), 0.0)
    assert tx.state is State.TERMINATED
    with pytest.raises(UsageError):
        layer.send_response(tx, answer(tx, 200), 0.1)


def test_response_status_out_of_range_is_misuse() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request("OPTIONS"), UDP, 0.0))
    bogus = SipResponse(700, "Nope", headers=answer(tx, 200).headers)
    with pytest.raises(UsageError):
        layer.send_response(tx, bogus, 0.1)


# -- non-INVITE server transaction -------------------------------------------------------


def test_non_invite_over_udp_trying_completed_timer_j() -> None:
    layer = TransactionLayer()
    events = layer.receive_request(request("OPTIONS"), UDP, 0.0)
    assert summary(events) == ["request OPTIONS"]  # no automatic 100 for non-INVITE
    tx = new_tx(events)
    assert tx.state is State.TRYING and tx.kind is Kind.NON_INVITE
    assert layer.receive_request(request("OPTIONS"), UDP, 0.1) == []  # Trying absorbs
    assert summary(layer.send_response(tx, answer(tx, 200), 0.5)) == ["send 200"]
    assert tx.state is State.COMPLETED
    assert summary(layer.receive_request(request("OPTIONS"), UDP, 1.0)) == ["send 200"]
    assert layer.send_response(tx, answer(tx, 500), 1.1) == []  # §17.2.2: discarded
    assert run_timers(layer, 100.0) == [(32.5, [])]  # Timer J = 64*T1
    assert len(layer) == 0


def test_non_invite_provisional_then_final() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request("BYE", to_tag=TAG), UDP, 0.0))
    assert summary(layer.send_response(tx, answer(tx, 100), 0.1)) == ["send 100"]
    assert tx.state is State.PROCEEDING
    assert summary(layer.receive_request(request("BYE", to_tag=TAG), UDP, 0.2)) == ["send 100"]
    assert summary(layer.send_response(tx, answer(tx, 200), 0.3)) == ["send 200"]
    assert tx.state is State.COMPLETED
    assert layer.next_timer() == pytest.approx(32.3)


def test_non_invite_over_tcp_terminates_on_final() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request("BYE", to_tag=TAG), TCP, 0.0))
    assert summary(layer.send_response(tx, answer(tx, 200), 0.1)) == ["send 200"]
    assert tx.state is State.TERMINATED  # Timer J is zero on reliable transports
    assert len(layer) == 0 and layer.next_timer() is None


def test_custom_t1_scales_timers() -> None:
    layer = TransactionLayer(timers=SipTimers(t1_s=0.1, t2_s=0.4, t4_s=1.0))
    tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(tx, answer(tx, 486), 0.0)
    fired = run_timers(layer, 100.0)
    assert [t for t, _ in fired][:4] == pytest.approx([0.1, 0.3, 0.7, 1.1])
    assert fired[-1] == (pytest.approx(6.4), ["timeout"])


# -- matching (RFC 3261 §17.2.3) ---------------------------------------------------------


def test_same_branch_other_sent_by_is_a_new_transaction() -> None:
    layer = TransactionLayer(send_100_trying=False)
    a = layer.receive_request(request("OPTIONS"), UDP, 0.0)
    b = layer.receive_request(request("OPTIONS", sent_by="192.0.2.11:5060"), UDP, 0.0)
    assert summary(a) == summary(b) == ["request OPTIONS"]
    assert len(layer) == 2


def test_sent_by_host_compares_case_insensitively() -> None:
    layer = TransactionLayer(send_100_trying=False)
    layer.receive_request(request("OPTIONS", sent_by="Edge.Example:5060"), UDP, 0.0)
    assert layer.receive_request(request("OPTIONS", sent_by="edge.example:5060"), UDP, 0.1) == []


def test_same_branch_other_method_is_a_new_transaction() -> None:
    layer = TransactionLayer(send_100_trying=False)
    layer.receive_request(request("INVITE"), UDP, 0.0)
    events = layer.receive_request(request("INFO", cseq=2, to_tag=TAG), UDP, 0.0)
    assert summary(events) == ["request INFO"]


def test_cancel_matches_pending_invite() -> None:
    layer = TransactionLayer()
    invite_tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    events = layer.receive_request(request("CANCEL", cseq_method="CANCEL"), UDP, 0.5)
    assert summary(events) == ["cancel matched"]
    cancel = events[0]
    assert isinstance(cancel, CancelReceived) and cancel.invite is invite_tx
    # The core answers the CANCEL 200 and the INVITE 487 (RFC 3261 §9.2).
    assert summary(
        layer.send_response(cancel.transaction, answer(cancel.transaction, 200), 0.6)
    ) == ["send 200"]
    assert summary(layer.send_response(invite_tx, answer(invite_tx, 487), 0.6)) == ["send 487"]
    ack = request("ACK", to_tag=TAG, cseq_method="ACK")
    assert layer.receive_request(ack, UDP, 0.7) == []
    # A retransmitted CANCEL gets the 200 again.
    again = layer.receive_request(request("CANCEL", cseq_method="CANCEL"), UDP, 0.8)
    assert summary(again) == ["send 200"]


def test_cancel_without_invite_is_unmatched() -> None:
    layer = TransactionLayer()
    events = layer.receive_request(request("CANCEL", cseq_method="CANCEL"), UDP, 0.0)
    assert summary(events) == ["cancel unmatched"]


def test_cancel_after_2xx_still_names_the_invite() -> None:
    layer = TransactionLayer()
    invite_tx = new_tx(layer.receive_request(request(), UDP, 0.0))
    layer.send_response(invite_tx, answer(invite_tx, 200), 0.1)
    events = layer.receive_request(request("CANCEL", cseq_method="CANCEL"), UDP, 0.2)
    assert isinstance(events[0], CancelReceived) and events[0].invite is invite_tx
    assert invite_tx.state is State.ACCEPTED  # too late: the core answers only the CANCEL


def test_ack_for_unknown_transaction_goes_to_core() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag=TAG, cseq_method="ACK")
    assert summary(layer.receive_request(ack, UDP, 0.0)) == ["ack"]
    assert len(layer) == 0  # ACK never creates a transaction


def test_ack_without_to_tag_is_passed_on_unmatched() -> None:
    layer = TransactionLayer()
    layer.receive_request(request(), UDP, 0.0)
    ack = request("ACK", branch="z9hG4bK-other", cseq_method="ACK")
    assert summary(layer.receive_request(ack, UDP, 0.1)) == ["ack"]


# RFC 2543 peers (no magic cookie, or no branch): the fallback of §17.2.3.


@pytest.mark.parametrize("branch", [None, "0a1b2c"])
def test_rfc2543_invite_retransmission_and_ack(branch: str | None) -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(branch=branch), UDP, 0.0))
    assert summary(layer.receive_request(request(branch=branch), UDP, 0.1)) == ["send 100"]
    layer.send_response(tx, answer(tx, 486), 0.2)
    wrong = request("ACK", branch=branch, to_tag="not-ours", cseq_method="ACK")
    assert summary(layer.receive_request(wrong, UDP, 0.3)) == ["ack"]
    assert tx.state is State.COMPLETED
    ack = request("ACK", branch=branch, to_tag=TAG, cseq_method="ACK")
    assert layer.receive_request(ack, UDP, 0.4) == []
    assert tx.state is State.CONFIRMED


def test_rfc2543_different_cseq_is_a_new_transaction() -> None:
    layer = TransactionLayer(send_100_trying=False)
    layer.receive_request(request("OPTIONS", branch=None), UDP, 0.0)
    events = layer.receive_request(request("OPTIONS", branch=None, cseq=2), UDP, 0.1)
    assert summary(events) == ["request OPTIONS"]


def test_rfc2543_cancel_matches_invite() -> None:
    layer = TransactionLayer()
    invite_tx = new_tx(layer.receive_request(request(branch=None), UDP, 0.0))
    events = layer.receive_request(request("CANCEL", branch=None, cseq_method="CANCEL"), UDP, 0.1)
    assert isinstance(events[0], CancelReceived) and events[0].invite is invite_tx
    other = request("CANCEL", branch=None, cseq_method="CANCEL", to_tag="x", cseq=1)
    events = layer.receive_request(other, UDP, 0.2)
    assert isinstance(events[0], CancelReceived) and events[0].invite is None


# -- bounds and bad input ----------------------------------------------------------------


def test_overload_yields_503_event_and_keeps_existing_transactions() -> None:
    layer = TransactionLayer(max_transactions=2, retry_after_s=7, max_per_source=2)
    layer.receive_request(request(branch="z9hG4bK-a"), UDP, 0.0)
    layer.receive_request(request("OPTIONS", branch="z9hG4bK-b"), UDP, 0.0)
    events = layer.receive_request(request(branch="z9hG4bK-c"), UDP, 0.0)
    assert summary(events) == ["overloaded 7"]
    assert isinstance(events[0], Overloaded) and events[0].source is UDP
    assert len(layer) == 2
    assert summary(layer.receive_request(request(branch="z9hG4bK-a"), UDP, 0.1)) == ["send 100"]
    ack = request("ACK", branch="z9hG4bK-d", to_tag=TAG, cseq_method="ACK")
    assert summary(layer.receive_request(ack, UDP, 0.1)) == ["ack"]


def test_max_transactions_must_be_positive() -> None:
    with pytest.raises(UsageError):
        TransactionLayer(max_transactions=0)


def _without(req: SipRequest, name: str) -> SipRequest:
    return req.with_headers(req.headers.remove(name))


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (_without(request(), "Via"), "missing Via"),
        (_without(request(), "CSeq"), "missing CSeq"),
        (_without(request(), "Call-ID"), "missing Call-ID"),
        (_without(request(), "From"), "missing From"),
        (_without(request(), "To"), "missing To"),
        (
            request().with_headers(request().headers.set("CSeq", "1 BYE")),
            "CSeq method does not match the request method",
        ),
        (request().with_headers(request().headers.set("Via", "SIP/2.0 nonsense")), "bad Via"),
    ],
)
def test_unmatchable_requests_raise_parse_error(req: SipRequest, reason: str) -> None:
    layer = TransactionLayer()
    with pytest.raises(SipParseError) as info:
        layer.receive_request(req, UDP, 0.0)
    assert info.value.reason == reason
    assert info.value.status == 400
    assert len(layer) == 0


def test_any_source_with_reliable_property_is_accepted() -> None:
    @dataclass(frozen=True)
    class Peer:
        host: str
        reliable: bool

    layer = TransactionLayer()
    peer = Peer("192.0.2.1", True)
    tx = new_tx(layer.receive_request(request("OPTIONS"), peer, 0.0))
    assert tx.source is peer
    layer.send_response(tx, answer(tx, 200), 0.0)
    assert len(layer) == 0


# -- properties --------------------------------------------------------------------------

_STEPS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0),
        st.sampled_from(["retransmit", "180", "200", "486", "ack", "ack2xx", "cancel", "error"]),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, reliable=st.booleans())
def test_any_sequence_ends_empty_and_never_duplicates_the_request(
    steps: list[tuple[float, str]], reliable: bool
) -> None:
    source = TCP if reliable else UDP
    layer = TransactionLayer()
    now = 0.0
    first = layer.receive_request(request(), source, now)
    tx = new_tx(first)
    inputs = {
        "retransmit": request(),
        "ack": request("ACK", to_tag=TAG, cseq_method="ACK"),
        "ack2xx": request("ACK", branch="z9hG4bK-ack", to_tag=TAG, cseq_method="ACK"),
        "cancel": request("CANCEL", cseq_method="CANCEL"),
    }
    for delay, what in steps:
        now += delay
        events = layer.handle_timer(now)
        if what in inputs:
            events += layer.receive_request(inputs[what], source, now)
        elif what == "error":
            events += layer.transport_error(tx, now)
        elif tx.state is not State.TERMINATED:
            events += layer.send_response(tx, answer(tx, int(what)), now)
        # A live INVITE is never handed to the core twice.
        if tx.state is not State.TERMINATED:
            assert not any(
                isinstance(e, RequestReceived) and e.request.method == "INVITE" for e in events
            )
        deadline = layer.next_timer()
        assert deadline is None or deadline > now
        assert len(layer) <= 3
    # Every transaction ends without outside help once the core has answered.
    for live in list(layer._transactions.values()):
        if live.state in (State.PROCEEDING, State.TRYING):
            layer.send_response(live, answer(live, 500), now)
    run_timers(layer, now + 1000.0)
    assert len(layer) == 0 and layer.next_timer() is None
    assert not layer._awaiting_ack


def test_rfc2543_reinvite_ack_matches_with_same_to_tag() -> None:
    layer = TransactionLayer()
    tx = new_tx(layer.receive_request(request(branch=None, cseq=2, to_tag=TAG), UDP, 0.0))
    layer.send_response(tx, answer(tx, 491), 0.1)
    ack = request("ACK", branch=None, cseq=2, to_tag=TAG, cseq_method="ACK")
    assert layer.receive_request(ack, UDP, 0.2) == []
    assert tx.state is State.CONFIRMED
