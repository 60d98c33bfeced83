"""What decoding a capture yields, and the UDP (RFC 768) and TCP (RFC 9293) headers.

The values handed to the caller:

* :class:`Datagram` -- one UDP datagram (SIP or RTP/RTCP, as received);
* :class:`StreamChunk` -- bytes of a TCP stream, in stream order, to feed a SIP stream parser;
* :class:`StreamGap` -- bytes of a TCP stream that were never captured: a stream parser fed
  across it would misframe, so the caller resets its parser;
* :class:`StreamClosed` -- a TCP stream ended (FIN reached in order, RST, or given up).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

from srs.capture.errors import PacketDecodeError

__all__ = [
    "Flow",
    "Datagram",
    "StreamChunk",
    "StreamGap",
    "StreamClosed",
    "CaptureEvent",
    "TcpSegment",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "TCP_FIN",
    "TCP_SYN",
    "TCP_RST",
    "TCP_PSH",
    "TCP_ACK",
    "parse_udp",
    "parse_tcp",
]

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
# RFC 9293 §3.1 control bits.
TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
_UDP_HEADER = struct.Struct("!HHHH")
_TCP_HEADER = struct.Struct("!HHIIBB")
_UDP_HEADER_BYTES: Final = 8
_TCP_MIN_HEADER_BYTES: Final = 20


class Flow(NamedTuple):
    """One direction of a TCP connection: who sent the bytes to whom."""

    src: str
    sport: int
    dst: str
    dport: int

    def reversed(self) -> Flow:
        return Flow(self.dst, self.dport, self.src, self.sport)


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram as captured; ``timestamp`` in seconds since the epoch."""

    timestamp: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    transport: str = "udp"


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """The next bytes of ``flow``'s stream, when they became readable in order."""

    timestamp: float
    flow: Flow
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamGap:
    """``missing_bytes`` of ``flow``'s stream were not captured before the next chunk."""

    timestamp: float
    flow: Flow
    missing_bytes: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """``flow``'s stream ended: ``reason`` is ``"fin"``, ``"rst"`` or ``"evicted"``."""

    timestamp: float
    flow: Flow
    reason: str


CaptureEvent = Datagram | StreamChunk | StreamGap | StreamClosed


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """A TCP segment's fields that reassembly needs (RFC 9293 §3.1)."""

    flow: Flow
    seq: int
    flags: int
    payload: bytes


def parse_udp(segment: bytes) -> tuple[int, int, bytes]:
    """RFC 768: (source port, destination port, payload); the checksum is not verified."""
    if len(segment) < _UDP_HEADER_BYTES:
        raise PacketDecodeError("udp-truncated", f"{len(segment)} bytes")
    sport, dport, length, _checksum = _UDP_HEADER.unpack_from(segment)
    if length < _UDP_HEADER_BYTES or length > len(segment):
        # Length 0 is an IPv6 jumbogram's (RFC 2675 §4); anything shorter than the header or
        # longer than the IP payload is broken.
        raise PacketDecodeError("udp-length", f"length {length} in {len(segment)} bytes")
    return sport, dport, segment[_UDP_HEADER_BYTES:length]


def parse_tcp(src: str, dst: str, segment: bytes) -> TcpSegment:
    """RFC 9293 §3.1: the flow, sequence number, control bits and payload of a segment."""
    if len(segment) < _TCP_MIN_HEADER_BYTES:
        raise PacketDecodeError("tcp-truncated", f"{len(segment)} bytes")
    sport, dport, seq, _ack, offset_byte, flags = _TCP_HEADER.unpack_from(segment)
    header_bytes = (offset_byte >> 4) * 4
    if header_bytes < _TCP_MIN_HEADER_BYTES or header_bytes > len(segment):
        raise PacketDecodeError("tcp-header", f"data offset {header_bytes}")
    return TcpSegment(Flow(src, sport, dst, dport), seq, flags, segment[header_bytes:])
