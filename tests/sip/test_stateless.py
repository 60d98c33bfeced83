"""Refusals that cost nothing: what an unauthenticated or off-dialog sender can make the
SIP core hold (RFC 3261 §8.2.7 stateless answers; §18.2.1 and RFC 3581 §4 Via stamping)."""

from __future__ import annotations

from srs.sip.auth import Authenticator
from srs.sip.parser import SipMessageError, parse_message
from srs.sip.timers import T1
from srs.sip.transaction import Overloaded, Source, TransactionLayer
from srs.sip.uas import Local, NewSession, Refused, SipCore, Transmit

TOKEN = "s3cret-token"
SRC = Source("udp", "192.0.2.10", 5062)
ATTACKER = Source("udp", "203.0.113.66", 40000)
LOCAL = Local("192.0.2.1", 5060, "udp")


def core(**layer: int) -> SipCore:
    return SipCore(authenticator=Authenticator.from_strings("X-Auth-Token", [TOKEN]),
                   transactions=TransactionLayer(**layer) if layer else None)


def request(method: str, *, branch: str, call_id: str = "call-1", to_tag: str = "",
            cseq: int = 1, extra: str = "", via: str = "SIP/2.0/UDP 192.0.2.10:5062",
            cseq_method: str | None = None) -> bytes:
    to = "<sip:srs@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    return (f"{method} sip:srs@192.0.2.1 SIP/2.0\r\nVia: {via};branch={branch}\r\n"
            f"From: <sip:src@192.0.2.10>;tag=abc\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {cseq_method or method}\r\nContact: <sip:src@192.0.2.10:5062>\r\n"
            f"{extra}Content-Length: 0\r\n\r\n").encode()


def transmits(outputs: list) -> list[Transmit]:
    return [o for o in outputs if isinstance(o, Transmit)]


def established(sip: SipCore) -> str:
    """An authenticated call, answered and ACKed; returns srs's To tag."""
    outputs = sip.receive(parse_message(request("INVITE", branch="z9hG4bKinv",
                                                extra=f"X-Auth-Token: {TOKEN}\r\n")), SRC, 0.0)
    [event] = [o for o in outputs if isinstance(o, NewSession)]
    _, dialog_id = sip.answer(event.pending, 200, 0.1, local=LOCAL)
    assert dialog_id is not None
    sip.receive(parse_message(request("ACK", branch="z9hG4bKack", to_tag=dialog_id.local_tag,
                                      cseq_method="ACK")), SRC, 0.2)
    return dialog_id.local_tag


def test_a_forged_invite_gets_one_403_and_leaves_nothing_behind() -> None:
    sip = core()
    forged = parse_message(request("INVITE", branch="z9hG4bKf", extra="X-Auth-Token: no\r\n"))
    outputs = sip.receive(forged, ATTACKER, 0.0)
    assert [parse_message(t.data).status for t in transmits(outputs)] == [403]
    assert [o.status for o in outputs if isinstance(o, Refused)] == [403]
    assert len(sip.transactions) == 0 and sip.next_timer() is None
    # Nothing is retransmitted however long we wait: the 403 had no transaction.
    assert transmits(sip.handle_timer(64 * T1 + 1)) == []


def test_a_flood_of_forged_invites_never_stops_the_bye_of_a_call_in_progress() -> None:
    sip = core(max_transactions=64)
    tag = established(sip)
    for n in range(5000):
        sip.receive(parse_message(request("INVITE", branch=f"z9hG4bKf{n}", call_id=f"f{n}")),
                    ATTACKER, 0.3 + n * 1e-4)
    assert sip.counters["auth_failures"] == 5000
    assert len(sip.transactions) <= 2  # the call's own INVITE transaction (Accepted)
    bye = parse_message(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2))
    [ok] = transmits(sip.receive(bye, SRC, 1.0))
    assert parse_message(ok.data).status == 200


def test_a_flood_of_cancels_matching_nothing_holds_nothing() -> None:
    """A CANCEL that matches no INVITE of its source is answered 481 statelessly (RFC 3261
    §9.2): 5,000 of them fill no table and the call's BYE still gets 200."""
    sip = core(max_transactions=64)
    tag = established(sip)
    for n in range(5000):
        data = request("CANCEL", branch=f"z9hG4bKc{n}", call_id=f"c{n}")
        [answer] = transmits(sip.receive(parse_message(data), ATTACKER, 0.3 + n * 1e-4))
        assert parse_message(answer.data).status == 481
    # Nor does another host's CANCEL of the call's own INVITE branch count as its.
    cancel = parse_message(request("CANCEL", branch="z9hG4bKinv"))
    assert [parse_message(t.data).status for t in transmits(sip.receive(cancel, ATTACKER,
                                                                        0.9))] == [481]
    assert len(sip.transactions) <= 2  # the call's own INVITE transaction (Accepted)
    bye = parse_message(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2))
    [ok] = transmits(sip.receive(bye, SRC, 1.0))
    assert parse_message(ok.data).status == 200


def test_an_in_dialog_request_from_another_host_gets_one_stateless_403() -> None:
    sip = core()
    tag = established(sip)
    held = len(sip.transactions)
    for n in range(20):
        data = request("INVITE", branch=f"z9hG4bKr{n}", to_tag=tag, cseq=2 + n)
        outputs = sip.receive(parse_message(data), ATTACKER, 1.0 + n)
        assert [parse_message(t.data).status for t in transmits(outputs)] == [403]
    assert len(sip.transactions) == held
    later = [o for o in sip.handle_timer(40.0) if isinstance(o, Transmit)]
    assert [o for o in later if o.host == ATTACKER.host] == []  # nothing retransmitted


def test_requests_for_unknown_dialogs_are_answered_481_statelessly() -> None:
    sip = core()
    for n, method in enumerate(("BYE", "UPDATE", "INFO")):
        data = request(method, branch=f"z9hG4bKu{n}", to_tag="nosuch", call_id=f"u{n}")
        [answer] = transmits(sip.receive(parse_message(data), ATTACKER, 0.0))
        assert parse_message(answer.data).status == 481
    bye_outside = request("BYE", branch="z9hG4bKo", call_id="o1")  # no To tag
    [answer] = transmits(sip.receive(parse_message(bye_outside), ATTACKER, 0.0))
    assert parse_message(answer.data).status == 481
    assert len(sip.transactions) == 0


def test_a_retransmitted_bye_still_meets_its_transaction_after_the_dialog_is_gone() -> None:
    sip = core()
    tag = established(sip)
    bye = parse_message(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2))
    [first] = transmits(sip.receive(bye, SRC, 1.0))
    [again] = transmits(sip.receive(bye, SRC, 1.5))  # the 200 was lost: same answer
    assert parse_message(again.data).status == parse_message(first.data).status == 200


def test_out_of_dialog_options_is_answered_without_a_transaction() -> None:
    sip = core()
    [answer] = transmits(sip.receive(parse_message(request("OPTIONS", branch="z9hG4bKo")),
                                     SRC, 0.0))
    assert parse_message(answer.data).status == 200
    assert len(sip.transactions) == 0


def test_responses_go_to_the_real_source_whatever_the_via_claims() -> None:
    sip = core()
    via = "SIP/2.0/UDP 192.0.2.10:5062;received=192.0.2.99;rport=9"
    data = request("OPTIONS", branch="z9hG4bKv", via=via)
    [answer] = transmits(sip.receive(parse_message(data), ATTACKER, 0.0))
    assert (answer.host, answer.port) == (ATTACKER.host, ATTACKER.port)
    top = parse_message(answer.data).top_via
    assert (top.received, top.rport) == (ATTACKER.host, ATTACKER.port)
    # Without rport, received is still overwritten: the host is the source's.
    data = request("OPTIONS", branch="z9hG4bKw", via="SIP/2.0/UDP 192.0.2.10:5062;received=192.0.2.99")
    [answer] = transmits(sip.receive(parse_message(data), ATTACKER, 0.0))
    assert answer.host == ATTACKER.host


def test_a_400_for_an_unparsable_request_goes_to_the_source_not_to_its_via() -> None:
    data = request("INVITE", branch="z9hG4bKp",
                   via="SIP/2.0/UDP 192.0.2.10:5062;received=192.0.2.99;rport=9")
    data = data.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    try:
        parse_message(data)
    except SipMessageError as exc:
        error = exc
    else:
        raise AssertionError("the request should not parse")
    [answer] = core().parse_failed(error, ATTACKER, 0.0)
    assert answer.data.startswith(b"SIP/2.0 400 ")
    assert (answer.host, answer.port) == (ATTACKER.host, ATTACKER.port)


def test_in_dialog_requests_keep_a_reserve_of_the_table() -> None:
    layer = TransactionLayer(max_transactions=8, reserved_in_dialog=3, max_per_source=8)
    for n in range(5):
        source = Source("udp", f"192.0.2.{n + 1}", 5060)
        data = request("INVITE", branch=f"z9hG4bKn{n}", call_id=f"n{n}")
        assert not isinstance(layer.receive_request(parse_message(data), source, 0.0)[-1],
                              Overloaded)
    extra = request("INVITE", branch="z9hG4bKn9", call_id="n9")
    [refused] = layer.receive_request(parse_message(extra), Source("udp", "192.0.2.9", 1), 0.0)
    assert isinstance(refused, Overloaded)
    bye = request("BYE", branch="z9hG4bKb", call_id="n0", to_tag="t1")
    assert not isinstance(layer.receive_request(parse_message(bye), SRC, 0.0)[-1], Overloaded)


def test_one_source_holds_at_most_its_share_of_new_transactions() -> None:
    layer = TransactionLayer(max_transactions=100, max_per_source=3)
    results = [layer.receive_request(parse_message(request("INVITE", branch=f"z9hG4bKs{n}",
                                                            call_id=f"s{n}")), ATTACKER, 0.0)
               for n in range(4)]
    assert [isinstance(r[-1], Overloaded) for r in results] == [False, False, False, True]
    other = request("INVITE", branch="z9hG4bKo", call_id="o")
    assert not isinstance(layer.receive_request(parse_message(other), SRC, 0.0)[-1], Overloaded)
