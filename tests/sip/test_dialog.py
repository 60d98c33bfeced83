"""UAS dialogs (RFC 3261 §12): creation, matching, CSeq order, route sets, our requests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import CallDoesNotExist, PeerError, ServiceUnavailable, SipParseError, UsageError
from srs.sip.dialog import (
    MAX_ROUTE_SET,
    Dialog,
    DialogId,
    DialogSet,
    OutOfOrderRequest,
    new_tag,
)
from srs.sip.headers import Via
from srs.sip.message import SipRequest
from srs.sip.parser import parse_message
from srs.sip.transaction import MAGIC_COOKIE
from srs.sip.uri import NameAddr, SipUri

OUR_VIA = Via("UDP", "198.51.100.5", 5060)
LOCAL_TAG = "a1b2c3d4e5f60718"


def parse(text: str) -> SipRequest:
    """A request through the wire parser, from test text with ``\n`` line ends."""
    message = parse_message(text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n")
    assert isinstance(message, SipRequest)
    return message


# Shaped like Twilio's <Siprec> INVITE (INTEROP.md): two Record-Route headers from its edge,
# a private-address Contact, a Call-ID ending in @0.0.0.0.
TWILIO_INVITE = parse(
    """
INVITE sip:srs@198.51.100.5:5060 SIP/2.0
Via: SIP/2.0/UDP 54.172.60.1:5060;branch=z9hG4bK7a1c.0f2e9b3d6a6f1e1c5d2a;rport
Via: SIP/2.0/UDP 172.18.3.4:5060;rport=5060;branch=z9hG4bKf1e2d3c4
Record-Route: <sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a>
Record-Route: <sip:172.18.3.4:5060;transport=udp;lr;r2=on;ftag=9d8c7b6a>
Max-Forwards: 69
From: <sip:+15550100@twilio.example>;tag=9d8c7b6a
To: <sip:srs@198.51.100.5:5060>
Call-ID: 4f1c9a7e2b3d4c5e8f90a1b2c3d4e5f6@0.0.0.0
CSeq: 1 INVITE
Contact: <sip:+15550100@172.18.10.20:5060;transport=udp>;+sip.src
User-Agent: Twilio Gateway
X-Twilio-CallSid: CA0123456789abcdef0123456789abcdef
"""
)


def in_dialog(
    method: str,
    cseq: int,
    *,
    to_tag: str | None = LOCAL_TAG,
    from_tag: str | None = "9d8c7b6a",
    call_id: str = "4f1c9a7e2b3d4c5e8f90a1b2c3d4e5f6@0.0.0.0",
    contact: str | None = None,
    cseq_method: str | None = None,
) -> SipRequest:
    to = "<sip:srs@198.51.100.5:5060>" + (f";tag={to_tag}" if to_tag else "")
    from_ = "<sip:+15550100@twilio.example>" + (f";tag={from_tag}" if from_tag else "")
    contact_line = f"\nContact: {contact}" if contact else ""
    return parse(
        f"""
{method} sip:srs@198.51.100.5:5060 SIP/2.0
Via: SIP/2.0/UDP 54.172.60.1:5060;branch=z9hG4bK-{method}-{cseq}
From: {from_}
To: {to}
Call-ID: {call_id}
CSeq: {cseq} {cseq_method or method}{contact_line}
"""
    )


def invite_with(*, remove: str = "", add: tuple[tuple[str, str], ...] = ()) -> SipRequest:
    headers = TWILIO_INVITE.headers
    if remove:
        headers = headers.remove(remove)
    for name, value in add:
        headers = headers.add(name, value)
    return TWILIO_INVITE.with_headers(headers)


def header_lines(request: SipRequest, name: str) -> list[str]:
    return [v for n, v in request.headers.items() if n.lower() == name.lower()]


# -- creation (RFC 3261 §12.1.1) ---------------------------------------------------------


def test_twilio_invite_creates_dialog_with_route_set_in_order() -> None:
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    assert dialog.id == DialogId("4f1c9a7e2b3d4c5e8f90a1b2c3d4e5f6@0.0.0.0", LOCAL_TAG, "9d8c7b6a")
    assert str(dialog.remote_target) == "sip:+15550100@172.18.10.20:5060;transport=udp"
    assert [str(u) for u in dialog.route_set] == [
        "sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a",
        "sip:172.18.3.4:5060;transport=udp;lr;r2=on;ftag=9d8c7b6a",
    ]
    assert dialog.remote_cseq == 1 and dialog.local_cseq is None
    assert str(dialog.local) == f"<sip:srs@198.51.100.5:5060>;tag={LOCAL_TAG}"
    assert str(dialog.remote) == "<sip:+15550100@twilio.example>;tag=9d8c7b6a"
    assert dialog.secure is False
    assert str(dialog.next_hop) == "sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a"


def test_twilio_bye_goes_to_first_route_with_contact_as_request_uri() -> None:
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    bye = dialog.create_request("BYE", via=OUR_VIA)
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:+15550100@172.18.10.20:5060;transport=udp"
    assert header_lines(bye, "Route") == [
        "<sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a>",
        "<sip:172.18.3.4:5060;transport=udp;lr;r2=on;ftag=9d8c7b6a>",
    ]
    assert str(dialog.next_hop) == "sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a"
    assert bye.headers.get("From") == f"<sip:srs@198.51.100.5:5060>;tag={LOCAL_TAG}"
    assert bye.headers.get("To") == "<sip:+15550100@twilio.example>;tag=9d8c7b6a"
    assert bye.call_id == "4f1c9a7e2b3d4c5e8f90a1b2c3d4e5f6@0.0.0.0"
    assert str(bye.cseq) == "1 BYE"
    assert bye.max_forwards == 70
    via = bye.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "198.51.100.5", 5060)
    assert via.branch is not None and via.branch.startswith(MAGIC_COOKIE)
    wire = bytes(bye)
    assert wire.startswith(b"BYE sip:+15550100@172.18.10.20:5060;transport=udp SIP/2.0\r\n")
    assert b"\r\nContent-Length: 0\r\n\r\n" in wire
    assert dialog.local_cseq == 1


def test_our_cseq_counts_up_and_each_request_has_a_new_branch() -> None:
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    first = dialog.create_request("OPTIONS", via=OUR_VIA)
    second = dialog.create_request("BYE", via=OUR_VIA)
    assert (first.cseq.number, second.cseq.number) == (1, 2)
    assert first.top_via.branch != second.top_via.branch


def test_create_request_with_contact_headers_and_body() -> None:
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    contact = NameAddr.parse("<sip:srs@198.51.100.5:5060>")
    request = dialog.create_request(
        "INFO",
        via=OUR_VIA,
        contact=contact,
        extra_headers=[("Reason", 'SIP;cause=200;text="done"')],
        body=b"hello",
        content_type="text/plain",
    )
    assert request.headers.get("Contact") == "<sip:srs@198.51.100.5:5060>"
    assert request.headers.get("Reason") == 'SIP;cause=200;text="done"'
    assert request.headers.get("Content-Type") == "text/plain"
    assert request.body == b"hello"
    assert request.headers.get("Content-Length") == "5"


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_not_built_by_the_dialog(method: str) -> None:
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    with pytest.raises(UsageError):
        dialog.create_request(method, via=OUR_VIA)
    assert dialog.local_cseq is None


def test_single_record_route_header_with_two_values() -> None:
    invite = invite_with(remove="Record-Route").with_headers(
        invite_with(remove="Record-Route").headers.add(
            "Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"
        )
    )
    dialog = Dialog.from_invite(invite, LOCAL_TAG)
    assert [str(u) for u in dialog.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]


def test_no_record_route_sends_straight_to_contact() -> None:
    dialog = Dialog.from_invite(invite_with(remove="Record-Route"), LOCAL_TAG)
    bye = dialog.create_request("BYE", via=OUR_VIA)
    assert dialog.route_set == ()
    assert header_lines(bye, "Route") == []
    assert str(bye.uri) == str(dialog.next_hop) == "sip:+15550100@172.18.10.20:5060;transport=udp"


def test_strict_router_takes_the_request_uri() -> None:
    invite = invite_with(
        remove="Record-Route",
        add=(
            ("Record-Route", "<sip:old.example;method=INVITE;maddr=10.0.0.1?X-H=1>"),
            ("Record-Route", "<sip:p2.example;lr>"),
        ),
    )
    dialog = Dialog.from_invite(invite, LOCAL_TAG)
    bye = dialog.create_request("BYE", via=OUR_VIA)
    # RFC 3261 §12.2.1.1: first route into the Request-URI (method and headers stripped),
    # the rest of the route set and then the remote target as Route.
    assert str(bye.uri) == "sip:old.example;maddr=10.0.0.1"
    assert header_lines(bye, "Route") == [
        "<sip:p2.example;lr>",
        "<sip:+15550100@172.18.10.20:5060;transport=udp>",
    ]
    assert str(dialog.next_hop) == "sip:old.example;method=INVITE;maddr=10.0.0.1?X-H=1"


def test_secure_only_over_tls_with_sips_request_uri() -> None:
    sips = reparsed(TWILIO_INVITE, b"INVITE sip:", b"INVITE sips:")
    assert Dialog.from_invite(sips, LOCAL_TAG, secure_transport=True).secure is True
    assert Dialog.from_invite(sips, LOCAL_TAG, secure_transport=False).secure is False
    assert Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG, secure_transport=True).secure is False


def reparsed(request: SipRequest, old: bytes, new: bytes) -> SipRequest:
    """``request`` serialised, edited and parsed again (a wire round trip)."""
    message = parse_message(bytes(request).replace(old, new, 1))
    assert isinstance(message, SipRequest)
    return message


def test_rfc2543_peer_without_from_tag() -> None:
    invite = reparsed(TWILIO_INVITE, b"twilio.example>;tag=9d8c7b6a", b"twilio.example>")
    dialog = Dialog.from_invite(invite, LOCAL_TAG)
    assert dialog.id.remote_tag == ""
    bye = dialog.create_request("BYE", via=OUR_VIA)
    assert bye.headers.get("To") == "<sip:+15550100@twilio.example>"
    dialogs = DialogSet()
    dialogs.add(dialog)
    assert dialogs.match(in_dialog("BYE", 2, from_tag=None)) is dialog


@pytest.mark.parametrize(
    ("invite", "reason"),
    [
        (
            invite_with(remove="Contact", add=(("Contact", "<tel:+15550100>"),)),
            "Contact is not a SIP URI",
        ),
        (invite_with(remove="Contact", add=(("Contact", "sip:a@b;x=<"),)), "bad Contact"),
        (invite_with(add=(("Record-Route", "<tel:+15550100>"),)), "Record-Route is not a SIP URI"),
        (
            invite_with(
                add=tuple(("Record-Route", f"<sip:p{i}.example;lr>") for i in range(MAX_ROUTE_SET))
            ),
            "too many Record-Route entries",
        ),
        (invite_with(remove="Call-ID"), "missing Call-ID"),
        (invite_with(remove="From"), "missing From"),
    ],
)
def test_invalid_invites_are_400(invite: SipRequest, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        Dialog.from_invite(invite, LOCAL_TAG)
    assert info.value.reason == reason
    assert info.value.status == 400


def test_rfc2543_invite_without_contact_targets_the_from_uri() -> None:
    # RFC 4475 §3.4.1: RFC 2543 clients send no Contact; their From URI is all we have.
    dialog = Dialog.from_invite(invite_with(remove="Contact"), LOCAL_TAG)
    assert dialog.remote_target == dialog.remote.uri


def test_misuse_of_from_invite() -> None:
    with pytest.raises(UsageError):
        Dialog.from_invite(in_dialog("BYE", 2, to_tag=None), LOCAL_TAG)
    with pytest.raises(UsageError):
        Dialog.from_invite(in_dialog("INVITE", 2), LOCAL_TAG)  # already has a To tag
    with pytest.raises(UsageError):
        Dialog.from_invite(TWILIO_INVITE, "")


def test_new_tag_has_64_random_bits() -> None:
    tags = {new_tag() for _ in range(100)}
    assert len(tags) == 100
    for tag in tags:
        assert len(tag) == 16
        int(tag, 16)


# -- matching and order (RFC 3261 §12.2.2) -----------------------------------------------


def make_set(max_dialogs: int = 4096) -> tuple[DialogSet, Dialog]:
    dialogs = DialogSet(max_dialogs=max_dialogs)
    dialog = Dialog.from_invite(TWILIO_INVITE, LOCAL_TAG)
    dialogs.add(dialog)
    return dialogs, dialog


def test_match_finds_the_dialog_by_call_id_and_both_tags() -> None:
    dialogs, dialog = make_set()
    assert dialogs.match(in_dialog("BYE", 2)) is dialog
    assert dialog.id in dialogs and len(dialogs) == 1
    assert list(dialogs) == [dialog]
    assert dialogs.get(dialog.id) is dialog


@pytest.mark.parametrize(
    "request_",
    [
        in_dialog("BYE", 2, to_tag="other"),
        in_dialog("BYE", 2, from_tag="other"),
        in_dialog("BYE", 2, call_id="other@0.0.0.0"),
        in_dialog("BYE", 2, to_tag=None),
        in_dialog("BYE", 2, to_tag=LOCAL_TAG.upper()),  # tags compare exactly
    ],
)
def test_unknown_dialog_is_481(request_: SipRequest) -> None:
    dialogs, _ = make_set()
    with pytest.raises(CallDoesNotExist) as info:
        dialogs.match(request_)
    assert info.value.status == 481
    assert info.value.reason == "no such dialog"


def test_cseq_lower_than_last_is_500_and_leaves_state_alone() -> None:
    _, dialog = make_set()
    dialog.receive_request(in_dialog("OPTIONS", 5))
    assert dialog.remote_cseq == 5
    with pytest.raises(OutOfOrderRequest) as info:
        dialog.receive_request(in_dialog("BYE", 4))
    assert info.value.status == 500
    assert info.value.reason == "CSeq 4 is below 5"
    assert isinstance(info.value, PeerError)
    assert dialog.remote_cseq == 5
    dialog.receive_request(in_dialog("INFO", 5))  # equal is not lower (§12.2.2)
    dialog.receive_request(in_dialog("ACK", 1))  # ACK carries the INVITE's number
    dialog.receive_request(in_dialog("CANCEL", 1))
    assert dialog.remote_cseq == 5


def test_receive_request_of_another_dialog_is_misuse() -> None:
    _, dialog = make_set()
    with pytest.raises(UsageError):
        dialog.receive_request(in_dialog("BYE", 2, to_tag="other"))


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_target_refresh_moves_remote_target(method: str) -> None:
    _, dialog = make_set()
    dialog.receive_request(in_dialog(method, 2, contact="<sip:+15550100@172.18.10.21:5070>"))
    assert str(dialog.remote_target) == "sip:+15550100@172.18.10.21:5070"
    bye = dialog.create_request("BYE", via=OUR_VIA)
    assert str(bye.uri) == "sip:+15550100@172.18.10.21:5070"
    assert str(dialog.next_hop) == "sip:54.172.60.1:5060;lr;r2=on;ftag=9d8c7b6a"  # route set stays


def test_non_refresh_request_and_refresh_without_contact_keep_target() -> None:
    _, dialog = make_set()
    dialog.receive_request(in_dialog("OPTIONS", 2, contact="<sip:elsewhere.example>"))
    dialog.receive_request(in_dialog("INVITE", 3))
    assert str(dialog.remote_target) == "sip:+15550100@172.18.10.20:5060;transport=udp"


def test_refresh_with_bad_contact_is_400_and_changes_nothing() -> None:
    _, dialog = make_set()
    with pytest.raises(SipParseError) as info:
        dialog.receive_request(in_dialog("INVITE", 2, contact="<tel:+15550100>"))
    assert info.value.reason == "Contact is not a SIP URI"
    assert dialog.remote_cseq == 1
    assert isinstance(dialog.remote_target, SipUri)


# -- the set -----------------------------------------------------------------------------


def test_dialog_set_is_bounded_with_503() -> None:
    dialogs, dialog = make_set(max_dialogs=1)
    other = Dialog.from_invite(TWILIO_INVITE, "ffff0000ffff0000")
    with pytest.raises(ServiceUnavailable) as info:
        dialogs.add(other)
    assert info.value.status == 503
    assert dialogs.remove(dialog.id) is dialog
    assert dialogs.remove(dialog.id) is None
    dialogs.add(other)
    assert len(dialogs) == 1


def test_dialog_set_misuse() -> None:
    dialogs, dialog = make_set()
    with pytest.raises(UsageError):
        dialogs.add(dialog)
    with pytest.raises(UsageError):
        DialogSet(max_dialogs=0)


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.integers(min_value=1, max_value=2**31 - 1), max_size=20))
def test_cseq_order_property(numbers: list[int]) -> None:
    _, dialog = make_set()
    highest = 1
    for number in numbers:
        request = in_dialog("INFO", number)
        if number < highest:
            with pytest.raises(OutOfOrderRequest):
                dialog.receive_request(request)
        else:
            dialog.receive_request(request)
            highest = number
        assert dialog.remote_cseq == highest
