"""SIP header fields: the ordered multimap and the typed values of the headers srs reads.

``Headers`` keeps every field exactly as received (raw name, unfolded value) in order and
looks names up case-insensitively, compact forms included (RFC 3261 §7.3.3).  Typed values
(``Via``, ``CSeq``, ``ContentType``) are parsed from one header value on demand; the name-addr
forms (From, To, Contact, Route) live in :mod:`srs.sip.uri` with the URIs they carry.

Text is ``str`` decoded from UTF-8 with ``surrogateescape`` by the parser, so any byte
sequence survives a parse/serialise round trip unchanged and invalid UTF-8 never crashes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from srs.errors import SipParseError, UsageError

__all__ = [
    "COMPACT_FORMS",
    "MULTI_VALUE_HEADERS",
    "MAX_CSEQ",
    "Headers",
    "Via",
    "CSeq",
    "ContentType",
    "canonical_name",
    "split_values",
    "parse_params",
    "format_params",
    "is_token",
    "Params",
    "param_value",
    "has_param",
    "with_param",
    "closing_quote",
]

# RFC 3261 §7.3.3 and §20 compact forms, plus those defined by later RFCs.  Keys and values
# are lowercase; values are the full names.
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",  # RFC 3261 §20.8
    "m": "contact",  # RFC 3261 §20.10
    "e": "content-encoding",  # RFC 3261 §20.12
    "l": "content-length",  # RFC 3261 §20.14
    "c": "content-type",  # RFC 3261 §20.15
    "f": "from",  # RFC 3261 §20.20
    "s": "subject",  # RFC 3261 §20.36
    "k": "supported",  # RFC 3261 §20.37
    "t": "to",  # RFC 3261 §20.39
    "v": "via",  # RFC 3261 §20.42
    "o": "event",  # RFC 6665 §8.2.1
    "u": "allow-events",  # RFC 6665 §8.2.2
    "r": "refer-to",  # RFC 3515 §2.1
    "b": "referred-by",  # RFC 3892 §7
    "x": "session-expires",  # RFC 4028 §4
    "a": "accept-contact",  # RFC 3841 §9.2
    "j": "reject-contact",  # RFC 3841 §9.2
    "d": "request-disposition",  # RFC 3841 §9.1
    "y": "identity",  # RFC 8224 §4
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): ``get_all`` splits them.
MULTI_VALUE_HEADERS: frozenset[str] = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "require",
        "supported",
        "allow",
        "unsupported",
        "proxy-require",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
    }
)

# RFC 3261 §8.1.1.5: the CSeq sequence number MUST be less than 2**31.
MAX_CSEQ = 2**31 - 1

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_WS = " \t"


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 §25.1 token."""
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)


def canonical_name(name: str) -> str:
    """The lowercase full name of a header, expanding compact forms (RFC 3261 §7.3.3)."""
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered)


def _split_top_level(text: str, sep: str, *, angle_brackets: bool) -> tuple[list[str], bool]:
    """Split ``text`` at ``sep`` outside quoted strings (and ``<...>`` if asked).

    Returns the parts and whether every quoted string was closed.
    """
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif angle_brackets and ch == "<":
            in_angle = True
        elif angle_brackets and ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts, not in_quotes


def split_values(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1).

    Commas inside quoted strings (with backslash quoted-pairs) and inside ``<...>`` do not
    split.  Empty elements are dropped: RFC 2616 §2.1 ``#rule`` allows null elements.
    """
    parts, _ = _split_top_level(value, ",", angle_brackets=True)
    return [p.strip(_WS) for p in parts if p.strip(_WS)]


def parse_params(text: str, *, what: str) -> tuple[tuple[str, str | None], ...]:
    """Parse ``*( SEMI generic-param )`` (RFC 3261 §25.1); ``text`` starts after the first SEMI.

    SEMI and EQUAL allow surrounding whitespace (SWS).  Names must be tokens; values are
    kept raw (a quoted-string value keeps its quotes).  ``what`` names the header in errors.
    """
    params: list[tuple[str, str | None]] = []
    chunks, balanced = _split_top_level(text, ";", angle_brackets=False)
    if not balanced:
        raise SipParseError(f"bad {what} parameter")
    for chunk in chunks:
        name, eq, value = chunk.partition("=")
        name = name.strip(_WS)
        if not is_token(name):
            raise SipParseError(f"bad {what} parameter")
        if not eq:
            params.append((name, None))
            continue
        value = value.strip(_WS)
        if value.startswith('"'):
            if not _is_quoted_string(value):
                raise SipParseError(f"bad {what} parameter")
        elif not value or any(ch in _WS or ch in '"<>,' for ch in value):
            raise SipParseError(f"bad {what} parameter")
        params.append((name, value))
    return tuple(params)


def closing_quote(text: str) -> int:
    """Index of the quote closing the quoted-string that starts at ``text[0]``, or -1."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def _is_quoted_string(text: str) -> bool:
    """True if ``text`` is exactly one RFC 3261 §25.1 quoted-string."""
    return text[:1] == '"' and closing_quote(text) == len(text) - 1


def format_params(params: Iterable[tuple[str, str | None]]) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


Params = tuple[tuple[str, str | None], ...]


def param_value(params: Params, name: str) -> str | None:
    """The value of parameter ``name`` (names compare case-insensitively); None if absent or
    a flag."""
    lowered = name.lower()
    for n, v in params:
        if n.lower() == lowered:
            return v
    return None


def has_param(params: Params, name: str) -> bool:
    lowered = name.lower()
    return any(n.lower() == lowered for n, _ in params)


def with_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value``: replaced in place, or appended."""
    lowered = name.lower()
    out = list(params)
    for i, (n, _) in enumerate(out):
        if n.lower() == lowered:
            out[i] = (n, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Headers:
    """Ordered, case-insensitive multimap of header fields with their raw text.

    ``fields`` holds ``(name, value)`` pairs exactly as received: the name as spelled by the
    peer (compact or not), the value unfolded (RFC 3261 §7.3.1) and stripped of surrounding
    whitespace.  Immutable: ``add``/``set``/``remove`` return a new ``Headers``.
    """

    fields: tuple[tuple[str, str], ...] = ()
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", tuple(canonical_name(n) for n, _ in self.fields))

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build from our own ``(name, value)`` pairs, checking them (misuse is UsageError)."""
        checked = tuple(pairs)
        for name, value in checked:
            _check_field(name, value)
        return cls(checked)

    def get(self, name: str) -> str | None:
        """The value of the first field called ``name`` (full or compact form), or None."""
        key = canonical_name(name)
        for k, (_, value) in zip(self._keys, self.fields, strict=True):
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; list headers are split at top-level commas."""
        key = canonical_name(name)
        values = [v for k, (_, v) in zip(self._keys, self.fields, strict=True) if k == key]
        if key in MULTI_VALUE_HEADERS:
            return [part for v in values for part in split_values(v)]
        return values

    def count(self, name: str) -> int:
        """How many header fields (lines) are called ``name``."""
        key = canonical_name(name)
        return sum(1 for k in self._keys if k == key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self._keys

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def items(self) -> tuple[tuple[str, str], ...]:
        """Every field as ``(raw name, raw value)``, in order."""
        return self.fields

    def add(self, name: str, value: str) -> Headers:
        """A copy with ``name: value`` appended."""
        _check_field(name, value)
        return Headers((*self.fields, (name, value)))

    def remove(self, name: str) -> Headers:
        """A copy without any field called ``name``."""
        key = canonical_name(name)
        return Headers(tuple(f for k, f in zip(self._keys, self.fields, strict=True) if k != key))

    def set(self, name: str, *values: str) -> Headers:
        """A copy where ``name`` has exactly ``values``, one line each, at the place of its
        first occurrence (or appended at the end if it was absent)."""
        for value in values:
            _check_field(name, value)
        key = canonical_name(name)
        new: list[tuple[str, str]] = []
        placed = False
        for k, f in zip(self._keys, self.fields, strict=True):
            if k != key:
                new.append(f)
            elif not placed:
                new.extend((f[0], v) for v in values)
                placed = True
        if not placed:
            new.extend((name, v) for v in values)
        return Headers(tuple(new))

    def __str__(self) -> str:
        return "".join(f"{n}: {v}\r\n" for n, v in self.fields)


def _check_field(name: str, value: str) -> None:
    if not is_token(name):
        raise UsageError(f"header name is not a token: {name!r}")
    if "\r" in value or "\n" in value:
        raise UsageError(f"header {name} value contains CR or LF")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm; separators allow whitespace (SLASH, COLON, SEMI: RFC 3261 §25.1)."""
        head, semi, rest = text.partition(";")
        pieces = head.split("/", 2)
        if len(pieces) != 3:
            raise SipParseError("bad Via")
        name, version, tail = (p.strip(_WS) for p in pieces)
        tail_parts = tail.split(None, 1)
        if len(tail_parts) != 2:
            raise SipParseError("bad Via")
        transport, sent_by = tail_parts
        if not (is_token(name) and is_token(version) and is_token(transport)):
            raise SipParseError("bad Via")
        host, port = _parse_host_port(sent_by.strip(_WS), what="Via")
        params = parse_params(rest, what="Via") if semi else ()
        return cls(transport.upper(), host, port, params, f"{name}/{version}")

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def branch(self) -> str | None:
        """RFC 3261 §8.1.1.7 transaction id; RFC 3261 compliant ones start ``z9hG4bK``."""
        return param_value(self.params, "branch")

    @property
    def received(self) -> str | None:
        """RFC 3261 §18.2.1 ``received`` parameter."""
        return param_value(self.params, "received")

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581 ``rport``: None if absent, True if present without value, else the port."""
        if not has_param(self.params, "rport"):
            return None
        value = param_value(self.params, "rport")
        if value is None:
            return True
        if not value.isdigit() or int(value) > 65535:
            raise SipParseError("bad Via rport")
        return int(value)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host, self.port)

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with parameter ``name`` set to ``value`` (replaced in place or appended)."""
        return Via(self.transport, self.host, self.port, with_param(self.params, name, value),
                   self.protocol)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def _parse_host_port(text: str, *, what: str) -> tuple[str, int | None]:
    """``host [ COLON port ]`` with IPv6 references in brackets (RFC 3261 §25.1)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"bad {what} host")
        host, rest = text[: end + 1], text[end + 1 :].strip(_WS)
        if not _is_ipv6_reference(host):
            raise SipParseError(f"bad {what} host")
    else:
        host, colon, port_text = text.partition(":")
        host = host.strip(_WS)
        rest = (":" + port_text) if colon else ""
        if not _is_hostname(host):
            raise SipParseError(f"bad {what} host")
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise SipParseError(f"bad {what} host")
    port_text = rest[1:].strip(_WS)
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise SipParseError(f"bad {what} port")
    port = int(port_text)
    if port > 65535:
        raise SipParseError(f"bad {what} port")
    return host, port


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _is_hostname(host: str) -> bool:
    """RFC 3261 §25.1 hostname or IPv4address (letters, digits, ``-`` and ``.``)."""
    return bool(host) and all(ch in _HOST_CHARS for ch in host)


def _is_ipv6_reference(host: str) -> bool:
    """RFC 3261 §25.1 IPv6reference: ``[`` hex groups ``]``, checked with the stdlib."""
    inner = host[1:-1]
    if len(host) < 4 or not all(ch in _IPV6_CHARS for ch in inner):
        return False
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CSeq:
    """RFC 3261 §20.16: ``CSeq: 4711 INVITE``."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2:
            raise SipParseError("bad CSeq")
        number, method = parts
        # RFC 3261 §8.1.1.5: a 32-bit integer less than 2**31.
        if not number.isascii() or not number.isdigit() or len(number) > 10:
            raise SipParseError("bad CSeq")
        value = int(number)
        if value > MAX_CSEQ:
            raise SipParseError("bad CSeq")
        if not is_token(method):
            raise SipParseError("bad CSeq")
        return cls(value, method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class ContentType:
    """RFC 3261 §20.15 media type: ``media_type`` is ``type/subtype`` lowercased."""

    media_type: str
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ContentType:
        head, semi, rest = text.partition(";")
        mtype, slash, subtype = head.partition("/")
        mtype, subtype = mtype.strip(_WS), subtype.strip(_WS)
        if not slash or not is_token(mtype) or not is_token(subtype):
            raise SipParseError("bad Content-Type")
        params = parse_params(rest, what="Content-Type") if semi else ()
        return cls(f"{mtype}/{subtype}".lower(), params)

    def param(self, name: str) -> str | None:
        """A parameter's value with the quotes of a quoted-string removed."""
        value = param_value(self.params, name)
        if value is not None and len(value) >= 2 and value[0] == value[-1] == '"':
            return _unquote(value)
        return value

    @property
    def boundary(self) -> str | None:
        """The multipart boundary (RFC 2046 §5.1.1), quoted or not."""
        return self.param("boundary")

    def __str__(self) -> str:
        return f"{self.media_type}{format_params(self.params)}"


def _unquote(quoted: str) -> str:
    """The text of a quoted-string (RFC 3261 §25.1), quoted-pairs resolved."""
    out: list[str] = []
    inner = quoted[1:-1]
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            i += 1
            ch = inner[i]
        out.append(ch)
        i += 1
    return "".join(out)
