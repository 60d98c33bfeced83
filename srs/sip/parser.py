"""Parsing SIP messages from datagrams and byte streams (sans-IO).

``parse_message`` takes one UDP datagram; ``StreamParser`` frames TCP/TLS byte streams by
Content-Length.  Both return :class:`~srs.sip.message.SipRequest` /
:class:`~srs.sip.message.SipResponse` values whose mandatory headers have been checked, or
raise :class:`SipMessageError` (a ``SipParseError``) whose ``reason`` names the problem.

When a request cannot be parsed, :func:`build_error_response` makes the 400 (or 505/513)
that RFC 3261 §8.2.2 and RFC 4475 §3 expect, from whatever Via/From/To/Call-ID/CSeq lines
could be salvaged; broken responses are dropped (RFC 3261 §18.1.2).

Decoding: header text is UTF-8 decoded with ``surrogateescape``.  Invalid UTF-8 never
fails the parse (RFC 3261 §25.1 allows only UTF-8, but the bytes are kept so they can be
logged and echoed back exactly); the body is raw bytes.
"""

from __future__ import annotations

import re

from srs.errors import SipParseError
from srs.sip.headers import ContentType, CSeq, Headers, Via, canonical_name, is_token
from srs.sip.message import (
    ENCODING,
    ERRORS,
    SIP_VERSION,
    SipMessage,
    SipRequest,
    SipResponse,
    reason_phrase,
)
from srs.sip.uri import NameAddr, SipUri, parse_uri

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_FIELDS",
    "MAX_LINE_BYTES",
    "SipMessageError",
    "parse_message",
    "is_keepalive",
    "StreamParser",
    "build_error_response",
]

# RFC 3261 §18.1.1: a UDP datagram carries at most 65535 bytes.
MAX_MESSAGE_BYTES = 65535
MAX_HEADER_BYTES = 16384
MAX_HEADER_FIELDS = 256
MAX_LINE_BYTES = 8192

# Headers that must appear exactly once (RFC 3261 §8.1.1, §20); RFC 4475 §3.3.8 and §3.3.9
# expect a 400 when they repeat.
_SINGLE_VALUE = ("to", "from", "call-id", "cseq", "max-forwards", "content-length",
                 "content-type")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
# An empty line (CRLF CRLF, or LF LF from peers that send bare LF) ends the header section.
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_WS = " \t"


class SipMessageError(SipParseError):
    """A message that cannot be parsed or framed.  ``status`` is 400, or 505 for an unknown
    SIP version and 513 for an over-large message.

    ``data`` holds the offending bytes (bounded by the parser limits) for
    :func:`build_error_response`; ``is_request`` tells a request (answer it) from a response
    (drop it), None when not even the start line could be read.  From a ``StreamParser``,
    ``messages`` holds the messages completed in the same ``feed`` before the bad one, and
    ``framing_lost`` says the stream cannot be read further (the connection must close).
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        data: bytes = b"",
        is_request: bool | None = None,
        framing_lost: bool = False,
    ) -> None:
        super().__init__(reason, status=status)
        self.data = data
        self.is_request = is_request
        self.framing_lost = framing_lost
        self.messages: tuple[SipMessage, ...] = ()


def _looks_like_request(data: bytes) -> bool | None:
    line = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    if not line.strip():
        return None
    return line[:4].upper() != b"SIP/"


def _fail(problem: SipParseError, data: bytes, *, framing_lost: bool = False) -> SipMessageError:
    error = SipMessageError(
        problem.reason,
        status=problem.status,
        data=data[:MAX_HEADER_BYTES],
        is_request=_looks_like_request(data),
        framing_lost=framing_lost,
    )
    error.__cause__ = problem
    return error


def is_keepalive(data: bytes) -> bool:
    """True for a datagram of only CR/LF: a keepalive, not a message.

    RFC 5626 §3.5.1 defines CRLF keepalives for streams; some UAs and SBCs send the same
    over UDP.  The transport drops these silently instead of answering 400.
    """
    return data.strip(b"\r\n") == b""


# -- header section ---------------------------------------------------------------------


def _split_lines(head: bytes) -> list[str]:
    """The lines of a header section, CRLF or bare LF terminated, decoded."""
    lines = head.split(b"\n")
    out: list[str] = []
    for raw in lines:
        # Bare LF line ends are accepted: some SBCs send them (RFC 3261 §7 requires CRLF).
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > MAX_LINE_BYTES:
            raise SipParseError("header line too long")
        if b"\r" in raw:
            raise SipParseError("bare CR in header")
        out.append(raw.decode(ENCODING, ERRORS))
    return out


def _parse_fields(lines: list[str]) -> Headers:
    """Header fields of RFC 3261 §7.3, unfolding continuation lines (§7.3.1)."""
    fields: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("folded line before first header")
            # RFC 3261 §7.3.1: a folded line is equivalent to a single SP.
            fields[-1][1] = (fields[-1][1] + " " + line.strip(_WS)).strip(_WS)
            continue
        name, colon, value = line.partition(":")
        # RFC 3261 §7.3.1 HCOLON = *( SP / HTAB ) ":" SWS.
        name = name.rstrip(_WS)
        if not colon or not is_token(name):
            raise SipParseError("bad header line")
        fields.append([name, value.strip(_WS)])
        if len(fields) > MAX_HEADER_FIELDS:
            raise SipParseError("too many headers")
    return Headers(tuple((n, v) for n, v in fields))


def _content_length(headers: Headers) -> int | None:
    values = {v for n, v in headers.items() if canonical_name(n) == "content-length"}
    if not values:
        return None
    if len(values) > 1:
        # RFC 4475 §3.3.9: differing Content-Length values leave the framing unknowable.
        raise SipParseError("multiple Content-Length headers")
    value = values.pop()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise SipParseError("bad Content-Length")
    return int(value)


# -- start line -------------------------------------------------------------------------


def _parse_version(text: str) -> str:
    """RFC 3261 §7.1 SIP-Version; only SIP/2.0 is spoken (RFC 3261 §8.2.2 / 505)."""
    if text.upper() != SIP_VERSION:
        if text[:4].upper() == "SIP/":
            raise SipParseError("Version Not Supported", status=505)
        raise SipParseError("bad SIP version")
    return SIP_VERSION


def _parse_status_line(line: str) -> tuple[int, str]:
    """RFC 3261 §7.2 Status-Line = SIP-Version SP Status-Code SP Reason-Phrase."""
    version, _, rest = line.partition(" ")
    _parse_version(version)
    # Tolerance: "SIP/2.0 100" without the SP before an empty reason (RFC 4475 §3.1.1.13
    # sends "SIP/2.0 100 "; the SP-less form is read the same way).
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isascii() or not code.isdigit():
        raise SipParseError("bad status code")
    status = int(code)
    if not 100 <= status <= 699:
        raise SipParseError("bad status code")
    return status, reason


def _parse_request_line(line: str) -> tuple[str, str]:
    """RFC 3261 §7.1 Request-Line = Method SP Request-URI SP SIP-Version.

    Tolerance: runs of SP and trailing SP are accepted, as RFC 4475 §3.1.2.9 and §3.1.2.10
    allow an element to be liberal here; SP inside the Request-URI still fails (§3.1.2.8).
    """
    parts = [p for p in line.rstrip(_WS).split(" ") if p]
    if len(parts) != 3:
        raise SipParseError("bad request line")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError("bad method")
    _parse_version(version)
    return method, uri


# -- whole message ----------------------------------------------------------------------


def _validate(headers: Headers, method: str | None) -> None:
    """Mandatory and single-valued headers of RFC 3261 §8.1.1, checked and parsed once.

    Max-Forwards may be absent: a UAS does not use it (RFC 3261 §8.2 never checks it) and
    RFC 2543 clients omit it (RFC 4475 §3.4.1).
    """
    for name in _MANDATORY:
        if name not in headers:
            raise SipParseError(f"missing {name}")
    for key in _SINGLE_VALUE:
        if headers.count(key) > 1:
            values = {v for n, v in headers.items() if canonical_name(n) == key}
            # Identical repeats of Content-Length are harmless; anything else is ambiguous.
            if key != "content-length" or len(values) > 1:
                raise SipParseError(f"multiple {_DISPLAY[key]} headers")
    if not (headers.get("Call-ID") or "").strip(_WS):
        raise SipParseError("missing Call-ID")
    call_id = headers.get("Call-ID") or ""
    if any(ch in _WS for ch in call_id):
        raise SipParseError("bad Call-ID")
    for name, parse in _CHECKS:
        for value in headers.get_all(name):
            try:
                parse(value)
            except SipParseError:
                raise SipParseError(f"bad {name}") from None
    for value in headers.get_all("Contact"):
        # RFC 3261 §20.10: "*" is a Contact value only in REGISTER.
        if value == "*" and method == "REGISTER":
            continue
        try:
            NameAddr.parse(value)
        except SipParseError:
            raise SipParseError("bad Contact") from None
    if not headers.get_all("Via"):
        raise SipParseError("missing Via")
    _max_forwards(headers.get("Max-Forwards"))


def _max_forwards(value: str | None) -> None:
    # RFC 3261 §20.22: 1*DIGIT, 0-255 (leading zeros allowed: RFC 4475 §3.1.1.1).
    if value is None:
        return
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > 255:
        raise SipParseError("bad Max-Forwards")


_DISPLAY = {"to": "To", "from": "From", "call-id": "Call-ID", "cseq": "CSeq",
            "max-forwards": "Max-Forwards", "content-length": "Content-Length",
            "content-type": "Content-Type"}
_CHECKS = (
    ("Via", Via.parse),
    ("From", NameAddr.parse),
    ("To", NameAddr.parse),
    ("CSeq", CSeq.parse),
    ("Content-Type", ContentType.parse),
    ("Record-Route", NameAddr.parse),
    ("Route", NameAddr.parse),
)


def _build(start: str, headers: Headers, body: bytes) -> SipMessage:
    if start[:4].upper() == "SIP/":
        status, reason = _parse_status_line(start)
        _validate(headers, None)
        return SipResponse(status, reason, SIP_VERSION, headers, body)
    method, uri_text = _parse_request_line(start)
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        raise SipParseError("bad Request-URI") from None
    # RFC 3261 §19.1.1 (table 1): headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError("bad Request-URI: headers not allowed")
    _validate(headers, method)
    cseq = CSeq.parse(headers.get("CSeq") or "")
    # RFC 3261 §8.1.1.5: the CSeq method matches the request method (RFC 4475 §3.1.2.17).
    if cseq.method != method:
        raise SipParseError("CSeq method does not match request method")
    return SipRequest(method, uri, SIP_VERSION, headers, body)


def _split_head(data: bytes) -> tuple[str, Headers, int]:
    """Start line, headers and the offset of the body in ``data`` (leading CRLFs skipped)."""
    start = len(data) - len(data.lstrip(b"\r\n"))
    match = _HEAD_END.search(data, start)
    if match is None:
        # RFC 3261 §7: the header section always ends with an empty line.
        raise SipParseError("no end of headers")
    head, body_at = data[start : match.start()], match.end()
    if len(head) > MAX_HEADER_BYTES:
        raise SipParseError("headers too long", status=513)
    lines = _split_lines(head)
    if not lines or not lines[0].strip(_WS):
        raise SipParseError("empty message")
    return lines[0], _parse_fields(lines[1:]), body_at


def parse_message(data: bytes, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> SipMessage:
    """Parse one datagram (RFC 3261 §18.3).

    Without Content-Length the body is the rest of the datagram; a Content-Length larger
    than what arrived is an error; bytes beyond it are discarded (RFC 4475 §3.1.1.8).
    """
    try:
        if len(data) > max_message_bytes:
            raise SipParseError("message too large", status=513)
        start, headers, body_at = _split_head(data)
        length = _content_length(headers)
        if length is None:
            body = data[body_at:]
        elif body_at + length > len(data):
            raise SipParseError("Content-Length exceeds datagram")
        else:
            body = data[body_at : body_at + length]
        return _build(start, headers, body)
    except SipMessageError:
        raise
    except SipParseError as problem:
        raise _fail(problem, data) from problem


class StreamParser:
    """Frames SIP messages from a TCP/TLS byte stream by Content-Length (RFC 3261 §18.3).

    ``feed`` returns the messages completed so far.  CRLF keepalives between messages are
    skipped (RFC 5626 §3.5.1, RFC 3261 §7.5).  A message that is framed but invalid raises
    ``SipMessageError`` with ``framing_lost=False`` and the parser continues after it;
    over-limit or unframeable input raises with ``framing_lost=True`` and every later
    ``feed`` raises again: the caller closes the connection.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_header_bytes = min(max_header_bytes, max_message_bytes)
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for the end of headers
        self._head: tuple[str, Headers, int, int] | None = None  # start, headers, body_at, length
        self._dead: SipMessageError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SipMessage]:
        if self._dead is not None:
            raise self._dead
        self._buffer += data
        messages: list[SipMessage] = []
        while True:
            try:
                message = self._next()
            except SipMessageError as error:
                error.messages = tuple(messages)
                if error.framing_lost:
                    self._dead = error
                raise
            if message is None:
                return messages
            messages.append(message)

    def _next(self) -> SipMessage | None:
        if self._head is None:
            # RFC 5626 §3.5.1 / RFC 3261 §7.5: CRLFs before a start line are keepalives.
            stripped = len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))
            if stripped:
                del self._buffer[:stripped]
                self._scanned = 0
            if not self._buffer:
                return None
            match = _HEAD_END.search(self._buffer, max(0, self._scanned - 3))
            if match is None:
                self._scanned = len(self._buffer)
                if len(self._buffer) > self.max_header_bytes:
                    raise self._lost(SipParseError("headers too long", status=513))
                return None
            if match.start() > self.max_header_bytes:
                raise self._lost(SipParseError("headers too long", status=513))
            head = bytes(self._buffer[: match.start()])
            try:
                lines = _split_lines(head)
                fields = _parse_fields(lines[1:])
                length = _content_length(fields)
            except SipParseError as problem:
                raise self._lost(problem) from problem
            if length is None:
                # RFC 3261 §18.3: Content-Length MUST be present on stream transports.
                raise self._lost(SipParseError("missing Content-Length"))
            if match.end() + length > self.max_message_bytes:
                raise self._lost(SipParseError("message too large", status=513))
            self._head = (lines[0], fields, match.end(), length)
        start, fields, body_at, length = self._head
        if len(self._buffer) < body_at + length:
            return None
        raw = bytes(self._buffer[: body_at + length])
        del self._buffer[: body_at + length]
        self._head = None
        self._scanned = 0
        try:
            return _build(start, fields, raw[body_at:])
        except SipParseError as problem:
            raise _fail(problem, raw) from problem

    def _lost(self, problem: SipParseError) -> SipMessageError:
        return _fail(problem, bytes(self._buffer), framing_lost=True)


# -- answering what could not be parsed ---------------------------------------------------

_SALVAGED = ("via", "from", "to", "call-id", "cseq")


def _salvage(data: bytes) -> list[tuple[str, str]]:
    """Raw Via/From/To/Call-ID/CSeq fields of a broken message, best effort, never raising."""
    head = data.lstrip(b"\r\n")[:MAX_HEADER_BYTES]
    match = _HEAD_END.search(head)
    if match is not None:
        head = head[: match.start()]
    fields: list[list[str]] = []
    for raw in head.split(b"\n")[1 : MAX_HEADER_FIELDS + 1]:
        line = raw.rstrip(b"\r").decode(ENCODING, ERRORS)
        if "\r" in line or len(line) > MAX_LINE_BYTES:
            fields.append(["", ""])
            continue
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] = (fields[-1][1] + " " + line.strip(_WS)).strip(_WS)
            continue
        name, colon, value = line.partition(":")
        name = name.strip(_WS)
        fields.append([name if colon and is_token(name) else "", value.strip(_WS)])
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, value in fields:
        key = canonical_name(name) if name else ""
        if key not in _SALVAGED or not value:
            continue
        if key != "via":
            if key in seen:
                continue
            seen.add(key)
        out.append((_DISPLAY.get(key, "Via"), value))
    return out


def build_error_response(
    error: SipMessageError, *, to_tag: str | None = None
) -> SipResponse | None:
    """The response to a request that failed to parse, or None when there is none to send.

    RFC 3261 §8.2.2 / RFC 4475 §3: a malformed request gets a 400 (505 for an unknown
    version, 513 when too large) with ``error.reason`` as reason phrase.  Via, From, To,
    Call-ID and CSeq are copied raw from the broken request (§8.2.6.2); ``to_tag`` is added
    to a To without one.  None for responses (dropped, RFC 3261 §18.1.2) and for requests
    without any Via (there is nowhere to send the answer).
    """
    if error.is_request is not True:
        return None
    fields = _salvage(error.data)
    if not any(name == "Via" for name, _ in fields):
        return None
    if to_tag is not None:
        fields = [
            (name, _with_to_tag(value, to_tag) if name == "To" else value)
            for name, value in fields
        ]
    fields.append(("Content-Length", "0"))
    reason = error.reason or reason_phrase(error.status)
    return SipResponse(error.status, reason, SIP_VERSION, Headers(tuple(fields)), b"")


def _with_to_tag(value: str, to_tag: str) -> str:
    try:
        if NameAddr.parse(value).tag is not None:
            return value
    except SipParseError:
        return value
    return f"{value};tag={to_tag}"
