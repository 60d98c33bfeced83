"""The SDP answer srs gives to a recording offer (RFC 3264 §6, RFC 7866 §8).

:func:`build_answer` takes the parsed offer and what the session layer decided (our origin,
the media address, one local port per m-line, the codecs we decode, an SRTP key per
m-line) and returns an :class:`SdpAnswer`: the answer description, ``bytes(answer)`` for the
200 OK body, and per m-line an :class:`AnsweredStream` telling the media layer what to
expect on that port.

The answer always has one m-line per offered m-line, in the offer's order (RFC 3264 §6).
An m-line srs cannot take gets port 0; only when no m-line at all can be taken is the
offer refused, with :class:`~srs.errors.SdpError` (488).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from srs.errors import SdpError, UsageError
from srs.sdp.description import (
    Attribute,
    Connection,
    CryptoAttribute,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)

__all__ = [
    "AnsweredStream",
    "DEFAULT_CODECS",
    "SdpAnswer",
    "SupportedCodec",
    "build_answer",
]

# Profiles whose RTP srs can receive.  AVPF/SAVPF differ only in RTCP feedback, which a
# receive-only recorder never sends (RFC 4585 §3.5).
_ACCEPTED_PROTOS = frozenset(("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"))
TELEPHONE_EVENT = "telephone-event"  # RFC 4733 §7.1.1


@dataclass(frozen=True, slots=True)
class SupportedCodec:
    """A codec srs can decode: RTP encoding name (case-insensitive), SDP clock rate
    (``None``: any rate, as L16 takes) and the ``a=rtpmap`` channel counts it takes
    (``None`` is an rtpmap without one)."""

    encoding_name: str
    clock_rate_hz: int | None
    channels: tuple[int | None, ...] = (None, 1)
    rates_hz: tuple[int, int] = (1, 1 << 32)  # the clock rates taken when it is None
    # a=fmtp parameters that, set to anything but 0, mean a payload format srs does not
    # parse (RFC 4867 §8.1: AMR's crc, robust-sorting, interleaving)
    refused_fmtp: tuple[str, ...] = ()

    def matches(self, rtpmap: RtpMap, fmtp: Mapping[str, str] | None = None) -> bool:
        if (rtpmap.encoding_name.lower() != self.encoding_name.lower()
                or rtpmap.channels not in self.channels):
            return False
        if self.clock_rate_hz is None:
            if not self.rates_hz[0] <= rtpmap.clock_rate_hz <= self.rates_hz[1]:
                return False
        elif rtpmap.clock_rate_hz != self.clock_rate_hz:
            return False
        return not any((fmtp or {}).get(name, "0") not in ("0", "")
                       for name in self.refused_fmtp)


# The pure SDP layer's default: G.711 (RFC 3551 §4.5.14).  The recording core passes
# every codec the installed decoders take (srs.recording.stream.supported_codecs).
DEFAULT_CODECS = (SupportedCodec("PCMU", 8000), SupportedCodec("PCMA", 8000))


@dataclass(frozen=True, slots=True)
class AnsweredStream:
    """What the answer said about one offered m-line, for the media layer.

    ``port`` is 0 when the m-line is declined; ``decline_reason`` then says why and the
    codec fields are None.  ``payload_type`` / ``encoding_name`` / ``clock_rate_hz`` are the
    one codec the SRC may send; ``telephone_event_payload_type`` is the RFC 4733 payload
    type, if any.  ``rtcp_mux`` tells the receiver that RTCP shares the RTP port
    (RFC 5761).  ``crypto`` is the key the answer carries for an SRTP m-line.
    """

    index: int
    label: str | None
    port: int
    direction: Direction
    payload_type: int | None = None
    encoding_name: str | None = None
    clock_rate_hz: int | None = None
    telephone_event_payload_type: int | None = None
    rtcp_mux: bool = False
    crypto: CryptoAttribute | None = None
    decline_reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.port != 0


@dataclass(frozen=True, slots=True)
class SdpAnswer:
    """The answer: ``description`` (``bytes(answer)`` is the body) and one stream per m-line."""

    description: SessionDescription
    streams: tuple[AnsweredStream, ...]

    def __bytes__(self) -> bytes:
        return bytes(self.description)


def build_answer(
    offer: SessionDescription,
    *,
    origin_username: str,
    origin_session_id: str,
    origin_session_version: int,
    media_address: str,
    local_ports: Sequence[int],
    codecs: Sequence[SupportedCodec] = DEFAULT_CODECS,
    answer_crypto: Sequence[CryptoAttribute | None] | None = None,
    our_order: bool = False,
) -> SdpAnswer:
    """Answer ``offer`` as a recorder (RFC 3264 §6, RFC 7866 §8).

    ``local_ports[i]`` is our RTP port for m-line ``i`` (0 declines it).  ``codecs`` are
    what srs decodes; the first offered one of them is chosen, in the offer's order, or
    in the order of ``codecs`` with ``our_order`` (an operator's preference list).
    ``answer_crypto[i]`` is our key for an SRTP m-line, with the tag and suite of the
    offered ``a=crypto`` it accepts (RFC 4568 §7.1.2); an SRTP m-line without one is
    declined.  The caller keeps
    ``origin_session_version`` and increments it for each new answer (RFC 3264 §8).

    Raises :class:`~srs.errors.SdpError` (488) when no m-line can be taken, and
    :class:`~srs.errors.UsageError` for arguments that do not fit the offer.
    """
    count = len(offer.media)
    if len(local_ports) != count:
        raise UsageError(f"{len(local_ports)} local ports for {count} m-lines")
    if any(not 0 <= port <= 65535 for port in local_ports):
        raise UsageError("local port out of range")
    crypto_per_line = list(answer_crypto) if answer_crypto is not None else [None] * count
    if len(crypto_per_line) != count:
        raise UsageError(f"{len(crypto_per_line)} answer keys for {count} m-lines")
    try:
        address = ipaddress.ip_address(media_address)
    except ValueError:
        raise UsageError(f"media address is not an IP address: {media_address!r}") from None
    if origin_session_version < 0 or not origin_session_id.isdigit():
        raise UsageError("origin session id and version must be non-negative integers")
    addrtype = "IP4" if address.version == 4 else "IP6"
    answered = [
        _answer_media(i, media, local_ports[i], codecs, crypto_per_line[i], our_order)
        for i, media in enumerate(offer.media)
    ]
    if not any(stream.accepted for stream, _ in answered):
        reasons = "; ".join(
            f"m-line {stream.index}: {stream.decline_reason}" for stream, _ in answered
        )
        raise SdpError(f"no acceptable media ({reasons})" if reasons else "no m-lines offered")
    description = SessionDescription(
        version=0,
        origin=Origin(
            origin_username,
            origin_session_id,
            origin_session_version,
            "IN",
            addrtype,
            address.compressed,
        ),
        session_name="-",
        connection=Connection("IN", addrtype, address.compressed),
        times=("0 0",),
        media=tuple(media for _, media in answered),
    )
    # Parsing our own bytes fills the typed fields (direction, label, rtpmaps) of each
    # m-line, so the returned description reads exactly like one received.
    return SdpAnswer(
        SessionDescription.parse(bytes(description)),
        tuple(stream for stream, _ in answered),
    )


def _answer_media(
    index: int,
    offered: MediaDescription,
    local_port: int,
    codecs: Sequence[SupportedCodec],
    crypto: CryptoAttribute | None,
    our_order: bool,
) -> tuple[AnsweredStream, MediaDescription]:
    reason = _decline_reason(offered, local_port, crypto)
    chosen = None
    if reason is None:
        chosen = _choose_codec(offered, codecs, our_order)
        if chosen is None:
            reason = "no codec srs decodes"
    if reason is not None or chosen is None:
        return _declined(index, offered, reason or "declined")
    # RFC 3264 §6.1: we only receive.  An offered recvonly or inactive stream sends
    # nothing to us, so the answer is inactive.
    if offered.direction in (Direction.SENDONLY, Direction.SENDRECV):
        direction = Direction.RECVONLY
    else:
        direction = Direction.INACTIVE
    event = _telephone_event(offered, chosen.clock_rate_hz)
    formats = [str(chosen.payload_type)]
    attributes = [Attribute("rtpmap", str(chosen))]
    if (fmtp := offered.fmtp(chosen.payload_type)) is not None:
        attributes.append(Attribute("fmtp", str(fmtp)))
    if event is not None:
        # RFC 4733 §7.1.1: keep the offered payload type and events so DTMF reaches us.
        formats.append(str(event.payload_type))
        attributes.append(Attribute("rtpmap", str(event)))
        if (fmtp := offered.fmtp(event.payload_type)) is not None:
            attributes.append(Attribute("fmtp", str(fmtp)))
    if offered.label is not None:
        attributes.append(Attribute("label", offered.label))  # RFC 4574 §4, RFC 7866 §8
    attributes.append(Attribute(direction.value))
    if offered.rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))  # RFC 5761 §5.1.1
    if crypto is not None:
        attributes.append(Attribute("crypto", bytes(crypto).decode("ascii")))
    media = MediaDescription(
        media=offered.media,
        port=local_port,
        port_count=None,
        proto=offered.proto,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )
    stream = AnsweredStream(
        index=index,
        label=offered.label,
        port=local_port,
        direction=direction,
        payload_type=chosen.payload_type,
        encoding_name=chosen.encoding_name,
        clock_rate_hz=chosen.clock_rate_hz,
        telephone_event_payload_type=None if event is None else event.payload_type,
        rtcp_mux=offered.rtcp_mux,
        crypto=crypto,
    )
    return stream, media


def _decline_reason(
    offered: MediaDescription, local_port: int, crypto: CryptoAttribute | None
) -> str | None:
    if offered.port == 0:
        return "disabled in the offer"  # RFC 3264 §6: port zero stays zero
    if local_port == 0:
        return "no local port"
    if offered.media != "audio":
        return f"{offered.media[:20]} is not recorded"
    if offered.proto.upper() not in _ACCEPTED_PROTOS:
        return f"unsupported transport {offered.proto[:30]}"
    if offered.is_secure:
        if crypto is None:
            return "no acceptable SRTP crypto suite"
        if not any(c.tag == crypto.tag and c.suite == crypto.suite for c in offered.crypto):
            raise UsageError("answer a=crypto does not match an offered tag and suite")
    elif crypto is not None:
        raise UsageError("answer a=crypto given for an RTP/AVP m-line")
    return None


def _choose_codec(offered: MediaDescription, codecs: Sequence[SupportedCodec],
                  our_order: bool) -> RtpMap | None:
    """The first offered codec srs decodes, in the offerer's order (RFC 3264 §5.1: an
    m-line lists its formats in order of preference), or in ours with ``our_order``.
    A recording client forks the codec the call uses and lists it first (an SBC does not
    transcode for the recorder), so by default that is the one srs records."""
    params = {m.payload_type: f.params() for m in offered.rtpmaps
              if (f := offered.fmtp(m.payload_type)) is not None}
    if our_order:
        for codec in codecs:
            for rtpmap in offered.rtpmaps:
                if codec.matches(rtpmap, params.get(rtpmap.payload_type)):
                    return rtpmap
        return None
    for rtpmap in offered.rtpmaps:
        if any(codec.matches(rtpmap, params.get(rtpmap.payload_type)) for codec in codecs):
            return rtpmap
    return None


def _telephone_event(offered: MediaDescription, clock_rate_hz: int) -> RtpMap | None:
    """The offered RFC 4733 payload type at the chosen codec's clock rate, else the first
    one offered at another rate (RFC 4733 §2.1 ties an event's timestamps to its own
    rtpmap rate; the track converts them)."""
    events = [m for m in offered.rtpmaps if m.encoding_name.lower() == TELEPHONE_EVENT]
    same = [m for m in events if m.clock_rate_hz == clock_rate_hz]
    return next(iter(same or events), None)


def _declined(
    index: int, offered: MediaDescription, reason: str
) -> tuple[AnsweredStream, MediaDescription]:
    """A rejected stream: port 0 and the offered transport (RFC 3264 §6)."""
    # RFC 3264 §6: a rejected stream still lists at least one format; echo the first.
    formats = offered.formats[:1] or ("0",)
    attributes = (Attribute("label", offered.label),) if offered.label is not None else ()
    media = MediaDescription(
        media=offered.media,
        port=0,
        port_count=None,
        proto=offered.proto,
        formats=formats,
        attributes=attributes,
    )
    stream = AnsweredStream(
        index=index,
        label=offered.label,
        port=0,
        direction=Direction.INACTIVE,
        decline_reason=reason,
    )
    return stream, media
