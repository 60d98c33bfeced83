"""Hand-built packets and capture files for the capture tests.

Written from the specs (RFC 791, RFC 8200, RFC 768, RFC 9293; draft-ietf-opsawg-pcap and
-pcapng) independently of srs.capture.writer, so that reader and writer check each other.
"""

from __future__ import annotations

import socket
import struct


def ipv4(
    src: str,
    dst: str,
    protocol: int,
    payload: bytes,
    *,
    ident: int = 1,
    offset: int = 0,
    more: bool = False,
    options: bytes = b"",
    total: int | None = None,
) -> bytes:
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    flags = (0x2000 if more else 0) | (offset // 8)
    length = total if total is not None else ihl * 4 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, flags, 64, protocol, 0,
        socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst),
    )
    return header + options + payload


def ipv6(
    src: str, dst: str, next_header: int, payload: bytes, *, extensions: bytes = b""
) -> bytes:
    body = extensions + payload
    return struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), next_header, 64,
        socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst),
    ) + body


def ipv6_option_header(next_header: int, size_units: int = 0) -> bytes:
    """A hop-by-hop/destination/routing-shaped header of (size_units+1)*8 bytes (PadN)."""
    body = bytes([next_header, size_units]) + bytes([1, 8 * (size_units + 1) - 4])
    return body + bytes(8 * (size_units + 1) - len(body))


def ipv6_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def udp(sport: int, dport: int, payload: bytes, *, length: int | None = None) -> bytes:
    size = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, size, 0) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes, *, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ethernet(ip: bytes, *, vlans: tuple[int, ...] = (), ethertype: int | None = None) -> bytes:
    if ethertype is None:
        ethertype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    tags = b"".join(struct.pack("!HH", tpid, 7) for tpid in vlans)
    return bytes(6) + bytes.fromhex("020000000001") + tags + struct.pack("!H", ethertype) + ip


def pcap_file(
    linktype: int,
    records: list[tuple[int, bytes]],
    *,
    order: str = "<",
    nanoseconds: bool = False,
) -> bytes:
    """A classic pcap; records are (timestamp in ns, frame)."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for timestamp_ns, frame in records:
        seconds, rest = divmod(timestamp_ns, 1_000_000_000)
        fraction = rest if nanoseconds else rest // 1000
        out.append(struct.pack(order + "IIII", seconds, fraction, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def ng_block(order: str, block_type: int, body: bytes) -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def ng_options(order: str, options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    out = b"".join(struct.pack(order + "HH", code, len(value)) + _pad4(value)
                   for code, value in options)
    return out + struct.pack(order + "HH", 0, 0)


def ng_shb(order: str, options: list[tuple[int, bytes]] | None = None) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + ng_options(order, options or [])
    return ng_block(order, 0x0A0D0D0A, body)


def ng_idb(
    order: str, linktype: int, *, tsresol: int | None = None, tsoffset: int | None = None,
    snaplen: int = 0,
) -> bytes:
    options: list[tuple[int, bytes]] = [(2, b"eth9")]
    if tsresol is not None:
        options.append((9, bytes([tsresol])))
    if tsoffset is not None:
        options.append((14, struct.pack(order + "q", tsoffset)))
    return ng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen)
                    + ng_options(order, options))


def ng_epb(
    order: str, interface: int, ticks: int, frame: bytes, original: int | None = None
) -> bytes:
    body = struct.pack(
        order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
        len(frame) if original is None else original,
    ) + _pad4(frame) + ng_options(order, [(1, b"a comment")])
    return ng_block(order, 6, body)


def ng_spb(order: str, frame: bytes) -> bytes:
    return ng_block(order, 3, struct.pack(order + "I", len(frame)) + frame)


def ng_pb(order: str, interface: int, ticks: int, frame: bytes) -> bytes:
    body = struct.pack(
        order + "HHIIII", interface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
    ) + frame
    return ng_block(order, 2, body)
