"""pcapng files: "PCAP Now Generic (pcapng) Capture File Format", draft-ietf-opsawg-pcapng.

A file is one or more sections; each starts with a Section Header Block (§4.1) whose
Byte-Order Magic tells the byte order of every block up to the next section.  Interface
Description Blocks (§4.2) give each interface its link type, snap length and timestamp
resolution (``if_tsresol``, §4.2 option 9) and offset (``if_tsoffset``, option 14); their
numbering restarts in every section.  Packets come in Enhanced Packet Blocks (§4.3), Simple
Packet Blocks (§4.4) and the obsolete Packet Block (Appendix A); every other block (name
resolution, statistics, decryption secrets, custom, ...) is passed over unread.

Every block (§3.1) is: type (4 bytes), total length (4), body, total length again; lengths
are multiples of 4 (§3.1: the body is padded to 32 bits).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from srs.capture.source import NS_PER_S, ByteSource, CapturedPacket

__all__ = ["PCAPNG_SHB_MAGIC", "read_pcapng"]

PCAPNG_SHB_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # §4.1 block type, the same in both orders
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D  # §4.1
_MAJOR_VERSION: Final = 1  # §4.1: a reader stops at a major version it does not know
_BLOCK_IDB: Final = 0x00000001
_BLOCK_PB: Final = 0x00000002  # Appendix A, obsolete
_BLOCK_SPB: Final = 0x00000003
_BLOCK_EPB: Final = 0x00000006
_OPT_ENDOFOPT: Final = 0
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14
_DEFAULT_TSRESOL: Final = 6  # §4.2: microseconds when if_tsresol is absent
_MIN_BLOCK_BYTES: Final = 12
_MIN_SHB_BYTES: Final = 28
# Blocks we read into memory other than packets (SHB, IDB): their options are short text.
_MAX_HEADER_BLOCK_BYTES: Final = 1 << 20
# A packet block holds the packet plus its fixed fields and options.
_PACKET_BLOCK_OVERHEAD_BYTES: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    ticks_num: int  # nanoseconds = ticks * ticks_num // ticks_den + offset_ns
    ticks_den: int
    offset_ns: int

    def nanoseconds(self, ticks: int) -> int:
        return ticks * self.ticks_num // self.ticks_den + self.offset_ns


def _ticks_ratio(tsresol: int) -> tuple[int, int]:
    """§4.2 if_tsresol: high bit clear, 10^-n seconds; set, 2^-n seconds."""
    exponent = tsresol & 0x7F
    if tsresol & 0x80:
        return NS_PER_S, 1 << exponent
    if exponent <= 9:
        return 10 ** (9 - exponent), 1
    return 1, 10 ** (exponent - 9)


class _Section:
    """The state one Section Header Block opens: byte order and interfaces."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.u32 = struct.Struct(order + "I")
        self.interfaces: list[_Interface] = []
        self.last_timestamp_ns = 0


def _options(
    source: ByteSource, section: _Section, body: bytes, start: int, block_offset: int
) -> Iterator[tuple[int, bytes]]:
    """§3.5: (code, value) pairs of an options list that begins at ``body[start:]``."""
    header = struct.Struct(section.order + "HH")
    pos = start
    while pos + 4 <= len(body):
        code, length = header.unpack_from(body, pos)
        if code == _OPT_ENDOFOPT:
            return
        if pos + 4 + length > len(body):
            raise source.error(
                block_offset + 8 + pos,
                f"an option of {length} bytes within its block",
                f"{len(body) - pos - 4} bytes left",
            )
        yield code, body[pos + 4 : pos + 4 + length]
        pos += 4 + (length + 3) // 4 * 4


def _read_shb(source: ByteSource, offset: int, length_field: bytes) -> _Section:
    """§4.1, after its block type and total length (still undecoded) were read at ``offset``."""
    raw = length_field + source.read(4, "the Section Header Block's byte-order magic")
    if struct.unpack("<I", raw[4:])[0] == _BYTE_ORDER_MAGIC:
        order = "<"
    elif struct.unpack(">I", raw[4:])[0] == _BYTE_ORDER_MAGIC:
        order = ">"
    else:
        raise source.error(
            offset + 8, "the pcapng byte-order magic 1a2b3c4d", f"{raw[4:].hex()}"
        )
    section = _Section(order)
    (total,) = section.u32.unpack_from(raw)
    _check_length(source, offset, total, _MIN_SHB_BYTES, _MAX_HEADER_BLOCK_BYTES)
    body = source.read(total - 12, "Section Header Block")
    _check_trailer(source, section, offset, total, body)
    major, minor = struct.unpack_from(order + "HH", body)
    if major != _MAJOR_VERSION:
        raise source.error(offset + 12, "pcapng major version 1", f"{major}.{minor}")
    return section


def _check_length(source: ByteSource, offset: int, total: int, least: int, most: int) -> None:
    if total < least or total % 4 or total > most:
        raise source.error(
            offset + 4,
            f"a block total length that is a multiple of 4 from {least} to {most}",
            f"{total}",
        )


def _check_trailer(
    source: ByteSource, section: _Section, offset: int, total: int, rest: bytes
) -> None:
    """§3.1: the block ends with its total length repeated."""
    (trailer,) = section.u32.unpack_from(rest, len(rest) - 4)
    if trailer != total:
        raise source.error(
            offset + total - 4, f"the block's total length {total} repeated", f"{trailer}"
        )


def _read_idb(source: ByteSource, section: _Section, body: bytes, offset: int) -> None:
    """§4.2 Interface Description Block."""
    if len(body) < 8:
        raise source.error(offset + 8, "8 bytes of Interface Description Block fields")
    linktype, _reserved, snaplen = struct.unpack_from(section.order + "HHI", body)
    tsresol = _DEFAULT_TSRESOL
    offset_s = 0
    for code, value in _options(source, section, body, 8, offset):
        if code == _OPT_IF_TSRESOL and len(value) == 1:
            tsresol = value[0]
        elif code == _OPT_IF_TSOFFSET and len(value) == 8:
            (offset_s,) = struct.unpack(section.order + "q", value)
    num, den = _ticks_ratio(tsresol)
    section.interfaces.append(_Interface(linktype, snaplen, num, den, offset_s * NS_PER_S))


def _interface(source: ByteSource, section: _Section, index: int, offset: int) -> _Interface:
    if index >= len(section.interfaces):
        raise source.error(
            offset + 8,
            f"an interface ID below {len(section.interfaces)} (the IDBs of this section)",
            f"{index}",
        )
    return section.interfaces[index]


def _packet(
    source: ByteSource, section: _Section, block_type: int, body: bytes, offset: int
) -> CapturedPacket:
    """§4.3 EPB, §4.4 SPB, Appendix A PB: the packet of a block already read."""
    order = section.order
    if block_type == _BLOCK_SPB:
        if len(body) < 4:
            raise source.error(offset + 8, "4 bytes of Simple Packet Block fields")
        interface = _interface(source, section, 0, offset)
        (original,) = section.u32.unpack_from(body)
        captured = min(original, len(body) - 4)
        if interface.snaplen:
            captured = min(captured, interface.snaplen)
        # §4.4: an SPB has no timestamp; we give it the section's last one so that replay
        # keeps a monotonic clock.
        return CapturedPacket(
            section.last_timestamp_ns, interface.linktype, original, body[4 : 4 + captured],
            offset, 0,
        )
    if block_type == _BLOCK_EPB:
        fields, start = order + "IIIII", 20
    else:
        fields, start = order + "HHIIII", 20
    if len(body) < start:
        raise source.error(offset + 8, f"{start} bytes of packet block fields")
    if block_type == _BLOCK_EPB:
        index, high, low, captured, original = struct.unpack_from(fields, body)
    else:
        index, _drops, high, low, captured, original = struct.unpack_from(fields, body)
    if captured > len(body) - start:
        raise source.error(
            offset + 8 + start - 8,
            f"a captured length within the block ({len(body) - start} bytes)",
            f"{captured}",
        )
    interface = _interface(source, section, index, offset)
    timestamp_ns = interface.nanoseconds((high << 32) | low)
    section.last_timestamp_ns = timestamp_ns
    return CapturedPacket(
        timestamp_ns, interface.linktype, original, body[start : start + captured], offset,
        index,
    )


def read_pcapng(
    source: ByteSource, magic_bytes: bytes, max_packet_bytes: int
) -> Iterator[CapturedPacket]:
    """Walk a pcapng file whose first four bytes (the SHB block type) were already read."""
    del magic_bytes  # always PCAPNG_SHB_MAGIC: the caller dispatched on it
    section = _read_shb(source, 0, source.read(4, "the Section Header Block's length"))
    max_packet_block = max_packet_bytes + _PACKET_BLOCK_OVERHEAD_BYTES
    while True:
        offset = source.offset
        head = source.read_or_eof(8, "pcapng block header")
        if head is None:
            return
        if head[:4] == PCAPNG_SHB_MAGIC:
            # §4.1: a new section; its byte order may differ, so its length waits for it.
            section = _read_shb(source, offset, head[4:])
            continue
        block_type, total = struct.unpack(section.order + "II", head)
        if block_type in (_BLOCK_EPB, _BLOCK_SPB, _BLOCK_PB, _BLOCK_IDB):
            most = _MAX_HEADER_BLOCK_BYTES if block_type == _BLOCK_IDB else max_packet_block
            _check_length(source, offset, total, _MIN_BLOCK_BYTES, most)
            rest = source.read(total - 8, f"block of type {block_type} (at offset {offset})")
            _check_trailer(source, section, offset, total, rest)
            body = rest[:-4]
            if block_type == _BLOCK_IDB:
                _read_idb(source, section, body, offset)
            else:
                yield _packet(source, section, block_type, body, offset)
        else:
            _check_length(source, offset, total, _MIN_BLOCK_BYTES, 0xFFFFFFFF)
            source.skip(total - 8, f"block of type {block_type:#x} (at offset {offset})")
