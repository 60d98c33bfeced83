"""SIP URIs, absolute URIs and name-addr values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SipParseError
from srs.sip.uri import AbsoluteUri, NameAddr, SipUri, parse_uri


def test_sip_uri_golden() -> None:
    uri = SipUri.parse(
        "SIPS:alice:se%63ret@Example.COM:5061;transport=TLS;lr;maddr=[::1]?Subject=hi&X=y"
    )
    assert uri == SipUri(
        scheme="sips",
        host="Example.COM",
        user="alice",
        password="se%63ret",
        port=5061,
        params=(("transport", "TLS"), ("lr", None), ("maddr", "[::1]")),
        headers=(("Subject", "hi"), ("X", "y")),
    )
    assert uri.transport == "tls" and uri.lr and uri.param("MADDR") == "[::1]"
    assert uri.param("lr") is None and uri.has_param("LR") and not uri.has_param("ttl")
    assert (
        str(uri)
        == "sips:alice:se%63ret@Example.COM:5061;transport=TLS;lr;maddr=[::1]?Subject=hi&X=y"
    )


def test_sip_uri_ipv6_and_minimal() -> None:
    uri = SipUri.parse("sip:[2001:db8::10]:5070")
    assert (uri.host, uri.port, uri.user) == ("[2001:db8::10]", 5070, None)
    assert SipUri.parse("sip:example.com") == SipUri("sip", "example.com")
    assert SipUri.parse("sip:example.com").transport is None


def test_user_may_hold_semicolon_and_question_mark() -> None:
    # RFC 4475 §3.1.1.9 and §3.1.1.2: the first "@" ends the userinfo.
    assert (
        SipUri.parse("sip:user;par=u%40example.net@example.com").user == "user;par=u%40example.net"
    )
    uri = SipUri.parse("sip:a?b,c:p$w@h")
    assert (uri.user, uri.password, uri.host) == ("a?b,c", "p$w", "h")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tel:+1555", "bad SIP URI scheme"),
        ("sip", "bad SIP URI scheme"),
        ("sip:us er@h", "bad SIP URI"),
        ("sip:<u>@h", "bad SIP URI"),
        ("sip:@h", "bad SIP URI user"),
        ("sip:u%4@h", "bad SIP URI user"),
        ("sip:u%GG@h", "bad SIP URI user"),
        ("sip:u:p@ss@h", "bad SIP URI host"),
        ("sip:u:p#@h", "bad SIP URI password"),
        ("sip:h:70000", "bad SIP URI port"),
        ("sip:h:", "bad SIP URI port"),
        ("sip:", "bad SIP URI host"),
        ("sip:h;", "bad SIP URI parameter"),
        ("sip:h;a=b=c", "bad SIP URI parameter"),
        ("sip:h?x", "bad SIP URI header"),
        ("sip:h?x=a;b", "bad SIP URI header"),
    ],
)
def test_sip_uri_invalid(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.reason == reason


def test_absolute_uri_keeps_raw_text() -> None:
    assert parse_uri("tel:+1-201-555-0123;phone-context=x") == AbsoluteUri(
        "tel", "tel:+1-201-555-0123;phone-context=x"
    )
    assert str(parse_uri("URN:service:sos")) == "URN:service:sos"
    assert isinstance(parse_uri("SIP:h"), SipUri)
    for bad in ("1tel:x", "tel:", ":x", "tel:a b", "nocolon"):
        with pytest.raises(SipParseError, match="bad URI"):
            AbsoluteUri.parse(bad)


def test_name_addr_full_form() -> None:
    na = NameAddr.parse(
        '  "J Rosenberg \\\\\\""  <sip:jdrosen@example.com;lr> ; tag = 98asjd8;+sip.src '
    )
    assert na.display_name == 'J Rosenberg \\"'
    assert na.uri == SipUri("sip", "example.com", "jdrosen", params=(("lr", None),))
    assert na.params == (("tag", "98asjd8"), ("+sip.src", None))
    assert na.tag == "98asjd8" and na.has_param("+SIP.SRC") and na.param("x") is None
    assert str(na) == '"J Rosenberg \\\\\\"" <sip:jdrosen@example.com;lr>;tag=98asjd8;+sip.src'


def test_name_addr_addr_spec_params_belong_to_header() -> None:
    # RFC 3261 §20.10: without <>, ";tag" and ";user" are header parameters.
    na = NameAddr.parse("sip:+1650@ss1.example.net;user=phone;tag=z")
    assert na.uri == SipUri("sip", "ss1.example.net", "+1650")
    assert na.params == (("user", "phone"), ("tag", "z"))
    assert na.display_name is None
    assert str(na) == "<sip:+1650@ss1.example.net>;user=phone;tag=z"


def test_name_addr_token_display_and_other_schemes() -> None:
    na = NameAddr.parse("token1~` token2  <tel:+123>;tag=1")
    assert na.display_name == "token1~` token2" and na.uri == AbsoluteUri("tel", "tel:+123")
    assert NameAddr.parse("caller<sip:c@example.com>").display_name == "caller"
    assert NameAddr.parse("<sip:c@x>").with_param("tag", "t").with_param("TAG", "u").tag == "u"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"Mr. J. User <sip:j.user@example.com>', "bad URI"),
        ("<sip:a@b", "bad name-addr: unclosed <"),
        ("<sip:a@b> x", "bad name-addr: text after >"),
        ("Bell, Alexander <sip:a@b>", "bad display name"),
        ('"a" b <sip:a@b>', "bad display name"),
        ("< sip:a@b >", "bad URI"),
        ("sip:u@h?Route=x", "bad name-addr: URI with headers needs <>"),
        ("<sip:a@b>;;", "bad name-addr parameter"),
    ],
)
def test_name_addr_invalid(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        NameAddr.parse(text)
    assert info.value.reason == reason


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_escaped = st.lists(
    st.one_of(
        st.sampled_from(list("abcXYZ09-_.!~*'()&=+$,;?/")), st.sampled_from(["%00", "%41", "%7e"])
    ),
    min_size=1,
    max_size=10,
).map("".join)


@settings(max_examples=300)
@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | _escaped,
    host=st.lists(_label, min_size=1, max_size=3).map(".".join) | st.just("[2001:db8::1]"),
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_label, st.none() | _label), max_size=3),
    headers=st.lists(st.tuples(_label, _label), max_size=2),
)
def test_sip_uri_round_trip(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
    headers: list[tuple[str, str]],
) -> None:
    uri = SipUri(scheme, host, user, None, port, tuple(params), tuple(headers))
    assert SipUri.parse(str(uri)) == uri
    na = NameAddr(uri, 'Some "One"', (("tag", "x"),))
    assert NameAddr.parse(str(na)) == na
