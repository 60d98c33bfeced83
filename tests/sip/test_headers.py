"""Headers multimap and the typed header values (Via, CSeq, ContentType)."""

from __future__ import annotations

import pytest

from srs.errors import SipParseError, UsageError
from srs.sip.headers import (
    ContentType,
    CSeq,
    Headers,
    Via,
    canonical_name,
    parse_params,
    split_values,
)


def _headers() -> Headers:
    return Headers(
        (
            ("v", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com"),
            ("Via", "SIP/2.0/UDP c.example.com"),
            ("f", "<sip:a@example.com>;tag=1"),
            ("CONTACT", '"Doe, John" <sip:j@x;a=b,c>;q=0.5, <sip:k@y>'),
            ("X-Custom", "one, two"),
            ("Subject", ""),
        )
    )


def test_get_is_case_insensitive_and_knows_compact_forms() -> None:
    h = _headers()
    assert h.get("From") == "<sip:a@example.com>;tag=1"
    assert h.get("FROM") == h.get("f")
    assert h.get("Via") == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com"
    assert h.get("Call-ID") is None
    assert h.get("Subject") == ""


def test_get_all_splits_list_headers_only() -> None:
    h = _headers()
    assert h.get_all("v") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/TCP b.example.com",
        "SIP/2.0/UDP c.example.com",
    ]
    assert h.get_all("m") == ['"Doe, John" <sip:j@x;a=b,c>;q=0.5', "<sip:k@y>"]
    # Unknown headers are never split: their grammar is unknown (RFC 4475 §3.1.1.1).
    assert h.get_all("X-Custom") == ["one, two"]
    assert h.get_all("Route") == []


def test_contains_count_items_and_len() -> None:
    h = _headers()
    assert "via" in h and "V" in h and "Route" not in h
    assert 5 not in h  # type: ignore[operator]
    assert h.count("Via") == 2
    assert h.items()[0] == (
        "v",
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com",
    )
    assert len(h) == 6 and list(h) == list(h.items())


def test_add_set_remove_return_new_values() -> None:
    h = Headers.of([("To", "<sip:b@x>"), ("Via", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b")])
    added = h.add("Max-Forwards", "70")
    assert "Max-Forwards" not in h and added.get("Max-Forwards") == "70"
    replaced = h.set("v", "SIP/2.0/TCP z")
    assert replaced.items() == (("To", "<sip:b@x>"), ("Via", "SIP/2.0/TCP z"))
    assert h.set("Require", "siprec").items()[-1] == ("Require", "siprec")
    assert h.remove("VIA").items() == (("To", "<sip:b@x>"),)
    assert str(h.remove("Via")) == "To: <sip:b@x>\r\n"


@pytest.mark.parametrize(
    ("name", "value"), [("Bad Name", "x"), ("", "x"), ("X-Ok", "a\r\nInjected: 1"), ("X-Ok", "a\n")]
)
def test_our_own_bad_fields_are_usage_errors(name: str, value: str) -> None:
    with pytest.raises(UsageError):
        Headers().add(name, value)


def test_canonical_name_expands_compact_forms() -> None:
    assert [canonical_name(n) for n in ("i", "X", "k", "Via ", "O")] == [
        "call-id",
        "session-expires",
        "supported",
        "via",
        "event",
    ]


def test_split_values_respects_quotes_escapes_and_angle_brackets() -> None:
    assert split_values('"a\\", b" <sip:x>, <sip:y;p=1,2>, ,z') == [
        '"a\\", b" <sip:x>',
        "<sip:y;p=1,2>",
        "z",
    ]


def test_parse_params_golden_and_errors() -> None:
    assert parse_params(' tag = 1 ; lr ;q=0.5;x="a;b"', what="To") == (
        ("tag", "1"),
        ("lr", None),
        ("q", "0.5"),
        ("x", '"a;b"'),
    )
    for bad in ("", "a=", 'x="open', "a b=1", 'x="a"b'):
        with pytest.raises(SipParseError, match="bad To parameter"):
            parse_params(bad, what="To")


def test_via_golden_with_lws() -> None:
    via = Via.parse(
        "SIP  /   2.0  /udp     192.0.2.2:5070 ; branch = z9hG4bK77 ;rport;received=1.2.3.4"
    )
    assert via == Via(
        "UDP",
        "192.0.2.2",
        5070,
        (("branch", "z9hG4bK77"), ("rport", None), ("received", "1.2.3.4")),
    )
    assert via.branch == "z9hG4bK77" and via.received == "1.2.3.4" and via.rport is True
    assert via.sent_by == ("192.0.2.2", 5070)
    assert str(via) == "SIP/2.0/UDP 192.0.2.2:5070;branch=z9hG4bK77;rport;received=1.2.3.4"


def test_via_ipv6_rport_value_and_with_param() -> None:
    via = Via.parse("SIP/2.0/TLS [2001:db8::1]:5061;rport=5062;branch=z9hG4bKx")
    assert via.host == "[2001:db8::1]" and via.port == 5061 and via.rport == 5062
    updated = via.with_param("rport", "40000").with_param("received", "198.51.100.7")
    assert str(updated) == (
        "SIP/2.0/TLS [2001:db8::1]:5061;rport=40000;branch=z9hG4bKx;received=198.51.100.7"
    )
    assert Via.parse("SIP/2.0/UDP h").rport is None and Via.parse("SIP/2.0/UDP h").port is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SIP/2.0 host", "bad Via"),
        ("SIP/2.0/UDP", "bad Via"),
        ("SIP/2.0/U@P host", "bad Via"),
        ("SIP/2.0/UDP ho_st", "bad Via host"),
        ("SIP/2.0/UDP [::1", "bad Via host"),
        ("SIP/2.0/UDP [zz::1]", "bad Via host"),
        ("SIP/2.0/UDP [::1]x", "bad Via host"),
        ("SIP/2.0/UDP host:70000", "bad Via port"),
        ("SIP/2.0/UDP host:5x", "bad Via port"),
        ("SIP/2.0/UDP host;;", "bad Via parameter"),
    ],
)
def test_via_invalid(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.reason == reason


def test_via_bad_rport_value() -> None:
    with pytest.raises(SipParseError, match="bad Via rport"):
        _ = Via.parse("SIP/2.0/UDP h;rport=99999").rport


def test_cseq_golden_and_bounds() -> None:
    assert CSeq.parse("0009\t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    assert CSeq.parse("2147483647 BYE").number == 2**31 - 1
    for bad in ("2147483648 BYE", "1", "x INVITE", "1 IN VITE", "-1 BYE", "1 INV@TE", "١ BYE"):  # noqa: RUF001 - a non-ASCII digit is the input under test
        with pytest.raises(SipParseError, match="bad CSeq"):
            CSeq.parse(bad)


def test_content_type_golden() -> None:
    ct = ContentType.parse('Multipart/Mixed ; boundary="uniq ue:1"; charset=utf-8')
    assert ct.media_type == "multipart/mixed"
    assert ct.boundary == "uniq ue:1" and ct.param("CHARSET") == "utf-8"
    assert ct.param("missing") is None
    assert str(ContentType.parse("application/sdp")) == "application/sdp"
    assert ContentType.parse('a/b;x="q\\"x"').param("x") == 'q"x'
    for bad in ("application", "application/", "/sdp", "app lication/sdp", "a/b;"):
        with pytest.raises(SipParseError):
            ContentType.parse(bad)
