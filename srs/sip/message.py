"""SIP requests and responses as immutable values, and the builders srs uses to make them.

A message keeps its header fields raw (:class:`~srs.sip.headers.Headers`); the typed views
(``cseq``, ``from_``, ``vias`` ...) parse on access and raise ``SipParseError`` naming the
header when it is missing or malformed.  ``bytes(msg)`` serialises with a correct
Content-Length whatever the headers said.

Text (header values, reason phrases, URIs) is UTF-8 decoded with ``surrogateescape``: the
serialiser encodes the same way, so invalid bytes a peer sent go back out unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from srs.errors import SipParseError, UsageError
from srs.sip.headers import ContentType, CSeq, Headers, Via, is_token
from srs.sip.uri import NameAddr, Uri, parse_uri

__all__ = [
    "SIP_VERSION",
    "REASON_PHRASES",
    "DIALOG_CREATING_METHODS",
    "ALLOW",
    "SipRequest",
    "SipResponse",
    "SipMessage",
    "build_response",
    "build_request",
    "reason_phrase",
]

SIP_VERSION = "SIP/2.0"
ENCODING = "utf-8"
ERRORS = "surrogateescape"
# The empty header list: immutable, so one value serves every default.
NO_HEADERS = Headers()

# RFC 3261 §21 (and the RFCs named) default reason phrases for the codes srs sends.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",  # RFC 3265 §3.1.6.1
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",  # RFC 4028 §6
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",  # RFC 6665 §8.3.1
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_CLASS_PHRASES = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}

# RFC 3261 §12.1.1 (and RFC 6665 §4.1, RFC 3515 §2.4.1): requests that create a dialog.
DIALOG_CREATING_METHODS: frozenset[str] = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

# RFC 3261 §20.5: the methods srs supports, in the Allow of its server and its client
# alike.  INFO is accepted in a dialog and ignored (some SBCs send DTMF or keepalives as
# INFO); PRACK is not: srs never sends reliable provisionals.
ALLOW: tuple[str, ...] = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO")

_T = TypeVar("_T")


def reason_phrase(status: int) -> str:
    """The default reason phrase for ``status`` (RFC 3261 §21), or its class name."""
    return REASON_PHRASES.get(status, _CLASS_PHRASES.get(status // 100, "Unknown"))


def _one(headers: Headers, name: str, parse: Callable[[str], _T]) -> _T:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name}")
    try:
        return parse(value)
    except SipParseError:
        raise SipParseError(f"bad {name}") from None


def _many(headers: Headers, name: str, parse: Callable[[str], _T]) -> tuple[_T, ...]:
    try:
        return tuple(parse(v) for v in headers.get_all(name))
    except SipParseError:
        raise SipParseError(f"bad {name}") from None


class _MessageViews:
    """Typed views over the headers shared by requests and responses."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        """RFC 3261 §20.8 Call-ID."""
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        return _one(self.headers, "CSeq", CSeq.parse)

    @property
    def from_(self) -> NameAddr:
        return _one(self.headers, "From", NameAddr.parse)

    @property
    def to(self) -> NameAddr:
        return _one(self.headers, "To", NameAddr.parse)

    @property
    def vias(self) -> tuple[Via, ...]:
        return _many(self.headers, "Via", Via.parse)

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        try:
            return Via.parse(values[0])
        except SipParseError:
            raise SipParseError("bad Via") from None

    @property
    def content_type(self) -> ContentType | None:
        """RFC 3261 §20.15, or None when there is no Content-Type header."""
        if "Content-Type" not in self.headers:
            return None
        return _one(self.headers, "Content-Type", ContentType.parse)

    @property
    def contacts(self) -> tuple[NameAddr, ...]:
        """Every Contact value (RFC 3261 §20.10); ``*`` (REGISTER only) is not a name-addr."""
        return _many(self.headers, "Contact", NameAddr.parse)

    @property
    def contact(self) -> NameAddr | None:
        """The first Contact (the remote target of a dialog, RFC 3261 §12.1.1), or None."""
        values = self.headers.get_all("Contact")
        if not values:
            return None
        try:
            return NameAddr.parse(values[0])
        except SipParseError:
            raise SipParseError("bad Contact") from None

    @property
    def record_route(self) -> tuple[NameAddr, ...]:
        """RFC 3261 §20.30 Record-Route values in order."""
        return _many(self.headers, "Record-Route", NameAddr.parse)

    @property
    def route(self) -> tuple[NameAddr, ...]:
        """RFC 3261 §20.34 Route values in order."""
        return _many(self.headers, "Route", NameAddr.parse)

    @property
    def require(self) -> tuple[str, ...]:
        """RFC 3261 §20.32 option tags in Require."""
        return tuple(self.headers.get_all("Require"))

    @property
    def supported(self) -> tuple[str, ...]:
        """RFC 3261 §20.37 option tags in Supported."""
        return tuple(self.headers.get_all("Supported"))

    @property
    def max_forwards(self) -> int | None:
        """RFC 3261 §20.22 Max-Forwards (0-255), or None when absent."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        # Leading zeros are allowed (RFC 4475 §3.1.1.1 sends "0068").
        if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > 255:
            raise SipParseError("bad Max-Forwards")
        return int(value)

    def _serialise(self, start_line: str) -> bytes:
        # RFC 3261 §20.14: the serialised Content-Length is always the body's real length.
        headers = self.headers.set("Content-Length", str(len(self.body)))
        text = start_line + "\r\n" + str(headers) + "\r\n"
        return text.encode(ENCODING, ERRORS) + self.body


@dataclass(frozen=True, slots=True)
class SipRequest(_MessageViews):
    """A SIP request (RFC 3261 §7.1).  ``uri`` is the Request-URI."""

    method: str
    uri: Uri
    version: str = SIP_VERSION
    headers: Headers = NO_HEADERS
    body: bytes = b""

    def with_headers(self, headers: Headers) -> SipRequest:
        return dataclasses.replace(self, headers=headers)

    def with_top_via(self, via: Via) -> SipRequest:
        """A copy whose topmost Via value is ``via`` (e.g. with ``received``/``rport`` added,
        RFC 3261 §18.2.1, RFC 3581 §4); other Via values keep their raw text and order."""
        return self.with_headers(_replace_top_via(self.headers, via))

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {self.version}")


@dataclass(frozen=True, slots=True)
class SipResponse(_MessageViews):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    version: str = SIP_VERSION
    headers: Headers = NO_HEADERS
    body: bytes = b""

    def with_headers(self, headers: Headers) -> SipResponse:
        return dataclasses.replace(self, headers=headers)

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _replace_top_via(headers: Headers, via: Via) -> Headers:
    values = headers.get_all("Via")
    if not values:
        raise UsageError("message has no Via to replace")
    return headers.set("Via", str(via), *values[1:])


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via (same order), From, To, Call-ID and CSeq (§8.2.6.2).  ``to_tag`` is
    added to To when given and To has no tag yet.  Record-Route is copied on 101-299 answers
    to dialog-creating requests (§12.1.1); Timestamp on 100 Trying (§8.2.6.1).
    """
    if not 100 <= status <= 699:
        raise UsageError(f"status out of range: {status}")
    phrase = reason_phrase(status) if reason is None else reason
    if "\r" in phrase or "\n" in phrase:
        raise UsageError("reason phrase contains CR or LF")
    src = request.headers
    fields: list[tuple[str, str]] = []
    for name, value in src.items():
        key = name.lower()
        if key in ("via", "v"):
            fields.append(("Via", value))
    for name in ("From", "To", "Call-ID", "CSeq"):
        field = src.get(name)
        if field is None:
            raise UsageError(f"request has no {name}")
        if name == "To" and to_tag is not None:
            to = NameAddr.parse(field)
            if to.tag is None:
                field = f"{field};tag={to_tag}"
        fields.append((name, field))
    if request.method in DIALOG_CREATING_METHODS and 101 <= status <= 299:
        fields.extend(("Record-Route", v) for v in _raw_values(src, "Record-Route"))
    if status == 100 and "Timestamp" in src:
        fields.append(("Timestamp", src.get("Timestamp") or ""))
    fields.extend(extra_headers)
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    elif body:
        raise UsageError("a body needs a content_type")
    fields.append(("Content-Length", str(len(body))))
    return SipResponse(status, phrase, SIP_VERSION, Headers.of(fields), body)


def _raw_values(headers: Headers, name: str) -> list[str]:
    """Each header line's raw value (not split at commas), in order."""
    key = name.lower()
    return [v for n, v in headers.items() if n.lower() == key]


def build_request(
    method: str,
    uri: Uri | str,
    *,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A request srs originates (in-dialog BYE, test clients), RFC 3261 §8.1.1.

    The caller provides To, From, Call-ID, CSeq and Via; Max-Forwards: 70 is added when
    absent (§8.1.1.6).  Content-Length is always set from ``body``.
    """
    if not is_token(method):
        raise UsageError(f"method is not a token: {method!r}")
    target = parse_uri(uri) if isinstance(uri, str) else uri
    built = Headers.of(headers)
    for name in ("To", "From", "Call-ID", "CSeq", "Via"):
        if name not in built:
            raise UsageError(f"build_request needs a {name} header")
    if "Max-Forwards" not in built:
        built = built.add("Max-Forwards", "70")
    if content_type is not None:
        built = built.set("Content-Type", content_type)
    elif body and "Content-Type" not in built:
        raise UsageError("a body needs a content_type")
    built = built.set("Content-Length", str(len(body)))
    return SipRequest(method, target, SIP_VERSION, built, body)
