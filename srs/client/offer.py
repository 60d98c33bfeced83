"""What ``srs call`` offers: a Twilio-shaped SIPREC INVITE body, and reading the answer.

Pure: no I/O.  The offer is an RFC 7866 §8 multipart/mixed body with an SDP offer (one
``a=sendonly`` m-line per track, ``a=label`` per RFC 4574) and RFC 7865 metadata that
describes each track as a ``<stream>`` sent by one participant and received by the others
(``participantstreamassoc``).  Custom parameters go into ``<extensiondata>`` as
``<Parameter name= value=>`` elements, the shape srs's server reads for Twilio
(INTEROP.md).  SRTP offers are RTP/SAVP with one ``a=crypto`` line per m-line
(RFC 4568 §9.1); the key is ours and is what we encrypt with (RFC 4568 §7.1.1).

The SDP and the multipart body are built with srs's own types
(:class:`~srs.sdp.description.SessionDescription`,
:class:`~srs.siprec.multipart.MultipartBody`); the XML with :mod:`xml.etree.ElementTree`,
never by formatting strings.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from srs.client.encode import SendCodec, send_codec
from srs.errors import SdpError, UsageError
from srs.rtp.srtp import SUITES, SrtpSuite
from srs.sdp.description import (
    Attribute,
    Connection,
    CryptoAttribute,
    CryptoKeyParam,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
)
from srs.siprec.multipart import BodyPart, MultipartBody

__all__ = [
    "METADATA_TYPE",
    "PARAMETER_NAMESPACE",
    "RECORDING_NAMESPACE",
    "AnsweredMedia",
    "CallIdentity",
    "OfferedTrack",
    "new_identity",
    "offer_sdp",
    "recording_metadata",
    "siprec_body",
    "read_answer",
    "srtp_suite",
]

RECORDING_NAMESPACE = "urn:ietf:params:xml:ns:recording:1"  # RFC 7865 §6.1
# The namespace of the <Parameter> extension elements; srs reads any namespace here.
PARAMETER_NAMESPACE = "urn:x-twilio:siprec"
METADATA_TYPE = "application/rs-metadata+xml"  # RFC 9806 (RFC 7866 §9 rs-metadata)
SDP_TYPE = "application/sdp"
BOUNDARY = "srs-call-boundary"
_SID_ALPHABET = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """The generated ids of one call, in Twilio's shapes (CA/AC + 32 hex digits)."""

    call_id: str
    from_tag: str
    call_sid: str
    account_sid: str
    session_id: str  # RFC 7865 §6.3: base64 of a 128-bit random value
    sdp_session_id: int


def _sid(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SID_ALPHABET) for _ in range(32))


def _b64_id() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def new_identity(account_sid: str | None = None) -> CallIdentity:
    """Fresh ids; Call-ID ends in ``@0.0.0.0`` like Twilio's (INTEROP.md)."""
    return CallIdentity(
        call_id=secrets.token_hex(16) + "@0.0.0.0",
        from_tag=secrets.token_hex(8),
        call_sid=_sid("CA"),
        account_sid=account_sid or _sid("AC"),
        session_id=_b64_id(),
        sdp_session_id=secrets.randbelow(2**62),
    )


@dataclass(frozen=True, slots=True)
class OfferedTrack:
    """One m-line we offer: where we send from, its label, and who speaks on it.

    ``key_salt`` is the SRTP master key and salt (RFC 4568 §6.1) when ``srtp`` is set;
    it never appears in ``repr``.
    """

    label: str
    port: int
    aor: str
    participant_id: str = field(default_factory=_b64_id)
    stream_id: str = field(default_factory=_b64_id)
    srtp: SrtpSuite | None = None
    key_salt: bytes = field(default=b"", repr=False)

    @classmethod
    def make(cls, label: str, port: int, aor: str, srtp: SrtpSuite | None = None) -> OfferedTrack:
        key = secrets.token_bytes(srtp.key_salt_bytes) if srtp is not None else b""
        return cls(label, port, aor, srtp=srtp, key_salt=key)


def offer_sdp(
    address: str,
    tracks: Sequence[OfferedTrack],
    *,
    session_id: int,
    version: int = 1,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    direction: Direction = Direction.SENDONLY,
) -> bytes:
    """The SDP offer (RFC 3264 §5): one audio m-line per track, ``direction`` on each.

    A new offer in the same session keeps the ports and raises ``version``
    (RFC 3264 §8: the o= version increases by one per new offer).
    """
    if not tracks:
        raise UsageError("an offer needs at least one track")
    if not codecs:
        raise UsageError("an offer needs at least one codec")
    sending = [send_codec(c) for c in codecs]
    addrtype = "IP6" if ":" in address else "IP4"
    media = []
    for number, track in enumerate(tracks, start=1):
        attributes = []
        for codec in sending:  # RFC 4566 §6: rtpmap, and fmtp where the format has one
            attributes.append(Attribute("rtpmap", codec.rtpmap))
            if codec.fmtp is not None:
                attributes.append(Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}"))
        attributes.append(Attribute("ptime", "20"))
        if track.srtp is not None:
            crypto = CryptoAttribute(number, track.srtp.name, (CryptoKeyParam(track.key_salt),))
            attributes.append(Attribute("crypto", bytes(crypto).decode("ascii")))
        attributes.append(Attribute("label", track.label))  # RFC 4574 §4, RFC 7866 §8.1.1
        attributes.append(Attribute(direction.value))
        media.append(
            MediaDescription(
                media="audio",
                port=track.port,
                port_count=None,
                proto="RTP/SAVP" if track.srtp is not None else "RTP/AVP",
                formats=tuple(str(c.payload_type) for c in sending),
                attributes=tuple(attributes),
            )
        )
    description = SessionDescription(
        version=0,
        origin=Origin("srs-call", str(session_id), version, "IN", addrtype, address),
        session_name="srs call",
        connection=Connection("IN", addrtype, address),
        times=("0 0",),
        media=tuple(media),
    )
    return bytes(description)


def _q(tag: str) -> str:
    return f"{{{RECORDING_NAMESPACE}}}{tag}"


def recording_metadata(
    identity: CallIdentity,
    tracks: Sequence[OfferedTrack],
    parameters: Mapping[str, str],
    *,
    partial: bool = False,
    associate_time: str | None = None,
) -> bytes:
    """RFC 7865 metadata for the tracks.

    ``complete`` (the INVITE's): the session (§6.3), one participant per track with its AOR
    (``nameID``, §6.4), one stream per track with its label (§6.5), and per participant
    the stream it sends and the ones it receives (``participantstreamassoc``, §6.8).
    ``partial`` (a later update, §6.1): the session and the extension data only, which
    replace the custom parameters on the server.
    """
    root = ET.Element(_q("recording"))
    ET.SubElement(root, _q("datamode")).text = "partial" if partial else "complete"
    session = ET.SubElement(root, _q("session"), session_id=identity.session_id)
    ET.SubElement(session, _q("sipSessionID")).text = identity.call_sid
    if associate_time is not None:
        ET.SubElement(session, _q("start-time")).text = associate_time
    if not partial:
        for track in tracks:
            participant = ET.SubElement(
                root, _q("participant"), participant_id=track.participant_id
            )
            ET.SubElement(participant, _q("nameID"), aor=track.aor)
        for track in tracks:
            stream = ET.SubElement(
                root, _q("stream"), stream_id=track.stream_id, session_id=identity.session_id
            )
            ET.SubElement(stream, _q("label")).text = track.label
        for track in tracks:
            assoc = ET.SubElement(
                root, _q("participantstreamassoc"), participant_id=track.participant_id
            )
            ET.SubElement(assoc, _q("send")).text = track.stream_id
            for other in tracks:
                if other is not track:
                    ET.SubElement(assoc, _q("recv")).text = other.stream_id
    if parameters:
        extension = ET.SubElement(root, _q("extensiondata"))
        for name, value in parameters.items():
            ET.SubElement(
                extension, f"{{{PARAMETER_NAMESPACE}}}Parameter", name=name, value=value
            )
    # ElementTree names the namespaces ns0 (RFC 7865) and ns1 (parameters): any prefix
    # is the same XML, and srs's server reads elements by local name anyway.
    # typeshed types tostring with a str encoding as Any ("unicode" gives a str); UTF-8
    # gives bytes.
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document


def siprec_body(sdp: bytes, metadata: bytes) -> tuple[str, bytes]:
    """The RFC 7866 §9 multipart/mixed body: the SDP, then the metadata part tagged
    ``Content-Disposition: recording-session``.  Returns (Content-Type, body)."""
    body = MultipartBody(
        BOUNDARY,
        (
            BodyPart((("Content-Type", SDP_TYPE),), sdp),
            BodyPart(
                (("Content-Type", METADATA_TYPE), ("Content-Disposition", "recording-session")),
                metadata,
            ),
        ),
    )
    return f"multipart/mixed;boundary={BOUNDARY}", bytes(body)


@dataclass(frozen=True, slots=True)
class AnsweredMedia:
    """What the answer says about one offered track (RFC 3264 §6).

    ``port`` 0 means the server declined the m-line.  ``codec`` is the first format of the
    answer's m-line that we offered (RFC 3264 §6.1: that is what we should send), with the
    payload type the answer gives it (what we send with).  ``srtp`` is the suite of the
    answer's ``a=crypto`` (whose tag must be the one we offered, RFC 4568 §7.1.2), None for
    plain RTP.
    """

    label: str
    host: str
    port: int
    codec: str | None
    payload_type: int | None
    srtp: str | None
    direction: Direction

    @property
    def accepted(self) -> bool:
        return self.port != 0 and self.codec is not None


def _offered_codec(media: MediaDescription, pt: int,
                   offered: Sequence[SendCodec]) -> SendCodec | None:
    """The offered codec the answer's ``pt`` names: by rtpmap encoding name and clock rate,
    or for a static type without rtpmap by its number (RFC 3551 §6)."""
    rtpmap = media.rtpmap(pt)
    for codec in offered:
        if rtpmap is None:
            if pt == codec.payload_type < 96:
                return codec
        elif (rtpmap.encoding_name.lower() == codec.name.lower()
              and rtpmap.clock_rate_hz == codec.clock_rate_hz):
            return codec
    return None


def read_answer(body: bytes, tracks: Sequence[OfferedTrack],
                codecs: Sequence[str] = ("PCMU", "PCMA")) -> tuple[AnsweredMedia, ...]:
    """Read an SDP answer to our offer of ``codecs``.  Raises :class:`SdpError` when it does
    not answer it: another m-line count (RFC 3264 §6), a codec or a crypto tag we never
    offered."""
    offered = [send_codec(c) for c in codecs]
    answer = SessionDescription.parse(body)
    if len(answer.media) != len(tracks):
        raise SdpError(f"answer has {len(answer.media)} m-lines for {len(tracks)} offered")
    out = []
    for number, (media, track) in enumerate(zip(answer.media, tracks, strict=True), start=1):
        connection = answer.connection_for(media)
        host = connection.host if connection is not None else ""
        if media.port == 0:
            out.append(AnsweredMedia(track.label, host, 0, None, None, None, media.direction))
            continue
        codec = payload_type = None
        for pt in media.payload_types:
            chosen_codec = _offered_codec(media, pt, offered)
            if chosen_codec is not None:
                codec, payload_type = chosen_codec.name, pt
                break
        if codec is None:
            raise SdpError(f"answer for {track.label!r} names no codec we offered")
        suite = None
        if track.srtp is not None:
            if not media.is_secure:
                raise SdpError(f"answer for {track.label!r} is not RTP/SAVP")
            chosen = [c for c in media.crypto if c.tag == number]
            if not chosen or chosen[0].suite != track.srtp.name:
                raise SdpError(f"answer for {track.label!r} has no a=crypto for our tag")
            suite = chosen[0].suite
        if connection is None:
            raise SdpError(f"answer for {track.label!r} has no c= line")
        out.append(AnsweredMedia(track.label, host, media.port, codec, payload_type, suite,
                                 media.direction))
    return tuple(out)


def srtp_suite(name: str) -> SrtpSuite:
    """The suite called ``name`` (case-insensitive); UsageError naming the known ones."""
    suite = SUITES.get(name.upper())
    if suite is None:
        raise UsageError(f"unknown SRTP suite {name!r}; known: {', '.join(SUITES)}")
    return suite

