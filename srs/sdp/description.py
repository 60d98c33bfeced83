"""SDP (RFC 4566 / RFC 8866) parsed into frozen values.

:meth:`SessionDescription.parse` turns an SDP body into a :class:`SessionDescription` with
one :class:`MediaDescription` per ``m=`` line.  What srs acts on is parsed into typed fields
(connection, direction, ``a=label``, ``a=rtpmap``/``a=fmtp`` with the RFC 3551 static
payload types, ``a=crypto``, ``a=rtcp-mux``, ``a=ptime``); every attribute is also kept raw,
in order, so that ``bytes(description)`` writes the description back and a surprise can be
studied.  Errors raise :class:`~srs.errors.SdpError` (488) naming the offending line.

The answer to an offer is built in :mod:`srs.sdp.answer`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from srs.errors import SdpError
from srs.sdp.crypto import CryptoAttribute, CryptoKeyParam

__all__ = [
    "Attribute",
    "Connection",
    "CryptoAttribute",
    "CryptoKeyParam",
    "Direction",
    "Fmtp",
    "MAX_SDP_BYTES",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "STATIC_PAYLOAD_TYPES",
    "SessionDescription",
]

MAX_SDP_BYTES = 16_384
MAX_LINES = 512
MAX_LINE_CHARS = 4096
MAX_MEDIA = 16
# RTP payload types are 7 bits (RFC 3550 §5.1): at most 128 distinct formats.
MAX_FORMATS = 128
MAX_RTP_PAYLOAD_TYPE = 127
# Parameters read from one a=fmtp line (hostile input: a bounded count).
MAX_FMTP_PARAMETERS = 32

_T = TypeVar("_T")

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")


class Direction(enum.StrEnum):
    """Media direction attributes (RFC 4566 §6, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    unicast_address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        fields = value.split()
        if len(fields) != 6:
            raise SdpError("o= needs 6 fields")
        username, session_id, version, nettype, addrtype, address = fields
        if not _DIGITS_RE.fullmatch(session_id) or not _DIGITS_RE.fullmatch(version):
            raise SdpError("o= session id and version must be numeric")
        return cls(username, session_id, int(version), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.unicast_address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 4566 §5.7).

    ``address`` is kept as sent; multicast TTL or count suffixes (``/127``) included.
    ``0.0.0.0`` is legal (RFC 3264 §8.4 hold, and what some SRCs send in every offer).
    """

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        fields = value.split()
        if len(fields) != 3:
            raise SdpError("c= needs 3 fields")
        nettype, addrtype, address = fields
        if nettype != "IN" or addrtype not in ("IP4", "IP6"):
            raise SdpError("c= with unsupported network or address type")
        return cls(nettype, addrtype, address)

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.partition("/")[0]

    @property
    def is_unspecified(self) -> bool:
        """True for ``0.0.0.0`` / ``::``: the peer does not say where it sends from."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One raw ``a=`` line: ``name`` and ``value`` (None for a property attribute)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        if not _TOKEN_RE.fullmatch(name):
            raise SdpError("bad attribute name")
        return cls(name, value if colon else None)

    def __bytes__(self) -> bytes:
        text = self.name if self.value is None else f"{self.name}:{self.value}"
        return text.encode("utf-8")

    def __repr__(self) -> str:
        # An a=crypto value holds SRTP master keys (RFC 4568 §9.1): never show it.
        value = "<redacted>" if self.name == "crypto" and self.value is not None else self.value
        return f"Attribute(name={self.name!r}, value={value!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding name>/<clock rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding_name: str
    clock_rate_hz: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        pt_text, _, encoding = value.strip().partition(" ")
        pieces = encoding.strip().split("/")
        if len(pieces) not in (2, 3) or not _TOKEN_RE.fullmatch(pieces[0]):
            raise SdpError("bad a=rtpmap")
        if not all(_DIGITS_RE.fullmatch(p) for p in pieces[1:]):
            raise SdpError("bad a=rtpmap")
        channels = int(pieces[2]) if len(pieces) == 3 else None
        clock_rate_hz = int(pieces[1])
        if clock_rate_hz == 0 or channels == 0:
            raise SdpError("bad a=rtpmap")
        return cls(_payload_type(pt_text, "a=rtpmap"), pieces[0], clock_rate_hz, channels)

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding_name}/{self.clock_rate_hz}"
        return text if self.channels is None else f"{text}/{self.channels}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<pt> <format specific parameters>`` (RFC 4566 §6), parameters kept raw."""

    payload_type: int
    parameters: str

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        pt_text, _, parameters = value.strip().partition(" ")
        return cls(_payload_type(pt_text, "a=fmtp"), parameters.strip())

    def __str__(self) -> str:
        return f"{self.payload_type} {self.parameters}"

    def params(self) -> dict[str, str]:
        """The ``name=value`` parameters separated by ``;`` (RFC 4867 §8.2, RFC 3952 §5,
        RFC 7587 §6.1), names lower-cased, at most :data:`MAX_FMTP_PARAMETERS`; a name
        without a value maps to ``""``."""
        out: dict[str, str] = {}
        for item in self.parameters.split(";")[:MAX_FMTP_PARAMETERS]:
            name, _, value = item.partition("=")
            if name.strip():
                out[name.strip().lower()] = value.strip()
        return out


def _payload_type(text: str, where: str) -> int:
    if not _DIGITS_RE.fullmatch(text) or int(text) > MAX_RTP_PAYLOAD_TYPE:
        raise SdpError(f"bad payload type {text[:20]!r} in {where}")
    return int(text)


# RFC 3551 §6 Table 4: static audio payload types.  G.722 says 8000 although it samples
# at 16 kHz, an error kept for compatibility (RFC 3551 §4.5.2).
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    0: RtpMap(0, "PCMU", 8000),
    3: RtpMap(3, "GSM", 8000),
    4: RtpMap(4, "G723", 8000),
    8: RtpMap(8, "PCMA", 8000),
    9: RtpMap(9, "G722", 8000),
    13: RtpMap(13, "CN", 8000),
    18: RtpMap(18, "G729", 8000),
}

def _is_rtp(proto: str) -> bool:
    """RTP profiles (RFC 3551, 3711, 4585, 5124, 5764) carry payload type numbers."""
    return "RTP/" in proto.upper()


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) with what srs needs already parsed.

    ``connection`` is the section's own ``c=`` line (see
    :meth:`SessionDescription.connection_for` for the inherited one).  ``direction``
    includes a session-level direction attribute and defaults to ``sendrecv``
    (RFC 4566 §6).  ``rtpmaps`` holds one entry per payload type in ``formats`` that has an
    ``a=rtpmap`` or an RFC 3551 static default.  ``attributes`` keeps every ``a=`` line.
    """

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    direction: Direction = Direction.SENDRECV
    label: str | None = None
    rtpmaps: tuple[RtpMap, ...] = ()
    fmtps: tuple[Fmtp, ...] = ()
    crypto: tuple[CryptoAttribute, ...] = ()
    rtcp_mux: bool = False
    ptime_ms: int | None = None

    @property
    def is_rtp(self) -> bool:
        return _is_rtp(self.proto)

    @property
    def is_secure(self) -> bool:
        """SRTP profiles (RTP/SAVP, RTP/SAVPF; RFC 3711, RFC 5124)."""
        return "SAVP" in self.proto.upper()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as RTP payload types (empty for a non-RTP proto)."""
        return tuple(int(fmt) for fmt in self.formats) if self.is_rtp else ()

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        return next((m for m in self.rtpmaps if m.payload_type == payload_type), None)

    def fmtp(self, payload_type: int) -> Fmtp | None:
        return next((f for f in self.fmtps if f.payload_type == payload_type), None)

    def __bytes__(self) -> bytes:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={' '.join((self.media, port, self.proto, *self.formats))}"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        head = "".join(line + "\r\n" for line in lines).encode("utf-8")
        return head + b"".join(b"a=" + bytes(a) + b"\r\n" for a in self.attributes)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5).  ``lines`` before the first ``m=`` that srs does
    not interpret (``i u e p z k r``) are kept raw in ``other_lines``."""

    version: int
    origin: Origin
    session_name: str
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    times: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    other_lines: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        return _parse_session(data)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media section's ``c=``, else the session's (RFC 4566 §5.7); may be None."""
        return media.connection if media.connection is not None else self.connection

    def __bytes__(self) -> bytes:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        lines.extend(self.other_lines)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        lines.extend(f"t={time}" for time in self.times)
        head = "".join(line + "\r\n" for line in lines).encode("utf-8")
        head += b"".join(b"a=" + bytes(a) + b"\r\n" for a in self.attributes)
        return head + b"".join(bytes(media) for media in self.media)


# RFC 4566 §5: the type letters; anything else makes the description unusable.
_SESSION_LETTERS = frozenset("vosiuepcbtrzkam")
_MEDIA_LETTERS = frozenset("icbka")
_DIRECTIONS = {direction.value: direction for direction in Direction}


def _lines(data: bytes) -> list[str]:
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(f"SDP over {MAX_SDP_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    # RFC 4566 §5: lines end in CRLF, but parsers should accept LF alone.
    raw_lines = text.replace("\r\n", "\n").split("\n")
    if len(raw_lines) > MAX_LINES:
        raise SdpError(f"SDP over {MAX_LINES} lines")
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        # Tolerated: trailing white space and blank lines (a trailing empty line is common).
        line = raw.rstrip(" \t")
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise SdpError(f"SDP line {number} too long")
        if len(line) < 2 or line[1] != "=" or line[0] not in _SESSION_LETTERS:
            raise SdpError(f"SDP line {number} is not <type>=<value>: {line[:40]!r}")
        if any(ch in line for ch in "\r\x00"):
            raise SdpError(f"SDP line {number} has a CR or NUL")
        lines.append(line)
    return lines


def _parse_session(data: bytes) -> SessionDescription:
    lines = _lines(data)
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP does not start with v=")
    if lines[0] != "v=0":
        raise SdpError(f"unsupported SDP version line {lines[0][:20]!r}")
    first_media = next((i for i, line in enumerate(lines) if line.startswith("m=")), len(lines))
    origin: Origin | None = None
    session_name = "-"
    connection: Connection | None = None
    bandwidths: list[str] = []
    times: list[str] = []
    attributes: list[Attribute] = []
    others: list[str] = []
    for line in lines[1:first_media]:
        kind, value = line[0], line[2:]
        if kind == "o":
            origin = _named(Origin.parse, value, line)
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _named(Connection.parse, value, line)
        elif kind == "b":
            bandwidths.append(value)
        elif kind == "t":
            times.append(value)
        elif kind == "a":
            attributes.append(_named(Attribute.parse, value, line))
        elif kind == "v":
            raise SdpError("SDP has a second v= line")
        else:
            others.append(line)
    if origin is None:
        raise SdpError("SDP has no o= line")
    session_direction = _direction(attributes)
    sections: list[list[str]] = []
    for line in lines[first_media:]:
        if line.startswith("m="):
            sections.append([line])
            if len(sections) > MAX_MEDIA:
                raise SdpError(f"SDP has more than {MAX_MEDIA} m= lines")
        elif line[0] in _MEDIA_LETTERS:
            sections[-1].append(line)
        else:
            raise SdpError(f"SDP line not allowed in a media section: {line[:40]!r}")
    return SessionDescription(
        version=0,
        origin=origin,
        session_name=session_name,
        connection=connection,
        bandwidths=tuple(bandwidths),
        times=tuple(times),
        attributes=tuple(attributes),
        media=tuple(_parse_media(section, session_direction) for section in sections),
        other_lines=tuple(others),
    )


def _lenient(parse: Callable[[str], _T], value: str) -> _T | None:
    try:
        return parse(value)
    except SdpError:
        return None


def _named(parse: Callable[[str], _T], value: str, line: str) -> _T:
    """Run ``parse``; re-raise its error with the offending line named."""
    try:
        return parse(value)
    except SdpError as error:
        raise SdpError(f"{error.reason} in {_redacted(line)[:80]!r}") from None


def _redacted(line: str) -> str:
    """A line fit for an error message: an a=crypto line loses its keys."""
    if line.startswith("a=crypto:"):
        return " ".join(line.split()[:2]) + " <keys redacted>"
    return line


def _direction(attributes: list[Attribute]) -> Direction | None:
    found = [_DIRECTIONS[a.name] for a in attributes if a.value is None and a.name in _DIRECTIONS]
    # RFC 3264 §5.1 allows one; the last one wins if a peer repeats itself.
    return found[-1] if found else None


def _parse_media(section: list[str], session_direction: Direction | None) -> MediaDescription:
    m_line = section[0]
    fields = m_line[2:].split()
    if len(fields) < 3:
        raise SdpError(f"m= needs media, port and proto: {m_line[:60]!r}")
    media, port_text, proto, *formats = fields
    port_digits, slash, count_digits = port_text.partition("/")
    if not _DIGITS_RE.fullmatch(port_digits) or int(port_digits) > 65535:
        raise SdpError(f"bad port in {m_line[:60]!r}")
    if slash and (not _DIGITS_RE.fullmatch(count_digits) or not 1 <= int(count_digits) <= 65535):
        raise SdpError(f"bad port count in {m_line[:60]!r}")
    if len(formats) > MAX_FORMATS:
        raise SdpError(f"more than {MAX_FORMATS} formats in an m= line")
    port = int(port_digits)
    # Tolerated: no formats on a disabled (port 0) m-line; nothing in it is used.
    if not formats and port != 0:
        raise SdpError(f"m= without formats: {m_line[:60]!r}")
    if _is_rtp(proto):
        payload_types = [_named(lambda f: _payload_type(f, "m="), f, m_line) for f in formats]
        if len(set(payload_types)) != len(payload_types):
            raise SdpError(f"repeated payload type in {m_line[:60]!r}")
    else:
        payload_types = []
    connection: Connection | None = None
    bandwidths: list[str] = []
    attributes: list[Attribute] = []
    for line in section[1:]:
        kind, rest = line[0], line[2:]
        if kind == "c":
            connection = _named(Connection.parse, rest, line)
        elif kind == "b":
            bandwidths.append(rest)
        elif kind == "a":
            attributes.append(_named(Attribute.parse, rest, line))
    label = rtcp_mux = ptime_ms = None
    explicit: dict[int, RtpMap] = {}
    fmtps: dict[int, Fmtp] = {}
    crypto: list[CryptoAttribute] = []
    a_lines = (ln for ln in section[1:] if ln[0] == "a")  # one attribute each, in order
    for attribute, line in zip(attributes, a_lines, strict=True):
        name, value = attribute.name, attribute.value
        if name == "label" and value is not None:
            label = value.strip()  # RFC 4574 §4
        elif name == "rtcp-mux":
            rtcp_mux = True  # RFC 5761 §5.1.1
        elif name == "ptime" and value is not None:
            ptime_ms = _named(_ptime_ms, value, line)
        # A malformed rtpmap, fmtp or crypto line is skipped (it stays in ``attributes``),
        # not fatal: offers from old gateways carry lines such as "a=rtpmap:31 LPC" for
        # formats srs would never choose (RFC 4475 §3.4), and RFC 4568 §7.1.2 declines an
        # unusable crypto line while the others are still considered.
        elif name == "rtpmap" and value is not None:
            rtpmap = _lenient(RtpMap.parse, value)
            if rtpmap is not None:
                explicit.setdefault(rtpmap.payload_type, rtpmap)
        elif name == "fmtp" and value is not None:
            fmtp = _lenient(Fmtp.parse, value)
            if fmtp is not None:
                fmtps.setdefault(fmtp.payload_type, fmtp)
        elif name == "crypto" and value is not None:
            attribute_crypto = _lenient(CryptoAttribute.parse, value)
            if attribute_crypto is not None:
                crypto.append(attribute_crypto)
    rtpmaps = tuple(
        explicit.get(pt) or STATIC_PAYLOAD_TYPES[pt]
        for pt in payload_types
        if pt in explicit or pt in STATIC_PAYLOAD_TYPES
    )
    return MediaDescription(
        media=media,
        port=port,
        port_count=int(count_digits) if slash else None,
        proto=proto,
        formats=tuple(formats),
        connection=connection,
        bandwidths=tuple(bandwidths),
        attributes=tuple(attributes),
        direction=_direction(attributes) or session_direction or Direction.SENDRECV,
        label=label,
        rtpmaps=rtpmaps,
        fmtps=tuple(fmtps[pt] for pt in payload_types if pt in fmtps),
        crypto=tuple(crypto),
        rtcp_mux=bool(rtcp_mux),
        ptime_ms=ptime_ms,
    )


def _ptime_ms(value: str) -> int:
    """``a=ptime:<ms>`` (RFC 4566 §6)."""
    text = value.strip()
    # Tolerated: a decimal ptime such as "20.0"; srs only needs whole milliseconds.
    whole, dot, fraction = text.partition(".")
    if not _DIGITS_RE.fullmatch(whole) or (dot and not fraction.isdigit()) or len(text) > 12:
        raise SdpError("bad a=ptime")
    return int(whole)
