"""Link layers, IPv4/IPv6 with options, extension headers and fragments, UDP; drop counts."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.capture.decode import PacketDecoder
from srs.capture.ip import FragmentLimits
from srs.capture.packets import Datagram
from srs.capture.source import CapturedPacket
from tests.capture.frames import (
    ethernet,
    ipv4,
    ipv6,
    ipv6_fragment_header,
    ipv6_option_header,
    tcp,
    udp,
)

SIP = b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"
V4 = ipv4("192.0.2.1", "192.0.2.2", 17, udp(5060, 5070, SIP))
V6 = ipv6("2001:db8::1", "2001:db8::2", 17, udp(5060, 5070, SIP))


def packet(linktype: int, frame: bytes, t_ns: int = 1_000_000_000) -> CapturedPacket:
    return CapturedPacket(t_ns, linktype, len(frame), frame, 0)


def decode(*packets: CapturedPacket, decoder: PacketDecoder | None = None) -> list[object]:
    decoder = decoder or PacketDecoder()
    events: list[object] = []
    for p in packets:
        events.extend(decoder.decode(p))
    return events + list(decoder.finish())


def datagram(version: int) -> Datagram:
    if version == 4:
        return Datagram(1.0, "192.0.2.1", 5060, "192.0.2.2", 5070, SIP)
    return Datagram(1.0, "2001:db8::1", 5060, "2001:db8::2", 5070, SIP)


def sll(ip: bytes, protocol: int) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, bytes(8), protocol) + ip


def sll2(ip: bytes, protocol: int) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 772, 0, 6, bytes(8)) + ip


@pytest.mark.parametrize(
    ("linktype", "frame", "version"),
    [
        (1, ethernet(V4), 4),
        (1, ethernet(V6), 6),
        (1, ethernet(V4, vlans=(0x8100,)), 4),
        (1, ethernet(V6, vlans=(0x88A8, 0x8100)), 6),
        (113, sll(V4, 0x0800), 4),
        (113, sll(V6, 0x86DD), 6),
        (276, sll2(V4, 0x0800), 4),
        (276, sll2(V6, 0x86DD), 6),
        (101, V4, 4),
        (101, V6, 6),
        (228, V4, 4),
        (229, V6, 6),
        (0, struct.pack("<I", 2) + V4, 4),  # BSD loopback written on a little-endian host
        (0, struct.pack(">I", 2) + V4, 4),  # ... and on a big-endian one
        (0, struct.pack("<I", 30) + V6, 6),  # macOS AF_INET6
        (0, struct.pack(">I", 24) + V6, 6),  # NetBSD/OpenBSD AF_INET6
        (108, struct.pack(">I", 2) + V4, 4),
    ],
)
def test_every_link_type_gives_the_datagram(linktype: int, frame: bytes, version: int) -> None:
    assert decode(packet(linktype, frame)) == [datagram(version)]


@pytest.mark.parametrize(
    ("linktype", "frame", "reason"),
    [
        (1, ethernet(V4)[:10], "link-truncated"),
        (1, ethernet(b"\x00" * 28, ethertype=0x0806), "not-ip"),  # ARP
        (1, bytes(12) + struct.pack("!H", 46) + bytes(46), "not-ip"),  # 802.3 LLC
        (1, ethernet(V4, vlans=(0x8100,))[:16], "link-truncated"),
        (113, sll(V4, 0x0806), "not-ip"),
        (276, sll2(V4, 0x0004)[:12], "link-truncated"),
        (0, struct.pack("<I", 7) + V4, "not-ip"),
        (147, V4, "linktype"),
        (101, b"", "ip-truncated"),
        (101, b"\x50" + V4[1:], "ip-header"),
        (101, V4[:19], "ip-truncated"),
        (101, V4[:-1], "ip-truncated"),
        (101, b"\x44" + V4[1:], "ip-header"),  # IHL 4
        (101, V6[:39], "ip-truncated"),
        (101, V6[:-1], "ip-truncated"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 1, b"\x08\x00"), "ip-protocol"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 17, udp(1, 2, b"x", length=7)), "udp-length"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 17, udp(1, 2, b"x", length=10)), "udp-length"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 17, b"\x00" * 7), "udp-truncated"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 6, b"\x00" * 19), "tcp-truncated"),
        (101, ipv4("192.0.2.1", "192.0.2.2", 6, tcp(1, 2, 0, b"")[:12] + b"\x40" + bytes(7)),
         "tcp-header"),
        (101, ipv6("::1", "::1", 17, b"")[:4] + b"\x00\x00\x00" + bytes(33), "ip-jumbogram"),
        (101, ipv6("::1", "::1", 0, b"", extensions=b"\x11\x05" + bytes(6)), "ip-truncated"),
    ],
)
def test_undecodable_packets_are_dropped_and_counted(
    linktype: int, frame: bytes, reason: str
) -> None:
    decoder = PacketDecoder()
    assert decode(packet(linktype, frame), decoder=decoder) == []
    assert decoder.drops == {reason: 1}


def test_ipv4_options_are_skipped_and_trailing_padding_ignored() -> None:
    options = bytes([0x94, 0x04, 0, 0])  # Router Alert (RFC 2113)
    frame = ethernet(ipv4("192.0.2.1", "192.0.2.2", 17, udp(5060, 5070, SIP), options=options))
    assert decode(packet(1, frame + bytes(6))) == [datagram(4)]


def test_ipv6_extension_headers_are_walked() -> None:
    extensions = (
        ipv6_option_header(43, 1)  # hop-by-hop (16 bytes) -> routing
        + ipv6_option_header(60)  # routing -> destination options
        + ipv6_option_header(51)  # destination options -> AH
        + bytes([17, 4]) + bytes(22)  # AH (RFC 4302: (4 + 2) * 4 = 24 bytes) -> UDP
    )
    frame = ipv6("2001:db8::1", "2001:db8::2", 0, udp(5060, 5070, SIP), extensions=extensions)
    assert decode(packet(101, frame)) == [datagram(6)]


def _v4_fragments(payload: bytes, size: int, ident: int = 7) -> list[bytes]:
    pieces = []
    for start in range(0, len(payload), size):
        chunk = payload[start : start + size]
        more = start + size < len(payload)
        pieces.append(ipv4("192.0.2.1", "192.0.2.2", 17, chunk, ident=ident, offset=start,
                           more=more))
    return pieces


BIG = udp(5060, 5070, SIP * 40)


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 1, 0, 2], [2, 0, 0, 3, 1]])
def test_ipv4_fragments_reassemble_in_any_order_with_duplicates(order: list[int]) -> None:
    pieces = _v4_fragments(BIG, 600)
    assert len(pieces) == 4
    decoder = PacketDecoder()
    events = decode(*(packet(101, pieces[i]) for i in order), decoder=decoder)
    assert events == [Datagram(1.0, "192.0.2.1", 5060, "192.0.2.2", 5070, SIP * 40)]
    assert decoder.drops == {} and decoder.held_bytes == 0


def test_overlapping_fragments_drop_the_datagram() -> None:
    pieces = _v4_fragments(BIG, 600)
    overlap = ipv4("192.0.2.1", "192.0.2.2", 17, b"X" * 600, ident=7, offset=304, more=True)
    decoder = PacketDecoder()
    assert decode(*(packet(101, p) for p in [pieces[0], overlap, *pieces[1:]]),
                  decoder=decoder) == []
    assert decoder.drops["fragment-overlap"] == 1


def test_unfinished_datagrams_time_out_and_are_bounded() -> None:
    decoder = PacketDecoder(fragment_limits=FragmentLimits(max_datagrams=3, timeout_s=30))
    firsts = [_v4_fragments(BIG, 600, ident=i)[0] for i in range(5)]
    decode(*(packet(101, f) for f in firsts), decoder=decoder)
    assert decoder.drops == {"fragment-evicted": 2, "fragment-timeout": 3}
    decoder = PacketDecoder()
    last = _v4_fragments(BIG, 600)
    events = decode(packet(101, last[0], 0), packet(101, last[1], 31_000_000_000),
                    *(packet(101, p, 31_000_000_000) for p in last[2:]), decoder=decoder)
    assert events == [] and decoder.drops["fragment-timeout"] == 2


def test_bad_fragments() -> None:
    odd = ipv4("192.0.2.1", "192.0.2.2", 17, b"x" * 13, offset=0, more=True)
    beyond = ipv4("192.0.2.1", "192.0.2.2", 17, b"x" * 16, offset=65528, more=False)
    decoder = PacketDecoder()
    decode(packet(101, odd), packet(101, beyond), decoder=decoder)
    assert decoder.drops == {"fragment-bad": 2}


def test_ipv6_fragments_with_destination_options_after_the_fragment_header() -> None:
    fragmentable = ipv6_option_header(17) + BIG  # destination options, then UDP
    cut = 400
    hop = ipv6_option_header(44)
    first = ipv6("2001:db8::1", "2001:db8::2", 0, fragmentable[:cut],
                 extensions=hop + ipv6_fragment_header(60, 0, True, 99))
    second = ipv6("2001:db8::1", "2001:db8::2", 44, fragmentable[cut:],
                  extensions=ipv6_fragment_header(60, cut, False, 99))
    events = decode(packet(101, second), packet(101, first))
    assert events == [Datagram(1.0, "2001:db8::1", 5060, "2001:db8::2", 5070, SIP * 40)]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 999]), st.binary(max_size=120))
def test_arbitrary_frames_never_raise(linktype: int, frame: bytes) -> None:
    decoder = PacketDecoder()
    decode(packet(linktype, frame), decoder=decoder)
    assert decoder.packets == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.binary(max_size=40)), max_size=12))
def test_arbitrary_fragments_never_raise(pieces: list[tuple[int, bytes]]) -> None:
    frames = [
        ipv4("192.0.2.1", "192.0.2.2", 17, data, offset=slot * 8, more=slot < 7)
        for slot, data in pieces
    ]
    decoder = PacketDecoder()
    decode(*(packet(101, f) for f in frames), decoder=decoder)
    assert decoder.held_bytes == 0
