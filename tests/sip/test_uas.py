"""The UAS core's answers (issue: OPTIONS, CANCEL, 481, 405, 420, 403, 400), pure."""

from __future__ import annotations

import ipaddress

import pytest

from srs.errors import NotAcceptableHere
from srs.sip.auth import Authenticator
from srs.sip.client_transaction import TimedOut
from srs.sip.parser import SipMessageError, parse_message
from srs.sip.transaction import Source
from srs.sip.uas import Local, NewSession, Refused, SessionEnded, SessionUpdate, SipCore, Transmit

PEER = Source("udp", "192.0.2.10", 5062)
LOCAL = Local("192.0.2.1", 5060, "udp")
TOKEN = "s3cret-token"


def core() -> SipCore:
    return SipCore(authenticator=Authenticator.from_strings("X-Auth-Token", [TOKEN]))


def request(method: str, *, branch: str = "z9hG4bKa1", cseq: int = 1, to_tag: str = "",
            extra: str = "", body: str = "", cseq_method: str | None = None,
            via: str = "SIP/2.0/UDP 192.0.2.10:5062") -> bytes:
    to = "<sip:srs@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:srs@192.0.2.1 SIP/2.0\r\n"
        f"Via: {via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:src@192.0.2.10>;tag=abc\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@0.0.0.0\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:src@10.0.0.5:5062>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    return text.encode()


def sent(outputs: list) -> list:
    return [parse_message(o.data) for o in outputs if isinstance(o, Transmit)]


def feed(sip: SipCore, data: bytes, now: float = 0.0) -> list:
    return sip.receive(parse_message(data), PEER, now)


def test_options_out_of_dialog_is_200_with_allow_accept_supported() -> None:
    [response] = sent(feed(core(), request("OPTIONS")))
    assert response.status == 200
    assert response.headers.get_all("Allow") == ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO"]
    assert "application/sdp" in response.headers.get_all("Accept")
    assert response.headers.get_all("Supported") == ["siprec", "timer"]
    assert response.to.tag  # a final response to a request without To tag gets one


def test_unknown_method_is_405_with_allow() -> None:
    [response] = sent(feed(core(), request("PUBLISH")))
    assert response.status == 405
    assert "INVITE" in response.headers.get_all("Allow")


@pytest.mark.parametrize("method", ["BYE", "UPDATE", "INFO"])
def test_in_dialog_request_for_unknown_dialog_is_481(method: str) -> None:
    [response] = sent(feed(core(), request(method, to_tag="nope")))
    assert response.status == 481


def test_bye_without_to_tag_is_481() -> None:
    [response] = sent(feed(core(), request("BYE")))
    assert response.status == 481


@pytest.mark.parametrize(
    ("extra", "reason"),
    [("", "Forbidden: missing X-Auth-Token"), ("X-Auth-Token: wrong\r\n", "Forbidden: bad X-Auth-Token")],
)
def test_invite_without_the_right_credential_is_403(extra: str, reason: str) -> None:
    sip = core()
    outputs = feed(sip, request("INVITE", extra=extra))
    responses = sent(outputs)
    assert [r.status for r in responses] == [403]  # stateless: not even a 100 first
    assert responses[0].reason == reason
    assert len(sip.transactions) == 0
    assert not any(isinstance(o, NewSession) for o in outputs)
    assert [o.status for o in outputs if isinstance(o, Refused)] == [403]
    assert sip.counters["auth_failures"] == 1
    assert TOKEN.encode() not in b"".join(o.data for o in outputs if isinstance(o, Transmit))


def test_source_outside_allow_list_is_403() -> None:
    import ipaddress

    sip = SipCore(authenticator=Authenticator.from_strings(
        "X-Auth-Token", [TOKEN], [ipaddress.ip_network("10.0.0.0/8")]))
    responses = sent(feed(sip, request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n")))
    assert responses[-1].status == 403
    assert responses[-1].reason == "Forbidden: source address not allowed"


def test_require_with_unknown_option_is_420_with_unsupported() -> None:
    extra = f"X-Auth-Token: {TOKEN}\r\nRequire: siprec, 100rel, foo\r\n"
    responses = sent(feed(core(), request("INVITE", extra=extra)))
    assert responses[-1].status == 420
    assert responses[-1].headers.get_all("Unsupported") == ["100rel", "foo"]


def test_authenticated_invite_becomes_a_new_session_and_can_be_declined() -> None:
    sip = core()
    extra = f"X-Auth-Token: {TOKEN}\r\nRequire: siprec\r\n"
    outputs = feed(sip, request("INVITE", extra=extra))
    assert [r.status for r in sent(outputs)] == [100]
    [event] = [o for o in outputs if isinstance(o, NewSession)]
    responses = sent(sip.reject(event.pending, NotAcceptableHere("Not Acceptable Here: no codec"), 0.1))
    assert [(r.status, r.reason) for r in responses] == [(488, "Not Acceptable Here: no codec")]


def test_answered_invite_creates_dialog_then_reinvite_and_bye() -> None:
    sip = core()
    outputs = feed(sip, request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n"
                                "Session-Expires: 1800\r\nSupported: timer\r\n"))
    [event] = [o for o in outputs if isinstance(o, NewSession)]
    outputs, dialog_id = sip.answer(event.pending, 200, 0.1, local=LOCAL, body=b"v=0\r\n",
                                    content_type="application/sdp")
    [ok] = sent(outputs)
    assert ok.status == 200 and dialog_id is not None
    assert ok.to.tag == dialog_id.local_tag
    assert str(ok.contact) == "<sip:srs@192.0.2.1:5060>;+sip.srs"
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    assert ok.content_type is not None and ok.content_type.media_type == "application/sdp"
    tag = dialog_id.local_tag
    # ACK for the 2xx (new branch) stops retransmission: no timer output at 0.5 s.
    assert sent(feed(sip, request("ACK", branch="z9hG4bKack", to_tag=tag, cseq_method="ACK"), 0.2)) == []
    assert sent(sip.handle_timer(1.0)) == []
    # In-dialog OPTIONS and a re-INVITE.
    [opt] = sent(feed(sip, request("OPTIONS", branch="z9hG4bKo", cseq=2, to_tag=tag), 1.0))
    assert opt.status == 200
    outputs = feed(sip, request("INVITE", branch="z9hG4bKre", cseq=3, to_tag=tag), 2.0)
    [update] = [o for o in outputs if isinstance(o, SessionUpdate)]
    assert update.dialog_id == dialog_id
    # An out-of-order CSeq is 500.
    [stale] = sent(feed(sip, request("UPDATE", branch="z9hG4bKold", cseq=2, to_tag=tag), 2.1))
    assert stale.status == 500
    outputs = feed(sip, request("BYE", branch="z9hG4bKbye", cseq=4, to_tag=tag), 3.0)
    assert [r.status for r in sent(outputs)] == [200]
    assert SessionEnded("bye", dialog_id=dialog_id, at=3.0) in outputs
    [gone] = sent(feed(sip, request("BYE", branch="z9hG4bKbye2", cseq=5, to_tag=tag), 3.1))
    assert gone.status == 481


def test_cancel_of_pending_invite_is_200_and_487() -> None:
    sip = core()
    outputs = feed(sip, request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n"))
    [event] = [o for o in outputs if isinstance(o, NewSession)]
    outputs = feed(sip, request("CANCEL", extra=f"X-Auth-Token: {TOKEN}\r\n"), 0.5)
    responses = sent(outputs)
    assert sorted((r.status, r.cseq.method) for r in responses) == [(200, "CANCEL"), (487, "INVITE")]
    assert SessionEnded("cancel", pending=event.pending, at=0.5) in outputs
    # The session layer's late answer finds the transaction answered: nothing is sent.
    late, dialog_id = sip.answer(event.pending, 200, 0.6, local=LOCAL)
    assert sent(late) == [] and dialog_id is None


def test_cancel_matching_nothing_is_481() -> None:
    [response] = sent(feed(core(), request("CANCEL")))
    assert response.status == 481


def test_malformed_request_gets_400_naming_the_problem() -> None:
    data = request("INVITE").replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    with pytest.raises(SipMessageError) as info:
        parse_message(data)
    [transmit] = core().parse_failed(info.value, PEER, 0.0)
    # The broken CSeq is echoed as received, so the answer is checked as bytes.
    assert transmit.data.startswith(b"SIP/2.0 400 bad CSeq\r\n")
    assert b"\r\nCSeq: one INVITE\r\n" in transmit.data
    assert (transmit.host, transmit.port) == ("192.0.2.10", 5062)


def test_udp_responses_follow_rport_and_via_port() -> None:
    out = feed(core(), request("OPTIONS", via="SIP/2.0/UDP 10.9.9.9:5070;rport"))
    [transmit] = [o for o in out if isinstance(o, Transmit)]
    assert (transmit.host, transmit.port) == ("192.0.2.10", 5062)  # RFC 3581: source port
    response = parse_message(transmit.data)
    assert response.top_via.received == "192.0.2.10" and response.top_via.rport == 5062
    out = feed(core(), request("OPTIONS", via="SIP/2.0/UDP 10.9.9.9:5070"))
    [transmit] = [o for o in out if isinstance(o, Transmit)]
    assert (transmit.host, transmit.port) == ("192.0.2.10", 5070)  # RFC 3261 §18.2.2


def test_our_bye_follows_route_set_and_is_retransmitted_until_answered() -> None:
    sip = core()
    extra = (f"X-Auth-Token: {TOKEN}\r\nRecord-Route: <sip:198.51.100.7:5060;lr>\r\n"
             "Record-Route: <sip:198.51.100.8;lr>\r\n")
    [event] = [o for o in feed(sip, request("INVITE", extra=extra)) if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.0, local=LOCAL)
    assert dialog_id is not None
    feed(sip, request("ACK", branch="z9hG4bKack", to_tag=dialog_id.local_tag, cseq_method="ACK"), 0.1)
    [first] = sip.hang_up(dialog_id, 1.0, local=LOCAL)
    assert (first.host, first.port) == ("198.51.100.7", 5060)
    bye = parse_message(first.data)
    assert bye.method == "BYE" and str(bye.uri) == "sip:src@10.0.0.5:5062"
    assert [str(r.uri) for r in bye.route] == ["sip:198.51.100.7:5060;lr", "sip:198.51.100.8;lr"]
    # Timer E: resent at +0.5, +1.5 (doubling), then a 200 stops it.
    assert [o.data for o in sip.handle_timer(1.5)] == [first.data]
    assert sip.handle_timer(2.0) == []
    assert [o.data for o in sip.handle_timer(2.5)] == [first.data]
    ok = bytes(bye).replace(b"BYE sip:src@10.0.0.5:5062 SIP/2.0", b"SIP/2.0 200 OK")
    assert sip.receive(parse_message(ok), PEER, 2.6) == []  # nothing for the session layer
    # Answered: nothing left to wait for at shutdown, though Timer K (T4) still absorbs
    # retransmitted 200s over UDP (RFC 3261 §17.1.2.2).
    assert sip.client.unanswered() == 0 and len(sip.client) == 1
    assert sip.receive(parse_message(ok), PEER, 3.0) == []
    assert sip.handle_timer(10.0) == [] and len(sip.client) == 0
    assert sip.receive(parse_message(ok), PEER, 11.0) == []  # late: matches nothing
    answered = parse_message(ok)
    broken = answered.with_headers(answered.headers.remove("Via"))
    assert sip.receive(broken, PEER, 11.0) == []  # unmatchable: dropped (RFC 3261 §18.1.2)


def test_our_bye_over_tcp_goes_on_the_connection_and_is_not_retransmitted() -> None:
    sip = core()
    tcp = Source("tcp", "192.0.2.10", 40112, connection_id=7)
    invite = parse_message(request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n",
                                   via="SIP/2.0/TCP 192.0.2.10:5062"))
    [event] = [o for o in sip.receive(invite, tcp, 0.0) if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.0, local=Local("192.0.2.1", 5060, "tcp"))
    assert dialog_id is not None and sip.connection_in_use(7)
    [first] = sip.hang_up(dialog_id, 1.0, local=Local("192.0.2.1", 5060, "tcp"))
    assert first.peer is tcp and not sip.connection_in_use(7)
    assert sip.hang_up(dialog_id, 1.0, local=LOCAL) == []  # already gone
    outputs = sip.handle_timer(1.0 + 64 * 0.5)
    assert [type(o) for o in outputs if not isinstance(o, Transmit)] == [TimedOut]
    assert not any(o.data == first.data for o in outputs if isinstance(o, Transmit))


def test_bye_to_a_vanished_peer_times_out() -> None:
    sip = core()
    [event] = [o for o in feed(sip, request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n"))
               if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.0, local=LOCAL)
    feed(sip, request("ACK", branch="z9hG4bKack", to_tag=dialog_id.local_tag, cseq_method="ACK"), 0.1)
    sip.hang_up(dialog_id, 1.0, local=LOCAL)
    outputs: list = []
    now = 1.0
    while (deadline := sip.next_timer()) is not None:
        now = deadline
        outputs.extend(sip.handle_timer(now))
    assert now == pytest.approx(1.0 + 32.0)
    timeout = outputs[-1]
    assert isinstance(timeout, TimedOut)
    assert (timeout.method, timeout.call_id) == ("BYE", "call-1@0.0.0.0")
    assert sum(isinstance(o, Transmit) for o in outputs) == 10  # 0.5,1,2,4,4,... up to 32 s


def test_options_with_unsupported_require_is_420() -> None:
    # RFC 3261 §8.2.2.3 applies to every request but ACK and CANCEL (RFC 4475 bext01).
    [response] = sent(feed(core(), request("OPTIONS", extra="Require: nothingyet\r\n")))
    assert response.status == 420
    assert response.headers.get_all("Unsupported") == ["nothingyet"]


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE"])
def test_non_sip_request_uri_is_416(method: str) -> None:
    # RFC 3261 §8.2.2.1 (RFC 4475 unkscm, novelsc): after authentication for INVITE.
    data = request(method, extra=f"X-Auth-Token: {TOKEN}\r\n").replace(
        f"{method} sip:srs@192.0.2.1 SIP/2.0".encode(), f"{method} nobodyknows:thisscheme SIP/2.0".encode())
    responses = sent(feed(core(), data))
    assert responses[-1].status == 416


def test_invite_whose_accept_excludes_sdp_is_406() -> None:
    extra = f"X-Auth-Token: {TOKEN}\r\nAccept: text/nobodyknowsthis\r\n"
    responses = sent(feed(core(), request("INVITE", extra=extra)))
    assert responses[-1].status == 406


def test_invite_accepting_sdp_or_wildcards_is_taken() -> None:
    for accept in ("application/sdp", "application/*;q=0.5", "*/*"):
        extra = f"X-Auth-Token: {TOKEN}\r\nAccept: {accept}\r\n"
        outputs = feed(core(), request("INVITE", extra=extra))
        assert any(isinstance(o, NewSession) for o in outputs), accept


@pytest.mark.parametrize("rport", ["abc", "99999999"])
def test_a_client_written_rport_value_is_replaced_by_the_real_port(rport: str) -> None:
    # RFC 3581 §4: srs writes rport itself, so a malformed value the client put there
    # is overwritten rather than read.
    data = request("OPTIONS", via=f"SIP/2.0/UDP 192.0.2.10:5062;rport={rport}")
    [transmit] = [o for o in feed(core(), data) if isinstance(o, Transmit)]
    assert transmit.data.startswith(b"SIP/2.0 200 ")
    assert (transmit.host, transmit.port) == ("192.0.2.10", 5062)
    assert parse_message(transmit.data).top_via.rport == 5062


def test_session_interval_below_min_se_is_422_with_min_se() -> None:
    extra = f"X-Auth-Token: {TOKEN}\r\nSession-Expires: 30\r\nSupported: timer\r\n"
    [*_, response] = sent(feed(core(), request("INVITE", extra=extra)))
    assert (response.status, response.headers.get("Min-SE")) == (422, "90")


def test_no_session_timer_in_the_answer_when_the_client_cannot_refresh() -> None:
    # RFC 4028 §9: without Supported: timer at the client nobody would refresh; srs
    # never refreshes itself, so it answers without Session-Expires.
    sip = core()
    extra = f"X-Auth-Token: {TOKEN}\r\nSession-Expires: 1800;refresher=uas\r\n"
    [event] = [o for o in feed(sip, request("INVITE", extra=extra)) if isinstance(o, NewSession)]
    [ok] = sent(sip.answer(event.pending, 200, 0.1, local=LOCAL)[0])
    assert ok.headers.get("Session-Expires") is None and ok.headers.get("Require") is None


TLS_PEER = Source("tls", "192.0.2.10", 5061, connection_id=1)
TCP_PEER = Source("tcp", "192.0.2.10", 5062, connection_id=2)


def sips(data: bytes) -> bytes:
    return data.replace(b" sip:srs@192.0.2.1 SIP/2.0", b" sips:srs@192.0.2.1 SIP/2.0", 1)


@pytest.mark.parametrize(("method", "peer"), [("BYE", PEER), ("INVITE", TCP_PEER),
                                               ("UPDATE", PEER), ("INFO", TCP_PEER)])
def test_requests_of_a_sips_dialog_not_over_tls_are_403(method: str, peer: Source) -> None:
    sip = core()
    invite = sips(request("INVITE", via="SIP/2.0/TLS 192.0.2.10:5061",
                          extra=f"X-Auth-Token: {TOKEN}\r\n"))
    [event] = [o for o in sip.receive(parse_message(invite), TLS_PEER, 0.0)
               if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.1, local=Local("192.0.2.1", 5061, "tls"))
    assert dialog_id is not None and sip.dialogs.get(dialog_id).secure
    tag = dialog_id.local_tag
    sip.receive(parse_message(request("ACK", branch="z9hG4bKack", to_tag=tag, cseq_method="ACK")),
                TLS_PEER, 0.2)
    downgraded = sips(request(method, branch="z9hG4bKdown", cseq=2, to_tag=tag))
    outputs = sip.receive(parse_message(downgraded), peer, 1.0)
    assert [r.status for r in sent(outputs)] == ([100, 403] if method == "INVITE" else [403])
    assert [(r.method, r.status) for r in outputs if isinstance(r, Refused)] == [(method, 403)]
    assert not [o for o in outputs if isinstance(o, SessionEnded | SessionUpdate)]
    assert dialog_id in sip.dialogs  # refused before any dialog state changed
    # The same request over TLS is taken, CSeq 2 included (the refusal consumed nothing).
    bye = sips(request("BYE", branch="z9hG4bKtls", cseq=2, to_tag=tag,
                       via="SIP/2.0/TLS 192.0.2.10:5061"))
    outputs = sip.receive(parse_message(bye), TLS_PEER, 1.1)
    assert [r.status for r in sent(outputs)] == [200]
    assert [o.reason for o in outputs if isinstance(o, SessionEnded)] == ["bye"]


def test_a_dialog_not_created_by_sips_over_tls_takes_requests_on_any_transport() -> None:
    sip = core()
    invite = sips(request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n"))  # sips:, but UDP
    [event] = [o for o in feed(sip, invite) if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.1, local=LOCAL)
    assert dialog_id is not None and not sip.dialogs.get(dialog_id).secure
    bye = request("BYE", branch="z9hG4bKb", cseq=2, to_tag=dialog_id.local_tag)
    assert [r.status for r in sent(sip.receive(parse_message(bye), TCP_PEER, 1.0))] == [200]


OTHER_HOST = Source("udp", "203.0.113.66", 5062)


def _established(sip: SipCore) -> str:
    [event] = [o for o in feed(sip, request("INVITE", extra=f"X-Auth-Token: {TOKEN}\r\n"))
               if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.1, local=LOCAL)
    assert dialog_id is not None
    feed(sip, request("ACK", branch="z9hG4bKack", to_tag=dialog_id.local_tag,
                      cseq_method="ACK"), 0.2)
    return dialog_id.local_tag


@pytest.mark.parametrize("method", ["INVITE", "UPDATE", "BYE"])
def test_another_host_without_the_credential_cannot_act_on_a_dialog(method: str) -> None:
    """The dialog's identifiers are not the credential: from another host, an in-dialog
    request must carry it (or come from auth.allow_cidrs)."""
    sip = core()
    tag = _established(sip)
    forged = request(method, branch="z9hG4bKforged", cseq=2, to_tag=tag)
    outputs = sip.receive(parse_message(forged), OTHER_HOST, 1.0)
    assert [r.status for r in sent(outputs)][-1] == 403
    assert not [o for o in outputs if isinstance(o, SessionEnded | SessionUpdate)]
    # With the credential, the other host is taken (CSeq 2: the refusal consumed nothing).
    vouched = request(method, branch="z9hG4bKvouched", cseq=2, to_tag=tag,
                      extra=f"X-Auth-Token: {TOKEN}\r\n")
    outputs = sip.receive(parse_message(vouched), OTHER_HOST, 1.1)
    assert [o for o in outputs if isinstance(o, SessionEnded | SessionUpdate)]


def test_the_dialogs_own_host_needs_no_credential_in_dialog() -> None:
    sip = core()
    tag = _established(sip)
    bye = request("BYE", branch="z9hG4bKb", cseq=2, to_tag=tag)
    moved_port = Source("udp", PEER.host, 6000)  # same host, another port: still the party
    assert [r.status for r in sent(sip.receive(parse_message(bye), moved_port, 1.0))] == [200]


def test_an_allowed_network_vouches_for_another_host_in_dialog() -> None:
    sip = SipCore(authenticator=Authenticator.from_strings(
        "X-Auth-Token", [TOKEN], [ipaddress.ip_network("192.0.2.0/24"),
                                  ipaddress.ip_network("198.51.100.0/24")]))
    tag = _established(sip)
    bye = request("BYE", branch="z9hG4bKb", cseq=2, to_tag=tag)
    edge = Source("udp", "198.51.100.9", 5060)  # another address of the same SBC pool
    assert [r.status for r in sent(sip.receive(parse_message(bye), edge, 1.0))] == [200]
