"""RTP and RTCP packets on the wire (RFC 3550 §5.1, §6.4; RFC 5761 §4).

Pure: bytes in, typed values out.  Every parse failure is an
:class:`srs.errors.RtpError` whose ``drop_reason`` names the counter the packet goes to:

``"truncated"``
    fewer than 12 bytes, or the CSRC list or the 4-byte extension header runs past the end.
``"version"``
    the version field is not 2.
``"padding"``
    the padding count (last octet, RFC 3550 §5.1) is 0 or larger than what follows the header.
``"extension"``
    the header extension's length (RFC 3550 §5.3.1) runs past the end.
``"rtcp"``
    an RTCP compound packet that cannot be walked (detail says why).

The same parser serves plain RTP and the output of SRTP decryption, which is plain RTP.

:class:`RtpPacket` is on the per-packet path (docs/architecture.md, "Hot path"): it is a
slotted, non-frozen dataclass because a frozen one costs about 2.5 µs per construction on
CPython 3.11 against 0.5 µs; treat its fields as read-only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from srs.errors import RtpError, UsageError

__all__ = [
    "RTP_VERSION",
    "RTP_HEADER_BYTES",
    "RtpPacket",
    "RtcpPacket",
    "RtcpCompound",
    "is_rtcp",
    "RTCP_SR",
    "RTCP_RR",
]

RTP_VERSION = 2
RTP_HEADER_BYTES = 12  # RFC 3550 §5.1 fixed header
MAX_CSRC_COUNT = 15  # the CC field is 4 bits

# RFC 3550 §6.4.1 / §6.4.2 packet types.
RTCP_SR = 200
RTCP_RR = 201
# A compound packet is a handful of packets (RFC 3550 §6.1); anything past this is hostile.
MAX_RTCP_PACKETS = 32

_FIXED = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_WORD = struct.Struct("!I")
_RTCP_HEADER = struct.Struct("!BBH")


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` is RTCP rather than RTP on a shared port (RFC 5761 §4).

    RTCP packet types 192-223 land in the second octet where RTP keeps the marker bit and
    payload type; RFC 5761 §4 keeps RTP payload types 64-95 unused so that octet tells them
    apart.  The version bits are checked too; RTP parsing reports a bad version itself.
    """
    return len(data) >= 4 and (data[0] & 0xC0) == 0x80 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).  Construct from the wire with :meth:`parse`.

    ``padding_bytes`` is the number of padding octets including the count octet (0 when the
    P bit is clear); the padding content itself is not kept and is written back as zeros.
    ``extension_profile`` is ``None`` when there is no header extension; otherwise it holds
    the 16-bit "defined by profile" field (0xBEDE and 0x100X are the RFC 8285 one- and
    two-byte forms) and ``extension_data`` the extension body, kept raw.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension_data: bytes = b""
    padding_bytes: int = 0

    @property
    def version(self) -> int:
        """Always 2: :meth:`parse` rejects anything else (RFC 3550 §5.1)."""
        return RTP_VERSION

    @property
    def padding(self) -> bool:
        """The P bit."""
        return self.padding_bytes > 0

    @property
    def extension(self) -> bool:
        """The X bit."""
        return self.extension_profile is not None

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet.  Raises :class:`RtpError` (see the module docstring)."""
        length = len(data)
        if length < RTP_HEADER_BYTES:
            raise RtpError("truncated", f"{length} bytes")
        first, second, sequence_number, timestamp, ssrc = _FIXED.unpack_from(data, 0)
        if first == 0x80:
            # The common case: version 2, no padding, no extension, no CSRC.
            payload = bytes(data[RTP_HEADER_BYTES:])
            return cls(second & 0x7F, sequence_number, timestamp, ssrc, payload, second > 0x7F)
        if first >> 6 != RTP_VERSION:
            raise RtpError("version", str(first >> 6))
        offset = RTP_HEADER_BYTES
        csrc_count = first & 0x0F
        csrcs: tuple[int, ...] = ()
        if csrc_count:
            end = offset + 4 * csrc_count
            if end > length:
                raise RtpError("truncated", f"{csrc_count} CSRCs in {length} bytes")
            csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
            offset = end
        extension_profile: int | None = None
        extension_data = b""
        if first & 0x10:
            # RFC 3550 §5.3.1: 16-bit profile field, 16-bit length in 32-bit words.
            if offset + 4 > length:
                raise RtpError("truncated", "extension header past the end")
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += 4
            end = offset + 4 * words
            if end > length:
                raise RtpError("extension", f"{words} words past the end")
            extension_data = bytes(data[offset:end])
            offset = end
        end = length
        padding_bytes = 0
        if first & 0x20:
            # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            padding_bytes = data[length - 1]
            if padding_bytes == 0 or padding_bytes > length - offset:
                raise RtpError("padding", f"count {padding_bytes}")
            end = length - padding_bytes
        return cls(
            second & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            bytes(data[offset:end]),
            bool(second & 0x80),
            csrcs,
            extension_profile,
            extension_data,
            padding_bytes,
        )

    def __bytes__(self) -> bytes:
        """Serialise; ``RtpPacket.parse(bytes(p)) == p`` for every valid packet."""
        csrc_count = len(self.csrcs)
        if csrc_count > MAX_CSRC_COUNT:
            raise UsageError(f"{csrc_count} CSRCs, at most {MAX_CSRC_COUNT}")
        if not 0 <= self.payload_type <= 0x7F or not 0 <= self.padding_bytes <= 0xFF:
            raise UsageError("payload_type is 7 bits and padding_bytes 8 bits")
        has_extension = self.extension_profile is not None
        first = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding_bytes else 0)
            | (0x10 if has_extension else 0)
            | csrc_count
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_FIXED.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        if csrc_count:
            parts.append(struct.pack(f"!{csrc_count}I", *self.csrcs))
        if self.extension_profile is not None:
            words, remainder = divmod(len(self.extension_data), 4)
            extension_data = self.extension_data
            if remainder:
                # RFC 3550 §5.3.1: the extension is a whole number of 32-bit words.
                extension_data += bytes(4 - remainder)
                words += 1
            parts.append(_EXTENSION_HEADER.pack(self.extension_profile, words))
            parts.append(extension_data)
        parts.append(self.payload)
        if self.padding_bytes:
            parts.append(bytes(self.padding_bytes - 1) + bytes((self.padding_bytes,)))
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One packet of an RTCP compound packet (RFC 3550 §6.4), kept mostly raw.

    ``count`` is the 5-bit RC/SC/FMT field.  ``ssrc`` is the first 32-bit word after the
    header, which is the sender's SSRC for SR, RR (RFC 3550 §6.4.1-2) and the feedback
    packets, and the first chunk's SSRC for SDES and BYE; ``None`` for an empty packet.
    ``body`` holds the octets after that word, padding included.
    """

    packet_type: int
    count: int
    ssrc: int | None
    body: bytes = b""
    padding: bool = False

    def __bytes__(self) -> bytes:
        content = b"" if self.ssrc is None else _WORD.pack(self.ssrc) + self.body
        words, remainder = divmod(len(content), 4)
        if remainder:
            raise UsageError("an RTCP packet is a whole number of 32-bit words")
        first = (RTP_VERSION << 6) | (0x20 if self.padding else 0) | (self.count & 0x1F)
        return _RTCP_HEADER.pack(first, self.packet_type, words) + content


@dataclass(frozen=True, slots=True)
class RtcpCompound:
    """An RTCP compound packet (RFC 3550 §6.1): one or more :class:`RtcpPacket`."""

    packets: tuple[RtcpPacket, ...]

    @property
    def sender_ssrc(self) -> int | None:
        """SSRC of the first SR or RR in the compound, ``None`` if there is none."""
        for packet in self.packets:
            if packet.packet_type in (RTCP_SR, RTCP_RR):
                return packet.ssrc
        return None

    @property
    def sender_reports(self) -> int:
        return sum(1 for p in self.packets if p.packet_type == RTCP_SR)

    @property
    def receiver_reports(self) -> int:
        return sum(1 for p in self.packets if p.packet_type == RTCP_RR)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtcpCompound:
        """Walk a compound packet by its length fields (RFC 3550 §6.4, A.2 validity).

        RFC 3550 A.2 also wants the compound to start with SR or RR; reduced-size RTCP
        (RFC 5506, sent by WebRTC-derived clients) does not, so that rule is not enforced.
        """
        length = len(data)
        if length < 4:
            raise RtpError("rtcp", "truncated")
        packets: list[RtcpPacket] = []
        offset = 0
        while offset < length:
            if len(packets) == MAX_RTCP_PACKETS:
                raise RtpError("rtcp", "too many packets")
            if offset + 4 > length:
                raise RtpError("rtcp", "truncated")
            first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
            if first >> 6 != RTP_VERSION:
                raise RtpError("rtcp", "version")
            end = offset + 4 + 4 * words
            if end > length:
                raise RtpError("rtcp", "length past the end")
            ssrc: int | None = None
            body = b""
            if words:
                (ssrc,) = _WORD.unpack_from(data, offset + 4)
                body = bytes(data[offset + 8 : end])
            packets.append(RtcpPacket(packet_type, first & 0x1F, ssrc, body, bool(first & 0x20)))
            offset = end
        return cls(tuple(packets))

    def __bytes__(self) -> bytes:
        return b"".join(bytes(p) for p in self.packets)
