"""RFC 4475 §3 torture messages (tests/data/rfc4475, see its README for the expected outcomes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from srs.sip.headers import ContentType, CSeq, Via
from srs.sip.message import SipMessage, SipRequest, SipResponse
from srs.sip.parser import SipMessageError, StreamParser, build_error_response, parse_message
from srs.sip.uri import AbsoluteUri, NameAddr, SipUri

DATA = Path(__file__).parent.parent / "data" / "rfc4475"

VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
]
# §3.1.2 messages the RFC lets an element accept; srs does (README explains each).
ACCEPTED_INVALID = ["lwsstart", "trws", "baddate"]
# §3.2-§3.4 messages that parse; the server layer decides the response.
PARSED_FOR_SERVER = [
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
]
# name -> (reason, status, is_request)
REJECTED = {
    "badinv01": ("bad Via", 400, True),
    "clerr": ("Content-Length exceeds datagram", 400, True),
    "ncl": ("bad Content-Length", 400, True),
    "scalar02": ("bad CSeq", 400, True),
    "scalarlg": ("bad CSeq", 400, False),
    "quotbal": ("bad To", 400, True),
    "ltgtruri": ("bad Request-URI", 400, True),
    "lwsruri": ("bad request line", 400, True),
    "escruri": ("bad Request-URI: headers not allowed", 400, True),
    "regbadct": ("bad Contact", 400, True),
    "badaspec": ("bad To", 400, True),
    "baddn": ("bad From", 400, True),
    "badvers": ("Version Not Supported", 505, True),
    "mismatch01": ("CSeq method does not match request method", 400, True),
    "mismatch02": ("CSeq method does not match request method", 400, True),
    "bigcode": ("bad status code", 400, False),
    "insuf": ("missing From", 400, True),
    "multi01": ("multiple To headers", 400, True),
    "mcl01": ("multiple Content-Length headers", 400, True),
}


def _load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def _parse(name: str) -> SipMessage:
    return parse_message(_load(name))


def test_every_file_is_classified_and_documented() -> None:
    names = {p.stem for p in DATA.glob("*.dat")}
    classified = set(VALID) | set(ACCEPTED_INVALID) | set(PARSED_FOR_SERVER) | set(REJECTED)
    assert names == classified and len(names) == 49
    readme = (DATA / "README.md").read_text()
    assert all(f"| {name} |" in readme for name in names)


@pytest.mark.parametrize("name", VALID + ACCEPTED_INVALID + PARSED_FOR_SERVER)
def test_parses_and_serialises_to_a_fixed_point(name: str) -> None:
    msg = _parse(name)
    again = parse_message(bytes(msg))
    assert again == msg or name == "inv2543"  # inv2543 has no Content-Length until serialised
    assert bytes(again) == bytes(msg)
    if name != "dblreq":  # dblreq is two messages in one datagram: not a stream
        assert StreamParser().feed(bytes(msg)) == [again]


@pytest.mark.parametrize("name", VALID)
def test_valid_body_length_matches_content_length(name: str) -> None:
    data = _load(name)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"\r\n(?:Content-Length|l|L) *: *(\d+)", head).group(1))  # type: ignore[union-attr]
    assert len(body) == length or name == "dblreq"


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name: str) -> None:
    reason, status, is_request = REJECTED[name]
    with pytest.raises(SipMessageError) as info:
        _parse(name)
    error = info.value
    assert (error.reason, error.status, error.is_request) == (reason, status, is_request)
    response = build_error_response(error, to_tag="t0")
    if not is_request:
        assert response is None
        return
    assert response is not None and (response.status, response.reason) == (status, reason)
    assert response.headers.get("Call-ID") == (None if name == "insuf" else _call_id(name))
    # Via is copied raw even when it is the broken header: the transport answers the source.
    assert (
        response.headers.get("Via")
        == re.search(rb"\r\nVia: *([^\r]+)", _load(name)).group(1).decode()
    )  # type: ignore[union-attr]


def _call_id(name: str) -> str | None:
    match = re.search(rb"\r\n(?:Call-ID|i): *([^\r]+)", _load(name))
    return match.group(1).decode() if match else None


def test_wsinv() -> None:
    msg = _parse("wsinv")
    assert isinstance(msg, SipRequest)
    assert msg.uri == SipUri(
        "sip", "chair-dnrc.example.com", "vivekg", params=(("unknownparam", None),)
    )
    assert msg.to == NameAddr(
        SipUri("sip", "chair-dnrc.example.com", "vivekg"), None, (("tag", "1918181833n"),)
    )
    assert msg.from_.display_name == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68 and msg.cseq == CSeq(9, "INVITE")
    assert msg.vias == (
        Via("UDP", "192.0.2.2", None, (("branch", "390skdjuw"),)),
        Via("TCP", "spindle.example.com", None, (("branch", "z9hG4bK9ikj8"),)),
        Via("UDP", "192.168.255.111", None, (("branch", "z9hG4bK30239"),)),
    )
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = msg.contact
    assert contact is not None and contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert [str(r.uri) for r in msg.route] == [
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    ]
    assert msg.content_type == ContentType("application/sdp") and len(msg.body) == 150


def test_intmeth() -> None:
    msg = _parse("intmeth")
    assert (
        isinstance(msg, SipRequest) and msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    )
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~" and msg.max_forwards == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_kept_raw() -> None:
    esc01 = _parse("esc01")
    assert isinstance(esc01, SipRequest) and isinstance(esc01.uri, SipUri)
    assert esc01.uri.user == "sips%3Auser%40example.com" and esc01.uri.host == "example.net"
    assert esc01.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert esc01.contact is not None
    assert esc01.contact.uri == SipUri(
        "sip",
        "host5.example.net",
        "cal%6Cer",
        params=(("%6C%72", None), ("n%61me", "v%61lue%25%34%31")),
    )
    escnull = _parse("escnull")
    assert [str(c.uri) for c in escnull.contacts] == [
        "sip:%00@host5.example.com",
        "sip:%00%00@host5.example.com",
    ]
    esc02 = _parse("esc02")
    assert isinstance(esc02, SipRequest) and esc02.method == "RE%47IST%45R"
    assert esc02.to.display_name == "%Z%45"
    assert [str(c.uri) for c in esc02.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_long_and_odd_requests() -> None:
    assert _parse("lwsdisp").from_.display_name == "caller"
    longreq = _parse("longreq")
    assert len(longreq.vias) == 34 and longreq.vias[0].host == "sip33.example.com"
    assert longreq.vias[-1].received == "192.0.2.5" and longreq.to.uri.port == 6000  # type: ignore[union-attr]
    assert longreq.from_.tag == "12" + "982" * 50 + "424"
    dblreq = _parse("dblreq")
    assert isinstance(dblreq, SipRequest) and dblreq.method == "REGISTER" and dblreq.body == b""
    semiuri = _parse("semiuri")
    assert isinstance(semiuri, SipRequest) and isinstance(semiuri.uri, SipUri)
    assert semiuri.uri.user == "user;par=u%40example.net"
    assert semiuri.headers.get_all("Accept")[-1] == "message/sipfrag"
    assert [v.transport for v in _parse("transports").vias] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]
    mpart = _parse("mpart01")
    assert mpart.content_type is not None and mpart.content_type.boundary == "7a9cbec02ceef655"
    assert len(mpart.body) == 553 and b"\x00" in mpart.body and mpart.top_via.rport is True


def test_responses() -> None:
    unreason = _parse("unreason")
    assert isinstance(unreason, SipResponse) and unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = _parse("noreason")
    assert isinstance(noreason, SipResponse) and (noreason.status, noreason.reason) == (100, "")
    bcast = _parse("bcast")
    assert bcast.vias[1].host == "255.255.255.255"


def test_messages_for_the_server_layer() -> None:
    unkscm = _parse("unkscm")
    assert isinstance(unkscm, SipRequest)
    assert unkscm.uri == AbsoluteUri(
        "nobodyknowsthisscheme", "nobodyKnowsThisScheme:totallyopaquecontent"
    )
    novelsc = _parse("novelsc")
    assert isinstance(novelsc, SipRequest) and novelsc.uri == AbsoluteUri(
        "soap.beep", "soap.beep://192.0.2.103:3002"
    )
    unksm2 = _parse("unksm2")
    assert unksm2.to.uri == AbsoluteUri("isbn", "isbn:2983792873")
    assert unksm2.from_.uri == AbsoluteUri("http", "http://www.example.com")
    assert _parse("bext01").require == ("nothingSupportsThis", "nothingSupportsThisEither")
    assert _parse("invut").content_type == ContentType("application/unknownformat")
    assert _parse("zeromf").max_forwards == 0
    assert _parse("badbranch").top_via.branch == "z9hG4bK"
    regescrt = _parse("regescrt").contact
    assert regescrt is not None and isinstance(regescrt.uri, SipUri)
    assert regescrt.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert _parse("sdp01").headers.get("Accept") == "text/nobodyKnowsThis"
    inv2543 = _parse("inv2543")
    assert inv2543.max_forwards is None and inv2543.from_.tag is None and len(inv2543.body) == 105
    assert inv2543.to.params == (("user", "phone"),)
