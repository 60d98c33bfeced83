"""SIP message bodies: media types, ``multipart/mixed`` splitting, and the SIPREC body.

A SIPREC INVITE carries its SDP offer and its RFC 7865 metadata as two parts of a
``multipart/mixed`` body (RFC 7866 §9, RFC 2046 §5.1).  This module splits such a body into
:class:`BodyPart` values and picks the SDP and metadata parts out of it
(:func:`split_siprec_body`).  It is pure: bytes and the ``Content-Type`` value in, values out.

Everything here comes from the network: sizes and counts are bounded and every malformed
input raises a :class:`~srs.errors.PeerError` subclass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from srs.errors import NotAcceptableHere, SipParseError, UnsupportedMediaType

__all__ = [
    "ACCEPTED_BODY_TYPES",
    "BodyPart",
    "MAX_BODY_BYTES",
    "MAX_PARTS",
    "MediaType",
    "MissingSdp",
    "MultipartBody",
    "MultipartError",
    "SiprecBody",
    "split_siprec_body",
]

# Bodies of 3-4 KB arrive over UDP; a TCP peer may send more, but a recording offer with
# metadata for a large conference stays far below this.
MAX_BODY_BYTES = 131_072
# SDP + metadata, plus what vendors add (Cisco's application/gtd) and room to spare.
MAX_PARTS = 16
MAX_PART_HEADERS = 32
MAX_HEADER_VALUE_CHARS = 1024
# RFC 2046 §5.1.1 allows 1 to 70 characters; some peers exceed it slightly.
MAX_BOUNDARY_CHARS = 200
MAX_MEDIA_TYPE_PARAMS = 16

SDP_TYPE = "application/sdp"
MULTIPART_MIXED_TYPE = "multipart/mixed"
# RFC 9806 registered the +xml name; older clients send the name RFC 7866 §9 used.
METADATA_TYPES = ("application/rs-metadata+xml", "application/rs-metadata")
# RFC 7866 §9: the metadata part is tagged with this disposition type.
RECORDING_SESSION_DISPOSITION = "recording-session"

# For the Accept header of a 415 response (RFC 3261 §21.4.13).
ACCEPTED_BODY_TYPES = (SDP_TYPE, MULTIPART_MIXED_TYPE, *METADATA_TYPES)

# RFC 2045 §5.1 token characters (everything printable except tspecials and space).
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class MultipartError(SipParseError):
    """A message body that cannot be split into parts (RFC 2046 §5.1): 400."""


class MissingSdp(NotAcceptableHere):
    """The body carries no ``application/sdp`` part: 488.

    srs only answers offers (RFC 3264 §5): an INVITE whose body holds metadata but no SDP
    gives it no media to accept, which is what 488 Not Acceptable Here means
    (RFC 3261 §21.4.26).  415 would be wrong: the body's type *is* supported, and
    RFC 3261 §21.4.13 would have us list in ``Accept`` the very types the peer used.
    """


@dataclass(frozen=True, slots=True)
class MediaType:
    """A media type with its parameters (RFC 2045 §5.1, RFC 3261 §20.15).

    ``type`` and ``subtype`` are lower-cased; parameter names are lower-cased, values kept.
    """

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> MediaType:
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise MultipartError("Content-Type too long")
        main, _, rest = value.partition(";")
        type_, slash, subtype = main.strip().partition("/")
        type_, subtype = type_.strip(), subtype.strip()
        if not slash or not _TOKEN_RE.fullmatch(type_) or not _TOKEN_RE.fullmatch(subtype):
            raise MultipartError(f"bad media type {main.strip()[:40]!r}")
        return cls(type_.lower(), subtype.lower(), _parse_params(rest))

    @property
    def essence(self) -> str:
        """``type/subtype``, lower case: what to compare."""
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        """The first parameter called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.params if key == wanted), None)

    def __str__(self) -> str:
        text = self.essence
        for key, value in self.params:
            quoted = value if _TOKEN_RE.fullmatch(value) else _quote(value)
            text += f";{key}={quoted}"
        return text


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_params(text: str) -> tuple[tuple[str, str], ...]:
    """``;name=value`` pairs, the value a token or a quoted-string (RFC 2045 §5.1).

    ``text`` is what follows the first ``;`` of the header value.
    """
    params: list[tuple[str, str]] = []
    pos = 0
    while True:
        # Tolerated: empty parameters (";;", a trailing ";").
        while pos < len(text) and text[pos] in " \t;":
            pos += 1
        if pos == len(text):
            return tuple(params)
        eq = text.find("=", pos)
        name = text[pos:] if eq == -1 else text[pos:eq].strip().lower()
        if eq == -1 or not _TOKEN_RE.fullmatch(name):
            raise MultipartError(f"bad media type parameter {name[:40]!r}")
        value, pos = _param_value(text, eq + 1)
        params.append((name, value))
        if len(params) > MAX_MEDIA_TYPE_PARAMS:
            raise MultipartError("too many media type parameters")
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] != ";":
            raise MultipartError(f"junk after media type parameter {name[:40]!r}")


def _param_value(text: str, pos: int) -> tuple[str, int]:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos < len(text) and text[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text):
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char == '"':
                return "".join(chars), pos + 1
            chars.append(char)
            pos += 1
        raise MultipartError("unterminated quoted media type parameter")
    end = pos
    # Tolerated: unquoted values with characters outside token (e.g. "=" or "/" in a
    # boundary); several SIP stacks send them.  The value runs to ";" or white space.
    while end < len(text) and text[end] not in "; \t":
        end += 1
    if end == pos:
        raise MultipartError("empty media type parameter value")
    return text[pos:end], end


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One body part: its headers (name, value) in order, and its body bytes."""

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def content_type(self) -> MediaType:
        """The part's type; RFC 2046 §5.1 defaults it to ``text/plain``."""
        value = self.header("Content-Type")
        return MediaType("text", "plain") if value is None else MediaType.parse(value)

    @property
    def disposition(self) -> str | None:
        """The disposition type of ``Content-Disposition`` (RFC 3261 §20.11), lower case."""
        value = self.header("Content-Disposition")
        if value is None:
            return None
        return value.partition(";")[0].strip().lower() or None

    def __bytes__(self) -> bytes:
        head = b"".join(f"{name}: {value}\r\n".encode() for name, value in self.headers)
        return head + b"\r\n" + self.body


@dataclass(frozen=True, slots=True)
class MultipartBody:
    """A ``multipart/mixed`` body split into its parts (RFC 2046 §5.1.1).

    The preamble and epilogue are dropped, as RFC 2046 §5.1.1 says they are to be ignored.
    """

    boundary: str
    parts: tuple[BodyPart, ...]

    @classmethod
    def parse(cls, data: bytes, content_type: MediaType | str) -> MultipartBody:
        media_type = (
            content_type if isinstance(content_type, MediaType) else MediaType.parse(content_type)
        )
        if media_type.type != "multipart":
            raise MultipartError(f"not a multipart type: {media_type.essence}")
        boundary = media_type.param("boundary")
        if not boundary:
            raise MultipartError("multipart Content-Type without boundary")
        if len(boundary) > MAX_BOUNDARY_CHARS:
            raise MultipartError("multipart boundary too long")
        if len(data) > MAX_BODY_BYTES:
            raise MultipartError(f"body over {MAX_BODY_BYTES} bytes")
        try:
            boundary_bytes = boundary.encode("ascii")
        except UnicodeEncodeError:
            raise MultipartError("multipart boundary is not ASCII") from None
        return cls(boundary, tuple(_parse_part(raw) for raw in _split(data, boundary_bytes)))

    def __bytes__(self) -> bytes:
        delimiter = b"--" + self.boundary.encode("ascii")
        out = b"".join(delimiter + b"\r\n" + bytes(part) + b"\r\n" for part in self.parts)
        return out + delimiter + b"--\r\n"


def _split(data: bytes, boundary: bytes) -> list[bytes]:
    """The raw parts between delimiter lines (RFC 2046 §5.1.1).

    A delimiter is ``--boundary`` at the start of a line, optionally followed by ``--``
    (the close delimiter) and white space (transport padding), then the end of the line.
    The line break before a delimiter belongs to the delimiter.
    """
    # Tolerated: LF-only line endings (seen from several SRCs) besides CRLF.
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(data):
        if start is not None:
            parts.append(data[start : match.start()])
            if len(parts) > MAX_PARTS:
                raise MultipartError(f"more than {MAX_PARTS} body parts")
        if match.group(1):
            return _non_empty(parts)
        start = match.end()
    if start is not None:
        # Tolerated: a body without the close delimiter (seen from several SRCs); the
        # last part runs to the end of the body.
        parts.append(data[start:])
        if len(parts) > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} body parts")
    return _non_empty(parts)


def _non_empty(parts: list[bytes]) -> list[bytes]:
    if not parts:
        raise MultipartError("no body part delimited by the boundary")
    return parts


_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


def _parse_part(raw: bytes) -> BodyPart:
    """Split one part into headers and body at the first empty line (RFC 2046 §5.1)."""
    if not raw:
        return BodyPart((), b"")
    if raw.startswith((b"\r\n", b"\n")):
        # No headers at all: the part is text/plain (RFC 2046 §5.1).
        return BodyPart((), raw[2:] if raw.startswith(b"\r\n") else raw[1:])
    end = _HEADER_END_RE.search(raw)
    head, body = (raw, b"") if end is None else (raw[: end.start()], raw[end.end() :])
    return BodyPart(_parse_headers(head), body)


def _parse_headers(head: bytes) -> tuple[tuple[str, str], ...]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError("body part headers are not UTF-8") from None
    headers: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            # RFC 3261 §7.3.1: a line starting with white space continues the header.
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        else:
            # Tolerated: no space after ":" (seen from several SRCs); RFC 3261 §7.3.1
            # allows any amount of white space there anyway.
            name, colon, value = line.partition(":")
            name = name.strip()
            if not colon or not _TOKEN_RE.fullmatch(name):
                raise MultipartError(f"bad body part header line {line[:40]!r}")
            headers.append((name, value.strip()))
            if len(headers) > MAX_PART_HEADERS:
                raise MultipartError(f"more than {MAX_PART_HEADERS} body part headers")
        if len(headers[-1][1]) > MAX_HEADER_VALUE_CHARS:
            raise MultipartError(f"body part header {headers[-1][0][:40]!r} too long")
    return tuple(headers)


@dataclass(frozen=True, slots=True)
class SiprecBody:
    """The SDP and metadata of a SIPREC request body (RFC 7866 §9).

    ``sdp`` is None for a metadata-only body (e.g. a metadata-only UPDATE); ``metadata``
    is None when the SRC sent SDP alone, which is recorded all the same.
    ``other_parts`` keeps every further part (e.g. Cisco's ``application/gtd``).
    """

    sdp: bytes | None
    metadata: bytes | None
    metadata_type: str | None = None
    other_parts: tuple[BodyPart, ...] = ()


def split_siprec_body(
    data: bytes, content_type: str | None, *, require_sdp: bool = True
) -> SiprecBody:
    """Pick the SDP and RFC 7865 metadata out of a request body of any supported type.

    * ``application/sdp``: SDP only (sippy, Cisco network-based recording send this).
    * ``application/rs-metadata+xml`` / ``application/rs-metadata``: metadata only.
    * ``multipart/mixed`` (RFC 2046 §5.1): the first ``application/sdp`` part and the
      metadata part (RFC 7866 §9), found by type or by its ``recording-session``
      disposition.

    Raises :class:`~srs.errors.UnsupportedMediaType` (415) for any other type, with
    :data:`ACCEPTED_BODY_TYPES` meant for the ``Accept`` header; :class:`MultipartError`
    (400) for a malformed multipart body; :class:`MissingSdp` (488) when ``require_sdp``
    and no SDP is found (including an empty body).
    """
    if len(data) > MAX_BODY_BYTES:
        raise MultipartError(f"body over {MAX_BODY_BYTES} bytes")
    if not data and not content_type:
        return _checked(SiprecBody(None, None), require_sdp)
    if content_type is None or not content_type.strip():
        # RFC 3261 §20.15: a non-empty body must be described by Content-Type.
        raise UnsupportedMediaType("body without Content-Type")
    media_type = MediaType.parse(content_type)
    essence = media_type.essence
    if essence == SDP_TYPE:
        return _checked(SiprecBody(data, None), require_sdp)
    if essence in METADATA_TYPES:
        return _checked(SiprecBody(None, data, essence), require_sdp)
    if essence != MULTIPART_MIXED_TYPE:
        raise UnsupportedMediaType(f"unsupported body type {essence}")
    parts = MultipartBody.parse(data, media_type).parts
    sdp_index = next(
        (i for i, part in enumerate(parts) if _essence(part) == SDP_TYPE), None
    )
    metadata_index = _metadata_index(parts)
    others = tuple(p for i, p in enumerate(parts) if i not in (sdp_index, metadata_index))
    return _checked(
        SiprecBody(
            sdp=None if sdp_index is None else parts[sdp_index].body,
            metadata=None if metadata_index is None else parts[metadata_index].body,
            metadata_type=None if metadata_index is None else _essence(parts[metadata_index]),
            other_parts=others,
        ),
        require_sdp,
    )


def _essence(part: BodyPart) -> str:
    try:
        return part.content_type.essence
    except MultipartError:
        # A part whose type we cannot read is kept among the other parts, not fatal.
        return "application/octet-stream"


def _metadata_index(parts: tuple[BodyPart, ...]) -> int | None:
    """The metadata part: by type, preferring one tagged ``recording-session``.

    RFC 7866 §9 tags the metadata part with ``Content-Disposition: recording-session``.
    """
    typed = [i for i, part in enumerate(parts) if _essence(part) in METADATA_TYPES]
    tagged = [i for i in typed if parts[i].disposition == RECORDING_SESSION_DISPOSITION]
    if tagged:
        return tagged[0]
    if typed:
        return typed[0]
    # Tolerated: the recording-session disposition on a generic XML type
    # (application/xml); the disposition names the part's purpose unambiguously.
    return next(
        (
            i
            for i, part in enumerate(parts)
            if part.disposition == RECORDING_SESSION_DISPOSITION
            and _essence(part) in ("application/xml", "text/xml")
        ),
        None,
    )


def _checked(body: SiprecBody, require_sdp: bool) -> SiprecBody:
    if require_sdp and body.sdp is None:
        raise MissingSdp("no application/sdp offer in the body")
    return body
