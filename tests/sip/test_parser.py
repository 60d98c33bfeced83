"""Datagram and stream parsing, limits, error responses, and the parser's fuzz invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SipParseError
from srs.sip.message import SipRequest, SipResponse, build_request
from srs.sip.parser import (
    MAX_HEADER_FIELDS,
    SipMessageError,
    StreamParser,
    build_error_response,
    is_keepalive,
    parse_message,
)
from srs.sip.uri import AbsoluteUri

OPTIONS = (
    b"OPTIONS sip:srs@192.0.2.50 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:srs@example.net>\r\n"
    b"Call-ID: opt1\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
RESPONSE = (
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:a@h>;tag=1\r\n"
    b"To: <sip:b@h>;tag=2\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbody"
)


def _with(old: bytes, new: bytes, data: bytes = OPTIONS) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def _error(data: bytes) -> SipMessageError:
    with pytest.raises(SipMessageError) as info:
        parse_message(data)
    return info.value


def test_request_golden() -> None:
    msg = parse_message(OPTIONS)
    assert isinstance(msg, SipRequest)
    assert (msg.method, str(msg.uri), msg.version, msg.body) == (
        "OPTIONS",
        "sip:srs@192.0.2.50",
        "SIP/2.0",
        b"",
    )
    assert msg.call_id == "opt1" and msg.cseq.number == 7 and msg.top_via.branch == "z9hG4bK1"
    assert bytes(msg) == OPTIONS


def test_response_golden() -> None:
    msg = parse_message(RESPONSE)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason, msg.body) == (180, "Ringing", b"body")
    assert bytes(msg) == RESPONSE


def test_tolerances() -> None:
    # LF-only line ends (some SBCs), "Content-Length:  0" (sipp), leading CRLFs, folding.
    lf_only = parse_message(OPTIONS.replace(b"\r\n", b"\n"))
    assert lf_only.call_id == "opt1" and lf_only.body == b""
    assert (
        parse_message(_with(b"Content-Length: 0", b"Content-Length:  0 ")).headers.get("l") == "0"
    )
    assert parse_message(b"\r\n\r\n" + OPTIONS).call_id == "opt1"
    folded = parse_message(_with(b"Call-ID: opt1", b"Call-ID:\r\n  opt1"))
    assert folded.call_id == "opt1"
    assert parse_message(_with(b"Max-Forwards: 70\r\n", b"")).max_forwards is None
    assert parse_message(_with(b"Max-Forwards: 70", b"Max-Forwards: 0070")).max_forwards == 70
    assert isinstance(
        parse_message(_with(b"sip:srs@192.0.2.50", b"tel:+15550100")).uri, AbsoluteUri
    )


def test_datagram_body_framing() -> None:
    # RFC 3261 §18.3: no Content-Length on UDP -> the rest is the body; more than it -> discarded.
    no_length = _with(b"Content-Length: 0\r\n", b"") + b"abc"
    assert parse_message(no_length).body == b"abc"
    assert parse_message(OPTIONS + b"trailing junk").body == b""
    assert parse_message(_with(b"Content-Length: 0", b"Content-Length: 2") + b"abc").body == b"ab"
    assert _error(_with(b"Content-Length: 0", b"Content-Length: 4") + b"abc").reason == (
        "Content-Length exceeds datagram"
    )


@pytest.mark.parametrize(
    ("data", "reason", "status"),
    [
        (_with(b"Call-ID: opt1\r\n", b""), "missing Call-ID", 400),
        (_with(b"Call-ID: opt1", b"Call-ID: "), "missing Call-ID", 400),
        (_with(b"Call-ID: opt1", b"Call-ID: a b"), "bad Call-ID", 400),
        (_with(b"CSeq: 7 OPTIONS\r\n", b""), "missing CSeq", 400),
        (
            _with(b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE"),
            "CSeq method does not match request method",
            400,
        ),
        (_with(b"CSeq: 7 OPTIONS", b"CSeq: 2147483648 OPTIONS"), "bad CSeq", 400),
        (_with(b"From: <sip:a@example.com>;tag=1\r\n", b""), "missing From", 400),
        (_with(b"To: <sip:srs@example.net>\r\n", b""), "missing To", 400),
        (_with(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n", b""), "missing Via", 400),
        (_with(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", b"Via: "), "missing Via", 400),
        (
            _with(b"Via: SIP/2.0/UDP 192.0.2.1:5060", b"Via: SIP/2.0/UDP 192.0.2.1:99999"),
            "bad Via",
            400,
        ),
        (
            _with(b"To: <sip:srs@example.net>", b"To: <sip:srs@example.net>\r\nt: <sip:x@y>"),
            "multiple To headers",
            400,
        ),
        (_with(b"Max-Forwards: 70", b"Max-Forwards: 256"), "bad Max-Forwards", 400),
        (_with(b"Content-Length: 0", b"Content-Length: -1"), "bad Content-Length", 400),
        (
            _with(b"Content-Length: 0", b"Content-Length: 0\r\nl: 1"),
            "multiple Content-Length headers",
            400,
        ),
        (
            _with(b"Content-Length: 0", b"Content-Length: 0\r\nContent-Type: text"),
            "bad Content-Type",
            400,
        ),
        (_with(b"Content-Length: 0", b"Content-Length: 0\r\nContact: <sip:x"), "bad Contact", 400),
        (_with(b"Content-Length: 0", b"Content-Length: 0\r\nContact: *"), "bad Contact", 400),
        (_with(b"Content-Length: 0", b"Content-Length: 0\r\nRoute: <sip:x;;>"), "bad Route", 400),
        (
            _with(b"Content-Length: 0", b"Content-Length: 0\r\nRecord-Route: <x>"),
            "bad Record-Route",
            400,
        ),
        (_with(b"Call-ID: opt1", b"Call ID: opt1"), "bad header line", 400),
        (_with(b"Call-ID: opt1", b"Call-ID opt1"), "bad header line", 400),
        (_with(b"Call-ID: opt1", b"Call-ID: op\rt1"), "bare CR in header", 400),
        (_with(b"Call-ID: opt1", b"Call-ID: " + b"x" * 9000), "header line too long", 400),
        (b" folded: x\r\n" + OPTIONS, "bad header line", 400),
        (
            _with(
                b"OPTIONS sip:srs@192.0.2.50 SIP/2.0\r\n",
                b"OPTIONS sip:srs@192.0.2.50 SIP/2.0\r\n x: y\r\n",
            ),
            "folded line before first header",
            400,
        ),
        (_with(b"SIP/2.0\r\n", b"SIP/3.0\r\n"), "Version Not Supported", 505),
        (_with(b"SIP/2.0\r\n", b"HTTP/1.1\r\n"), "bad SIP version", 400),
        (
            _with(b"OPTIONS sip:srs@192.0.2.50", b"OPTIONS sip:srs@192.0.2.50 x"),
            "bad request line",
            400,
        ),
        (_with(b"OPTIONS sip", b"OPT@ONS sip"), "bad method", 400),
        (_with(b"sip:srs@192.0.2.50", b"<sip:srs@192.0.2.50>"), "bad Request-URI", 400),
        (
            _with(b"sip:srs@192.0.2.50", b"sip:srs@192.0.2.50?X=1"),
            "bad Request-URI: headers not allowed",
            400,
        ),
        (OPTIONS[:-2], "no end of headers", 400),
        (b"\r\n\r\n", "no end of headers", 400),
        (b"\r\n\r\n\r\n\r\n", "no end of headers", 400),
        (b"  \r\n\r\n", "empty message", 400),
        (OPTIONS + b"x" * 65535, "message too large", 513),
        (
            _with(b"Call-ID: opt1", b"Call-ID: opt1\r\n" + b"X-A: b\r\n" * MAX_HEADER_FIELDS),
            "too many headers",
            400,
        ),
        (
            _with(b"Call-ID: opt1", b"Call-ID: opt1\r\n" + (b"X-B: " + b"z" * 8000 + b"\r\n") * 3),
            "headers too long",
            513,
        ),
    ],
)
def test_request_errors(data: bytes, reason: str, status: int) -> None:
    error = _error(data)
    assert (error.reason, error.status) == (reason, status)
    assert isinstance(error, SipParseError)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (RESPONSE.replace(b"180 Ringing", b"1800 Ringing"), "bad status code"),
        (RESPONSE.replace(b"180 Ringing", b"099 Ringing"), "bad status code"),
        (RESPONSE.replace(b"180 Ringing", b"18x Ringing"), "bad status code"),
        (RESPONSE.replace(b"Call-ID: r1\r\n", b""), "missing Call-ID"),
    ],
)
def test_response_errors_are_not_answered(data: bytes, reason: str) -> None:
    error = _error(data)
    assert error.reason == reason and error.is_request is False
    assert build_error_response(error) is None


def test_status_line_without_reason() -> None:
    for line in (b"SIP/2.0 100 ", b"SIP/2.0 100"):
        msg = parse_message(RESPONSE.replace(b"SIP/2.0 180 Ringing", line))
        assert isinstance(msg, SipResponse) and (msg.status, msg.reason) == (100, "")


def test_error_response_copies_the_salvaged_headers() -> None:
    broken = _with(b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE").replace(b"Via:", b"v :")
    broken = broken.replace(b"Call-ID: opt1", b"Call-ID: opt1\r\nX-Trailing: \xff")
    error = _error(broken)
    assert error.is_request is True and error.data == broken
    response = build_error_response(error, to_tag="e1")
    assert response is not None
    assert bytes(response) == (
        b"SIP/2.0 400 CSeq method does not match request method\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\n"
        b"To: <sip:srs@example.net>;tag=e1\r\n"
        b"Call-ID: opt1\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_error_response_edge_cases() -> None:
    no_via = _error(_with(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n", b""))
    assert no_via.is_request is True and build_error_response(no_via) is None
    assert _error(b"  \r\n\r\n").is_request is None
    tagged = _error(
        _with(b"To: <sip:srs@example.net>", b"To: <sip:srs@example.net>;tag=old\r\nCSeq: 1 X")
    )
    response = build_error_response(tagged, to_tag="new")
    assert response is not None and response.headers.get("To") == "<sip:srs@example.net>;tag=old"
    assert response.headers.count("CSeq") == 1
    broken_to = _error(_with(b"To: <sip:srs@example.net>", b"To: <sip:srs"))
    response = build_error_response(broken_to, to_tag="new")
    assert response is not None and response.headers.get("To") == "<sip:srs"
    version = _error(_with(b"SIP/2.0\r\n", b"SIP/7.0\r\n"))
    response = build_error_response(version)
    assert response is not None and (response.status, response.reason) == (
        505,
        "Version Not Supported",
    )


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and is_keepalive(b"")
    assert not is_keepalive(OPTIONS)


# -- streams ------------------------------------------------------------------------------


def test_stream_frames_messages_and_skips_keepalives() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == []
    assert parser.buffered_bytes == 0
    messages = parser.feed(OPTIONS + b"\r\n" + RESPONSE[:20])
    assert [m.call_id for m in messages] == ["opt1"]
    assert [m.call_id for m in parser.feed(RESPONSE[20:] + b"\r\n\r\n")] == ["r1"]
    assert parser.feed(OPTIONS.replace(b"\r\n", b"\n")) == [
        parse_message(OPTIONS.replace(b"\r\n", b"\n"))
    ]


def test_stream_waits_for_the_body() -> None:
    parser = StreamParser()
    assert parser.feed(RESPONSE[:-2]) == []
    assert parser.feed(RESPONSE[-2:])[0].body == b"body"


def test_stream_invalid_but_framed_message_does_not_lose_the_stream() -> None:
    parser = StreamParser()
    bad = _with(b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE")
    with pytest.raises(SipMessageError) as info:
        parser.feed(OPTIONS + bad + OPTIONS)
    error = info.value
    assert error.reason == "CSeq method does not match request method" and not error.framing_lost
    assert [m.call_id for m in error.messages] == ["opt1"] and error.data == bad
    assert build_error_response(error) is not None
    assert [m.call_id for m in parser.feed(b"")] == ["opt1"]


@pytest.mark.parametrize(
    ("data", "reason", "status"),
    [
        (_with(b"Content-Length: 0\r\n", b""), "missing Content-Length", 400),
        (_with(b"Content-Length: 0", b"Content-Length: zero"), "bad Content-Length", 400),
        (_with(b"Call-ID: opt1", b"Call ID: opt1"), "bad header line", 400),
        (_with(b"Content-Length: 0", b"Content-Length: 70000"), "message too large", 513),
        (b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * 20000, "headers too long", 513),
    ],
)
def test_stream_unframeable_input_is_fatal(data: bytes, reason: str, status: int) -> None:
    parser = StreamParser()
    with pytest.raises(SipMessageError) as info:
        parser.feed(data)
    assert (info.value.reason, info.value.status, info.value.framing_lost) == (reason, status, True)
    with pytest.raises(SipMessageError) as again:
        parser.feed(OPTIONS)
    assert again.value is info.value


def test_stream_header_limit_applies_to_a_complete_head_too() -> None:
    parser = StreamParser(max_header_bytes=100)
    with pytest.raises(SipMessageError, match="headers too long"):
        parser.feed(OPTIONS)


# -- properties -----------------------------------------------------------------------------


def _messages() -> list[bytes]:
    invite = build_request(
        "INVITE",
        "sip:srs@192.0.2.50",
        headers=[
            ("v", "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKi"),
            ("f", "<sip:a@h>;tag=1"),
            ("t", "<sip:b@h>"),
            ("i", "inv"),
            ("CSeq", "1 INVITE"),
            ("c", "multipart/mixed;boundary=x"),
        ],
        body=b"--x\r\n\r\n\r\n\r\n\x00\xff--x--\r\n",
    )
    return [OPTIONS, RESPONSE, bytes(invite)]


_SEPARATORS = st.sampled_from([b"", b"\r\n", b"\r\n\r\n"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_message_or_a_sip_parse_error(data: bytes) -> None:
    try:
        parse_message(data)
    except SipMessageError as error:
        assert error.reason and error.status in (400, 505, 513)
        build_error_response(error)
    parser = StreamParser()
    try:
        parser.feed(data)
    except SipMessageError as error:
        assert error.reason


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(8)), max_size=20), st.binary(max_size=40))
def test_mutated_messages_never_crash(positions: list[int], noise: bytes) -> None:
    data = bytearray(_messages()[len(positions) % 3])
    for i, p in enumerate(positions):
        data[(p * 97 + i * 31) % len(data)] = noise[i % len(noise)] if noise else 0x3A
    try:
        msg = parse_message(bytes(data))
    except SipMessageError:
        return
    # Serialising fixes Content-Length (it may have been absent on a datagram), after which
    # the output is a fixed point.
    again = parse_message(bytes(msg))
    assert bytes(again) == bytes(msg)
    assert (again.body, again.headers.remove("Content-Length")) == (
        msg.body,
        msg.headers.remove("l"),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(range(3)), _SEPARATORS), min_size=1, max_size=5), st.data()
)
def test_stream_chunking_does_not_matter(
    plan: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(sep + _messages()[i] for i, sep in plan)
    whole = StreamParser().feed(stream)
    assert len(whole) == len(plan)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    parser = StreamParser()
    pieces: list[object] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        pieces.extend(parser.feed(stream[start:cut]))
        start = cut
    assert pieces == whole
    assert [parse_message(m) for m in _messages()] == [
        StreamParser().feed(m)[0] for m in _messages()
    ]


def test_stream_byte_by_byte_equals_one_chunk() -> None:
    stream = b"\r\n".join(_messages() * 2)
    whole = StreamParser().feed(stream)
    parser = StreamParser()
    one_by_one = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1])]
    assert one_by_one == whole and len(whole) == 6


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "BYE", "OPTIONS", "X-CUSTOM.1"]),
    call_id=st.text("abcdef0123456789@.-", min_size=1, max_size=20),
    number=st.integers(0, 2**31 - 1),
    extra=st.lists(
        st.tuples(
            st.sampled_from(["X-A", "Subject", "User-Agent", "k"]),
            st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30).map(
                str.strip
            ),
        ),
        max_size=4,
    ),
    body=st.binary(max_size=64),
)
def test_round_trip(
    method: str, call_id: str, number: int, extra: list[tuple[str, str]], body: bytes
) -> None:
    msg = build_request(
        method,
        "sip:srs@192.0.2.50;transport=tcp",
        headers=[
            ("Via", "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKr"),
            ("From", '"A" <sip:a@h>;tag=1'),
            ("To", "<sip:b@h>"),
            ("Call-ID", call_id),
            ("CSeq", f"{number} {method}"),
            *extra,
        ],
        body=body,
        content_type="application/octet-stream",
    )
    assert parse_message(bytes(msg)) == msg
    assert StreamParser().feed(bytes(msg)) == [msg]
