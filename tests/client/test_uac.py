"""UacCall (srs.client.uac): one call's requests, 2xx ACKs and dialog, on a fake clock.

The transaction machines under it are tested table by table in
tests/sip/test_client_transaction.py; here is what the call adds and how it drives them."""

from __future__ import annotations

import pytest

from srs.client.uac import ByeReceived, Send, UacCall
from srs.errors import SipParseError, UsageError
from srs.sip.client_transaction import ResponseReceived, State, TimedOut
from srs.sip.headers import Via
from srs.sip.message import ALLOW, SipRequest, SipResponse, build_request, build_response
from srs.sip.parser import parse_message
from srs.sip.timers import T1
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
    assert request.headers.get("Allow") == ", ".join(ALLOW)  # the server's list, one constant
    with pytest.raises(UsageError):
        invite(call)  # one dialog-creating INVITE per call


def test_invite_over_udp_doubles_timer_a_until_timer_b() -> None:
    call = new_call()
    request, _ = invite(call)
    fired = run_timers(call, 64 * T1)
    resends = [t for t, o in fired if isinstance(o, Send)]
    # RFC 3261 §17.1.1.2: T1, 2*T1, 4*T1 ... after the first send, while under 64*T1.
    assert resends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [o for _, o in fired if isinstance(o, TimedOut)] == [TimedOut(request)]
    assert len(call) == 0 and call.next_timer() is None


def test_provisional_stops_invite_retransmission_but_not_timer_b() -> None:
    call = new_call()
    request, _ = invite(call)
    outputs = call.receive(answer(request, 100), 0.1)
    assert [type(o) for o in outputs] == [ResponseReceived]
    # §17.1.1.2: no retransmission in Proceeding; srs lets Timer B end the wait at 64*T1.
    assert run_timers(call, 100.0) == [(64 * T1, TimedOut(request))]
    assert len(call) == 0


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
    _request, _ = invite(call)
    fired = run_timers(call, 64 * T1)
    assert [type(o) for _, o in fired] == [TimedOut]


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


@pytest.mark.parametrize(("method", "status"), [("OPTIONS", 200), ("INFO", 200), ("UPDATE", 488)])
def test_server_requests_in_the_dialog_are_answered_as_allow_says(method: str, status: int) -> None:
    call, _ = established()
    dialog = call.dialog
    assert dialog is not None
    request = build_request(method, "sip:srs-call@127.0.0.1:4000", headers=[
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKserver"),
        ("From", str(dialog.remote)), ("To", str(dialog.local)),
        ("Call-ID", "c1@0.0.0.0"), ("CSeq", f"1 {method}"),
    ])
    (response,) = [parse_message(o.data) for o in call.receive(request, 5.0)]
    assert response.status == status
    if method == "OPTIONS":
        assert response.headers.get("Allow") == ", ".join(ALLOW)
    assert call.receive(build_request("ACK", "sip:x@127.0.0.1", headers=[
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKack"),
        ("From", str(dialog.remote)), ("To", str(dialog.local)),
        ("Call-ID", "c1@0.0.0.0"), ("CSeq", "1 ACK"),
    ]), 5.0) == []  # RFC 3261 §17: never answered


def test_cancel_needs_a_provisional_and_no_final_response() -> None:
    call = new_call()
    with pytest.raises(UsageError):
        call.cancel(0.0)  # nothing to cancel yet
    request, _ = invite(call)
    with pytest.raises(UsageError):
        call.cancel(0.0)  # RFC 3261 §9.1: MUST NOT before a provisional response
    call.receive(answer(request, 180), 0.1)
    cancel, outputs = call.cancel(0.2)
    assert sent(outputs) == [cancel]
    assert cancel.method == "CANCEL" and cancel.cseq.number == 1
    assert cancel.top_via.branch == request.top_via.branch and cancel.to.tag is None
    call.receive(answer(request, 487), 0.3)
    with pytest.raises(UsageError):
        call.cancel(0.4)  # answered: nothing left to cancel


def test_in_dialog_request_needs_the_dialog() -> None:
    with pytest.raises(UsageError):
        new_call().request("BYE", now=0.0)


def test_unreadable_response_is_raised_for_the_shell_to_drop() -> None:
    call = new_call()
    request, _ = invite(call)
    broken = answer(request, 200)
    broken = broken.with_headers(broken.headers.remove("CSeq"))
    with pytest.raises(SipParseError):
        call.receive(broken, 0.1)


def test_states_follow_the_figures() -> None:
    call = new_call()
    request, _ = invite(call)
    transaction = call.transactions.get((request.top_via.branch, "INVITE"))
    assert transaction is not None and transaction.state is State.CALLING
    call.receive(answer(request, 180), 0.1)
    assert transaction.state is State.PROCEEDING
    call.receive(answer(request, 200), 0.2)
    assert transaction.state is State.ACCEPTED
