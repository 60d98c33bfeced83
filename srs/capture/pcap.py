"""Classic libpcap files: "PCAP Capture File Format", draft-ietf-opsawg-pcap.

File header (§4), 24 bytes: magic, major and minor version, reserved (thiszone, sigfigs),
SnapLen, LinkType.  Each packet record (§5): a 16-byte header -- seconds, microseconds or
nanoseconds (by the magic), captured length, original length -- then the captured bytes.
The writer's byte order is told by the magic; both are read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from srs.capture.source import NS_PER_S, ByteSource, CapturedPacket

__all__ = [
    "PCAP_MAGIC_MICROSECONDS",
    "PCAP_MAGIC_NANOSECONDS",
    "PCAP_MAGIC_MODIFIED",
    "PCAP_MAGICS",
    "FILE_HEADER_BYTES",
    "read_pcap",
]

# draft-ietf-opsawg-pcap §4: the magic number tells resolution and byte order.
PCAP_MAGIC_MICROSECONDS: Final = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS: Final = 0xA1B23C4D
# Alexey Kuznetzov's "modified" pcap (editcap -F modpcap, old Red Hat tcpdump): microseconds,
# and 8 more bytes (ifindex, protocol, pkt_type, pad) after each record header.  Accepted
# because Linux tools of the 2000s wrote it and editcap still does.
PCAP_MAGIC_MODIFIED: Final = 0xA1B2CD34
PCAP_MAGICS: Final = frozenset(
    {PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS, PCAP_MAGIC_MODIFIED}
)
FILE_HEADER_BYTES: Final = 24
_RECORD_HEADER_BYTES: Final = 16
_MODIFIED_EXTRA_BYTES: Final = 8
_MAJOR_VERSION: Final = 2
# §4: the LinkType field holds the link-layer type in its low 16 bits; the high bits carry
# FCS information, which we do not need (IP lengths bound the payload).
_LINKTYPE_MASK: Final = 0xFFFF


def read_pcap(
    source: ByteSource, magic_bytes: bytes, max_packet_bytes: int
) -> Iterator[CapturedPacket]:
    """Walk a classic pcap whose first four bytes (``magic_bytes``) were already read."""
    order = "<" if int.from_bytes(magic_bytes, "little") in PCAP_MAGICS else ">"
    (magic,) = struct.unpack(order + "I", magic_bytes)
    rest = source.read(FILE_HEADER_BYTES - 4, "pcap file header")
    major, minor, _zone, _sigfigs, _snaplen, linkfield = struct.unpack(order + "HHiIII", rest)
    if major != _MAJOR_VERSION:
        raise source.error(4, f"pcap major version {_MAJOR_VERSION}", f"{major}.{minor}")
    linktype = linkfield & _LINKTYPE_MASK
    unit_ns = 1 if magic == PCAP_MAGIC_NANOSECONDS else 1000
    extra = _MODIFIED_EXTRA_BYTES if magic == PCAP_MAGIC_MODIFIED else 0
    header = struct.Struct(order + "IIII")
    while True:
        offset = source.offset
        raw = source.read_or_eof(_RECORD_HEADER_BYTES + extra, "pcap record header")
        if raw is None:
            return
        seconds, fraction, captured, original = header.unpack_from(raw)
        if captured > max_packet_bytes:
            raise source.error(
                offset + 8,
                f"a captured length of at most {max_packet_bytes} bytes",
                f"{captured}",
            )
        data = source.read(captured, f"packet data (record at offset {offset})")
        yield CapturedPacket(
            seconds * NS_PER_S + fraction * unit_ns, linktype, original, data, offset
        )
