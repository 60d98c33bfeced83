"""SipRequest/SipResponse views, serialisation and the RFC 3261 §8.2.6 / §8.1.1 builders."""

from __future__ import annotations

import pytest

from srs.errors import SipParseError, UsageError
from srs.sip.headers import ContentType, CSeq, Headers, Via
from srs.sip.message import (
    SipRequest,
    SipResponse,
    build_request,
    build_response,
    reason_phrase,
)
from srs.sip.uri import NameAddr, SipUri

INVITE_HEADERS = [
    (
        "Via",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb",
    ),
    ("Via", "SIP/2.0/TCP 192.0.2.8;branch=z9hG4bKc"),
    ("Record-Route", "<sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>"),
    ("From", '"Caller" <sip:caller@example.com>;tag=abc'),
    ("To", "<sip:srs@example.net>"),
    ("Call-ID", "c1@0.0.0.0"),
    ("CSeq", "1 INVITE"),
    ("Contact", "<sip:src@10.0.0.5:5060>;+sip.src"),
    ("Require", "siprec"),
    ("Supported", "timer, replaces"),
    ("Timestamp", "54"),
]


def _invite(body: bytes = b"v=0\r\n") -> SipRequest:
    return build_request(
        "INVITE",
        "sip:srs@example.net",
        headers=INVITE_HEADERS,
        body=body,
        content_type="application/sdp",
    )


def test_request_views() -> None:
    req = _invite()
    assert req.call_id == "c1@0.0.0.0"
    assert req.cseq == CSeq(1, "INVITE")
    assert req.from_.tag == "abc" and req.from_.display_name == "Caller"
    assert req.to == NameAddr(SipUri("sip", "example.net", "srs"))
    assert [v.branch for v in req.vias] == ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
    assert req.top_via.rport is True
    assert req.content_type == ContentType("application/sdp")
    assert req.contact is not None and req.contact.has_param("+sip.src")
    assert [str(r.uri) for r in req.record_route] == [
        "sip:edge1.example.com;lr",
        "sip:edge2.example.com;lr",
    ]
    assert req.route == () and req.require == ("siprec",) and req.supported == ("timer", "replaces")
    assert req.max_forwards == 70
    assert len(req.contacts) == 1


def test_views_name_the_missing_or_bad_header() -> None:
    bare = SipRequest("OPTIONS", SipUri("sip", "h"))
    for attribute, reason in [
        ("call_id", "missing Call-ID"),
        ("cseq", "missing CSeq"),
        ("from_", "missing From"),
        ("to", "missing To"),
        ("top_via", "missing Via"),
    ]:
        with pytest.raises(SipParseError) as info:
            getattr(bare, attribute)
        assert info.value.reason == reason
    assert bare.content_type is None and bare.contact is None and bare.max_forwards is None
    bad = SipRequest(
        "OPTIONS",
        SipUri("sip", "h"),
        headers=Headers(
            (
                ("CSeq", "x OPTIONS"),
                ("From", "<sip:a"),
                ("Via", "nonsense"),
                ("Contact", "<x"),
                ("Content-Type", "text"),
                ("Max-Forwards", "256"),
                ("Record-Route", "<sip:a;;>"),
            )
        ),
    )
    for attribute, reason in [
        ("cseq", "bad CSeq"),
        ("from_", "bad From"),
        ("top_via", "bad Via"),
        ("vias", "bad Via"),
        ("contact", "bad Contact"),
        ("contacts", "bad Contact"),
        ("content_type", "bad Content-Type"),
        ("max_forwards", "bad Max-Forwards"),
        ("record_route", "bad Record-Route"),
    ]:
        with pytest.raises(SipParseError) as info:
            getattr(bad, attribute)
        assert info.value.reason == reason


def test_bytes_always_carries_the_real_content_length() -> None:
    req = SipRequest(
        "MESSAGE",
        SipUri("sip", "h"),
        headers=Headers((("l", "999"), ("Call-ID", "x"), ("Content-Length", "3"))),
        body=b"hello",
    )
    assert bytes(req) == b"MESSAGE sip:h SIP/2.0\r\nl: 5\r\nCall-ID: x\r\n\r\nhello"
    resp = SipResponse(200, "OK", headers=Headers((("Call-ID", "x"),)))
    assert bytes(resp) == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_invalid_utf8_survives_serialisation() -> None:
    value = b"\xff\xfeok".decode("utf-8", "surrogateescape")
    resp = SipResponse(200, "OK", headers=Headers((("X-Raw", value),)))
    assert b"X-Raw: \xff\xfeok\r\n" in bytes(resp)


def test_build_response_to_invite_with_tag_and_record_route() -> None:
    resp = build_response(
        _invite(),
        200,
        to_tag="srs1",
        extra_headers=[("Contact", "<sip:srs@192.0.2.50>")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert bytes(resp) == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.8;branch=z9hG4bKc\r\n"
        b'From: "Caller" <sip:caller@example.com>;tag=abc\r\n'
        b"To: <sip:srs@example.net>;tag=srs1\r\n"
        b"Call-ID: c1@0.0.0.0\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Record-Route: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\r\n"
        b"Contact: <sip:srs@192.0.2.50>\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
    assert resp.to.tag == "srs1" and resp.cseq == CSeq(1, "INVITE")


def test_build_response_error_and_trying() -> None:
    busy = build_response(_invite(), 486, to_tag="t")
    assert busy.reason == "Busy Here" and "Record-Route" not in busy.headers
    trying = build_response(_invite(), 100)
    assert trying.headers.get("Timestamp") == "54" and trying.to.tag is None
    assert build_response(_invite(), 200).headers.get("Timestamp") is None
    tagged = build_response(
        build_request(
            "BYE",
            "sip:h",
            headers=[
                ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
                ("From", "<sip:a@h>;tag=1"),
                ("To", "<sip:b@h>;tag=existing"),
                ("Call-ID", "c"),
                ("CSeq", "2 BYE"),
            ],
        ),
        200,
        to_tag="new",
    )
    assert tagged.to.tag == "existing"
    assert build_response(_invite(), 499, "Custom Phrase").reason == "Custom Phrase"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "status out of range"),
        ({"status": 700}, "status out of range"),
        ({"status": 400, "reason": "a\r\nb"}, "CR or LF"),
        ({"status": 200, "body": b"x"}, "content_type"),
    ],
)
def test_build_response_misuse(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_response(_invite(), **kwargs)  # type: ignore[arg-type]


def test_build_response_needs_the_request_headers() -> None:
    with pytest.raises(UsageError, match="request has no From"):
        build_response(SipRequest("BYE", SipUri("sip", "h")), 200)


def test_build_request_defaults_and_misuse() -> None:
    bye = build_request(
        "BYE",
        SipUri("sip", "10.0.0.5", "src", port=5060),
        headers=[
            ("Via", "SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKbye"),
            ("Route", "<sip:edge1.example.com;lr>"),
            ("From", "<sip:srs@example.net>;tag=srs1"),
            ("To", "<sip:caller@example.com>;tag=abc"),
            ("Call-ID", "c1@0.0.0.0"),
            ("CSeq", "2 BYE"),
        ],
    )
    assert bytes(bye).startswith(b"BYE sip:src@10.0.0.5:5060 SIP/2.0\r\n")
    assert bye.max_forwards == 70 and bye.headers.get("Content-Length") == "0"
    with pytest.raises(UsageError, match="needs a Call-ID"):
        build_request(
            "BYE", "sip:h", headers=[("Via", "x"), ("From", "x"), ("To", "x"), ("CSeq", "1 BYE")]
        )
    with pytest.raises(UsageError, match="not a token"):
        build_request("B YE", "sip:h", headers=INVITE_HEADERS)
    with pytest.raises(UsageError, match="content_type"):
        build_request("MESSAGE", "sip:h", headers=INVITE_HEADERS, body=b"x")


def test_with_top_via_rewrites_only_the_first_value() -> None:
    req = _invite()
    updated = req.with_top_via(req.top_via.with_param("received", "203.0.113.9"))
    assert updated.headers.get_all("Via") == [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport;received=203.0.113.9",
        "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb",
        "SIP/2.0/TCP 192.0.2.8;branch=z9hG4bKc",
    ]
    assert updated.top_via.received == "203.0.113.9" and req.top_via.received is None
    with pytest.raises(UsageError):
        SipRequest("BYE", SipUri("sip", "h")).with_top_via(Via("UDP", "h"))


def test_reason_phrase_table_and_fallback() -> None:
    assert reason_phrase(481) == "Call/Transaction Does Not Exist"
    assert reason_phrase(299) == "Success" and reason_phrase(799) == "Unknown"
