"""A tiny reader and writer for classic pcap files of UDP over IPv4.

Enough to check what a capture holds (which destination ports, how many RTP packets, which
payload type) and to drop the probe datagrams that prove the capture was running, without
depending on tshark's text output.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PCAP_MAGIC_US: Final = 0xA1B2C3D4
PCAP_MAGIC_NS: Final = 0xA1B23C4D
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_RAW: Final = 101
_LINK_HEADER_BYTES: Final = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_RAW: 0}
_IPPROTO_UDP: Final = 17


@dataclass(frozen=True, slots=True)
class UdpRecord:
    """One captured UDP datagram: capture time, ports, payload and the raw record."""

    time_s: float
    src_port: int
    dst_port: int
    payload: bytes
    record: bytes  # the 16-byte record header and the frame, as found in the file


@dataclass(frozen=True, slots=True)
class Pcap:
    header: bytes  # the 24-byte global header
    records: tuple[UdpRecord, ...]

    def dst_port_counts(self) -> Counter[int]:
        return Counter(r.dst_port for r in self.records)


def read_pcap(path: Path) -> Pcap:
    """Read a classic pcap; every frame must be UDP over IPv4."""
    data = path.read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: shorter than a pcap header")
    (magic,) = struct.unpack_from("<I", data)
    if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian = "<"
    elif struct.unpack_from(">I", data)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian = ">"
        (magic,) = struct.unpack_from(">I", data)
    else:
        raise ValueError(f"{path}: not a classic pcap (magic {magic:#x})")
    fraction = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype not in _LINK_HEADER_BYTES:
        raise ValueError(f"{path}: link type {linktype} not handled")
    link_bytes = _LINK_HEADER_BYTES[linktype]
    records = []
    offset = 24
    while offset < len(data):
        seconds, fraction_units, incl_len, _orig_len = struct.unpack_from(
            endian + "IIII", data, offset
        )
        frame = data[offset + 16 : offset + 16 + incl_len]
        if len(frame) != incl_len:
            raise ValueError(f"{path}: truncated record at byte {offset}")
        ip = frame[link_bytes:]
        if ip[0] >> 4 != 4 or ip[9] != _IPPROTO_UDP:
            raise ValueError(f"{path}: record at byte {offset} is not UDP over IPv4")
        udp = ip[(ip[0] & 0x0F) * 4 :]
        src_port, dst_port, udp_len = struct.unpack_from("!HHH", udp)
        records.append(
            UdpRecord(
                seconds + fraction_units * fraction,
                src_port,
                dst_port,
                bytes(udp[8:udp_len]),
                data[offset : offset + 16 + incl_len],
            )
        )
        offset += 16 + incl_len
    return Pcap(data[:24], tuple(records))


def write_pcap(path: Path, pcap: Pcap) -> None:
    path.write_bytes(pcap.header + b"".join(r.record for r in pcap.records))


def rtp_payload_type(payload: bytes) -> int | None:
    """The RTP payload type of a datagram, or None when it is not RTP version 2."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    return payload[1] & 0x7F
