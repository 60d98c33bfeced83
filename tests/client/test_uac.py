"""The client transactions and dialog of srs.client.uac, on a fake clock (no sockets)."""

from __future__ import annotations

import pytest

from srs.client.uac import (
    ByeReceived,
    RequestTimedOut,
    ResponseReceived,
    Send,
    TxState,
    UacCall,
)
from srs.sip.headers import Via
from srs.sip.message import SipRequest, SipResponse, build_request, build_response
from srs.sip.parser import parse_message
from srs.sip.timers import T1, T2
from srs.sip.uri import NameAddr, SipUri


def new_call(reliable: bool = False) -> UacCall:
    return UacCall(
        call_id="c1@0.0.0.0",
        target=SipUri.parse("sip:srs@127.0.0.1:5060"),
        local=NameAddr.parse("<sip:+15005550006@example.com>;tag=ours"),
        remote=NameAddr.parse("<sip:srs@127.0.0.1:5060>"),
        via=Via.parse(f"SIP/2.0/{'TCP' if reliable else 'UDP'} 127.0.0.1:4000;rport"),
        contact=NameAddr.parse("<sip:srs-call@127.0.0.1:4000>;+sip.src"),
        reliable=reliable,
    )


def sent(outputs: list) -> list[SipRequest]:
    return [parse_message(o.data) for o in outputs if isinstance(o, Send)]  # type: ignore[misc]


def answer(request: SipRequest, status: int, *, contact: bool = True) -> SipResponse:
    extra = [("Contact", "<sip:srs@127.0.0.1:5060>")] if contact and status < 300 else []
    response = build_response(request, status, to_tag=None if status == 100 else "theirs",
                              extra_headers=extra)
    return parse_message(bytes(response))  # type: ignore[return-value]


def invite(call: UacCall, now: float = 0.0) -> tuple[SipRequest, list]:
    return call.invite(b"v=0\r\n", "application/sdp", [("Require", "siprec")], now)


def run_timers(call: UacCall, until: float) -> list[tuple[float, object]]:
    fired = []
    while (deadline := call.next_timer()) is not None and deadline <= until:
        fired += [(deadline, o) for o in call.handle_timer(deadline)]
    return fired


def test_invite_is_shaped_for_siprec() -> None:
    call = new_call()
    request, outputs = invite(call)
    assert sent(outputs) == [request]
    assert request.method == "INVITE" and str(request.uri) == "sip:srs@127.0.0.1:5060"
    assert request.cseq.number == 1 and request.top_via.branch.startswith("z9hG4bK")
    assert request.contact is not None and request.contact.has_param("+sip.src")
    assert request.require == ("siprec",)
    assert request.from_.tag == "ours" and request.to.tag is None


def test_invite_over_udp_doubles_timer_a_until_timer_b() -> None:
    call = new_call()
    request, _ = invite(call)
    fired = run_timers(call, 64 * T1)
    resends = [t for t, o in fired if isinstance(o, Send)]
    # RFC 3261 §17.1.1.2: T1, 2*T1, 4*T1 ... after the first send, while under 64*T1.
    assert resends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [o for _, o in fired if isinstance(o, RequestTimedOut)] == [RequestTimedOut(request)]
    assert len(call) == 0 and call.next_timer() is None


def test_provisional_stops_invite_retransmission_and_timer_b() -> None:
    call = new_call()
    request, _ = invite(call)
    outputs = call.receive(answer(request, 100), 0.1)
    assert [type(o) for o in outputs] == [ResponseReceived]
    assert run_timers(call, 100.0) == []


def test_2xx_creates_the_dialog_and_is_acked_again_when_retransmitted() -> None:
    call = new_call()
    request, _ = invite(call)
    ok = answer(request, 200)
    outputs = call.receive(ok, 0.2)
    (ack,) = sent(outputs)
    assert ack.method == "ACK" and ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.top_via.branch != request.top_via.branch  # RFC 3261 §13.2.2.4: new branch
    assert ack.to.tag == "theirs" and str(ack.uri) == "sip:srs@127.0.0.1:5060"
    assert ResponseReceived(request, ok) in outputs
    assert call.dialog is not None and call.dialog.id.remote_tag == "theirs"
    assert sent(call.receive(ok, 0.7)) == [ack]  # the same bytes again
    run_timers(call, 100.0)  # Timer M ends the transaction ...
    assert len(call) == 0
    assert sent(call.receive(ok, 101.0)) == [ack]  # ... and a late 2xx still gets its ACK


def test_failure_is_acked_by_the_transaction_with_the_invite_branch() -> None:
    call = new_call()
    request, _ = invite(call)
    forbidden = answer(request, 403)
    outputs = call.receive(forbidden, 0.2)
    (ack,) = sent(outputs)
    assert ack.top_via.branch == request.top_via.branch  # RFC 3261 §17.1.1.3
    assert ack.to.tag == "theirs" and ack.cseq.method == "ACK"
    assert ResponseReceived(request, forbidden) in outputs
    assert sent(call.receive(forbidden, 1.0)) == [ack]  # retransmitted final: ACK again
    assert call.dialog is None
    assert run_timers(call, 40.0) == [] and len(call) == 0  # Timer D, 32 s


def test_reliable_transport_never_retransmits() -> None:
    call = new_call(reliable=True)
    request, _ = invite(call)
    fired = run_timers(call, 64 * T1)
    assert [type(o) for _, o in fired] == [RequestTimedOut]


def established(reliable: bool = False) -> tuple[UacCall, SipRequest]:
    call = new_call(reliable)
    request, _ = invite(call)
    call.receive(answer(request, 200), 0.1)
    return call, request


@pytest.mark.parametrize("method", ["BYE", "UPDATE", "INVITE"])
def test_in_dialog_requests_follow_the_dialog(method: str) -> None:
    call, _ = established()
    request, outputs = call.request(method, now=1.0)
    assert sent(outputs) == [request]
    assert request.cseq.number == 2 and request.to.tag == "theirs"
    assert (request.contact is not None) == (method != "BYE")


def test_non_invite_timer_e_caps_at_t2_then_timer_f() -> None:
    call, _ = established()
    bye, _ = call.request("BYE", now=0.0)
    fired = run_timers(call, 64 * T1)
    resends = [t for t, o in fired if isinstance(o, Send)]
    assert resends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(b - a <= T2 for a, b in zip(resends, resends[1:]))
    assert [o for _, o in fired if isinstance(o, RequestTimedOut)] == [RequestTimedOut(bye)]


def test_non_invite_final_absorbs_retransmissions() -> None:
    call, _ = established()
    bye, _ = call.request("BYE", now=10.0)
    ok = answer(bye, 200)
    assert call.receive(ok, 10.1) == [ResponseReceived(bye, ok)]
    assert call.receive(ok, 10.2) == []


def test_server_bye_is_answered_200() -> None:
    call, _ = established()
    dialog = call.dialog
    assert dialog is not None
    bye = build_request("BYE", "sip:srs-call@127.0.0.1:4000", headers=[
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKserver"),
        ("From", str(dialog.remote)), ("To", str(dialog.local)),
        ("Call-ID", "c1@0.0.0.0"), ("CSeq", "1 BYE"),
    ])
    outputs = call.receive(bye, 5.0)
    assert [parse_message(o.data).status for o in outputs if isinstance(o, Send)] == [200]
    assert ByeReceived(bye) in outputs
    stranger = bye.with_headers(bye.headers.set("Call-ID", "other"))
    assert [parse_message(o.data).status for o in call.receive(stranger, 5.0)] == [481]


def test_states_follow_the_figures() -> None:
    call = new_call()
    request, _ = invite(call)
    transaction = call._transactions[(request.top_via.branch, "INVITE")]
    assert transaction.state is TxState.CALLING
    call.receive(answer(request, 180), 0.1)
    assert transaction.state is TxState.PROCEEDING
    call.receive(answer(request, 200), 0.2)
    assert transaction.state is TxState.ACCEPTED
