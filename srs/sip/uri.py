"""SIP URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1).

``SipUri`` is a parsed ``sip:``/``sips:`` URI.  Any other scheme (``tel:``, ``urn:``, ...)
parses to ``AbsoluteUri``, which keeps the raw text: srs never routes to those, but a peer
may legitimately put them in a Request-URI or a To header and that must not fail the parse.

User, password, parameter and header texts are kept exactly as received (escaped form), so
``str(SipUri.parse(text)) == text`` for every URI accepted; comparison rules (RFC 3261
§19.1.4) belong to whoever compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from srs.errors import SipParseError
from srs.sip.headers import (
    _parse_host_port,
    _split_top_level,
    _unquote,
    closing_quote,
    format_params,
    has_param,
    is_token,
    param_value,
    parse_params,
    with_param,
)

__all__ = ["SipUri", "AbsoluteUri", "Uri", "NameAddr", "parse_uri"]

_ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT = "0123456789"
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3261 §25.1: unreserved = alphanum / mark;
# mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_UNRESERVED = frozenset(_ALPHA + _DIGIT + "-_.!~*'()")
# user-unreserved / password chars / param-unreserved / hnv-unreserved (RFC 3261 §25.1)
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$")
_SCHEME_CHARS = frozenset(_ALPHA + _DIGIT + "+-.")
# Characters never allowed in any URI form we keep raw (RFC 3986 §2 excludes them all).
_NEVER_IN_URI = frozenset(' \t\r\n"<>\\^`{|}')

_WS = " \t"


def _is_escaped_text(text: str, allowed: frozenset[str]) -> bool:
    """True if ``text`` is ``*(allowed / escaped)`` where escaped is ``"%" HEXDIG HEXDIG``."""
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if i + 2 >= n:
                return False
            if text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                return False
            i += 3
            continue
        if ch not in allowed:
            return False
        i += 1
    return True


def _valid_scheme(scheme: str) -> bool:
    """RFC 3261 §25.1 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )."""
    return bool(scheme) and scheme[0] in _ALPHA and all(ch in _SCHEME_CHARS for ch in scheme)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1).

    ``scheme`` is lowercase; ``host`` keeps IPv6 brackets; ``params`` and ``headers`` keep
    order and raw (escaped) text.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise SipParseError("bad SIP URI scheme")
        if any(ch in _NEVER_IN_URI for ch in rest):
            raise SipParseError("bad SIP URI")
        # RFC 3261 §25.1: "@" may appear only after userinfo (params and headers must escape
        # it), so the first "@" ends the userinfo even when the user holds "?" or ";".
        at = rest.find("@")
        user: str | None = None
        password: str | None = None
        if at >= 0:
            userinfo, hostpart = rest[:at], rest[at + 1 :]
            user_text, pcolon, password_text = userinfo.partition(":")
            if not user_text or not _is_escaped_text(user_text, _USER_CHARS):
                raise SipParseError("bad SIP URI user")
            user = user_text
            if pcolon:
                if not _is_escaped_text(password_text, _PASSWORD_CHARS):
                    raise SipParseError("bad SIP URI password")
                password = password_text
        else:
            hostpart = rest
        hostport, _, header_text = hostpart.partition("?")
        has_headers = "?" in hostpart
        hostport, semi, param_text = hostport.partition(";")
        host, port = _parse_host_port(hostport, what="SIP URI")
        params: list[tuple[str, str | None]] = []
        if semi:
            for chunk in param_text.split(";"):
                name, eq, value = chunk.partition("=")
                if not name or not _is_escaped_text(name, _PARAM_CHARS):
                    raise SipParseError("bad SIP URI parameter")
                if eq and not _is_escaped_text(value, _PARAM_CHARS):
                    raise SipParseError("bad SIP URI parameter")
                params.append((name, value if eq else None))
        headers: list[tuple[str, str]] = []
        if has_headers:
            for chunk in header_text.split("&"):
                name, eq, value = chunk.partition("=")
                if not eq or not name or not _is_escaped_text(name, _HEADER_CHARS):
                    raise SipParseError("bad SIP URI header")
                if not _is_escaped_text(value, _HEADER_CHARS):
                    raise SipParseError("bad SIP URI header")
                headers.append((name, value))
        return cls(scheme.lower(), host, user, password, port, tuple(params), tuple(headers))

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive name); None if absent or flag."""
        return param_value(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    @property
    def transport(self) -> str | None:
        """RFC 3261 §19.1.1 ``transport`` parameter, lowercased."""
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def lr(self) -> bool:
        """RFC 3261 §19.1.1 loose-routing flag ``;lr``."""
        return self.has_param("lr")

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            password = f":{self.password}" if self.password is not None else ""
            userinfo = f"{self.user}{password}@"
        port = f":{self.port}" if self.port is not None else ""
        headers = "&".join(f"{n}={v}" for n, v in self.headers)
        headers = f"?{headers}" if headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of a scheme srs does not route (``tel:``, ``urn:``, ...): raw text (RFC 3261
    §19.1.6)."""

    scheme: str
    text: str

    @classmethod
    def parse(cls, text: str) -> AbsoluteUri:
        scheme, colon, rest = text.partition(":")
        if not colon or not _valid_scheme(scheme) or not rest:
            raise SipParseError("bad URI")
        if any(ch in _NEVER_IN_URI for ch in rest):
            raise SipParseError("bad URI")
        return cls(scheme.lower(), text)

    def __str__(self) -> str:
        return self.text


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """A ``SipUri`` for ``sip:``/``sips:``, an ``AbsoluteUri`` for any other valid scheme."""
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        return SipUri.parse(text)
    return AbsoluteUri.parse(text)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """RFC 3261 §20.10 ``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)``.

    ``display_name`` is the display text with quotes and quoted-pairs resolved, or None.
    ``params`` are the header parameters (``tag``, ``expires``, ``+sip.src``, ...), raw.
    """

    uri: Uri
    display_name: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip(_WS)
        lt = _find_outside_quotes(text, "<")
        if lt < 0:
            # RFC 3261 §20.10: without angle brackets, every ";param" belongs to the header.
            uri_text, semi, param_text = text.partition(";")
            uri_text = uri_text.strip(_WS)
            # A URI with "?" or "," must be in <> (RFC 3261 §20.10, RFC 4475 §3.1.2.13).
            if "?" in uri_text or "," in uri_text:
                raise SipParseError("bad name-addr: URI with headers needs <>")
            display_name = None
        else:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("bad name-addr: unclosed <")
            uri_text = text[lt + 1 : gt]
            display_name = _parse_display_name(text[:lt].strip(_WS))
            tail = text[gt + 1 :].strip(_WS)
            if tail and not tail.startswith(";"):
                raise SipParseError("bad name-addr: text after >")
            semi, param_text = (";", tail[1:]) if tail else ("", "")
        uri = parse_uri(uri_text)
        params = parse_params(param_text, what="name-addr") if semi else ()
        return cls(uri, display_name, params)

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    @property
    def tag(self) -> str | None:
        """RFC 3261 §19.3 ``tag`` of a From or To header."""
        return self.param("tag")

    def with_param(self, name: str, value: str | None) -> NameAddr:
        """A copy with header parameter ``name`` set (replaced in place or appended)."""
        return NameAddr(self.uri, self.display_name, with_param(self.params, name, value))

    def __str__(self) -> str:
        display = ""
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


def _find_outside_quotes(text: str, target: str) -> int:
    """Index of the first ``target`` outside quoted strings, or -1."""
    parts, _ = _split_top_level(text, target, angle_brackets=False)
    return -1 if len(parts) == 1 else len(parts[0])


def _parse_display_name(text: str) -> str | None:
    """RFC 3261 §25.1 display-name = *(token LWS) / quoted-string."""
    if not text:
        return None
    if text.startswith('"'):
        end = closing_quote(text)
        if end != len(text) - 1:
            raise SipParseError("bad display name")
        return _unquote(text)
    words = text.split()
    if not all(is_token(w) for w in words):
        raise SipParseError("bad display name")
    return " ".join(words)

