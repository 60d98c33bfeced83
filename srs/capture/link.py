"""Link layers to IP: what the frame of each supported link type carries before its IP header.

Link-type numbers are the LINKTYPE_ values of the tcpdump.org registry, as used by pcap
(draft-ietf-opsawg-pcap §4) and pcapng IDBs (draft-ietf-opsawg-pcapng §4.2).  Each decoder
returns the IP packet inside a frame or raises :class:`PacketDecodeError` with one of the
reasons ``"link-truncated"``, ``"not-ip"`` (ARP, LLC, an unknown ethertype or address family)
and ``"linktype"`` (a link type we do not decode).
"""

from __future__ import annotations

from typing import Final

from srs.capture.errors import PacketDecodeError

__all__ = [
    "LINKTYPE_NULL",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "LINKTYPE_LOOP",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL2",
    "SUPPORTED_LINKTYPES",
    "ip_packet",
]

LINKTYPE_NULL: Final = 0  # BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET: Final = 1  # IEEE 802.3 Ethernet, with 802.1Q / 802.1ad tags
LINKTYPE_RAW: Final = 101  # raw IPv4 or IPv6, told by the version nibble
LINKTYPE_LOOP: Final = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL: Final = 113  # Linux "cooked" capture v1 (16-byte header)
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276  # Linux "cooked" capture v2 (20-byte header)

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
# IEEE 802.1Q C-tag, 802.1ad S-tag, and the pre-standard QinQ 0x9100 some switches still send.
_VLAN_TAGS: Final = frozenset({0x8100, 0x88A8, 0x9100})
_MAX_VLAN_TAGS: Final = 8
_ETHERNET_HEADER_BYTES: Final = 14
_SLL_HEADER_BYTES: Final = 16
_SLL2_HEADER_BYTES: Final = 20
# Address families in DLT_NULL/DLT_LOOP headers: AF_INET is 2 everywhere; AF_INET6 is 10 on
# Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS.
_AF_INET: Final = 2
_AF_INET6: Final = frozenset({10, 24, 28, 30})


def _by_ethertype(ethertype: int, frame: bytes, start: int) -> bytes:
    """Follow VLAN tags from an ethertype at ``frame[start-2:start]`` to the IP packet."""
    for _ in range(_MAX_VLAN_TAGS):
        if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return frame[start:]
        if ethertype not in _VLAN_TAGS:
            raise PacketDecodeError("not-ip", f"ethertype {ethertype:#06x}")
        # IEEE 802.1Q §9.6: a tag is the 2-byte TCI, then the next ethertype.
        if len(frame) < start + 4:
            raise PacketDecodeError("link-truncated", "VLAN tag")
        ethertype = int.from_bytes(frame[start + 2 : start + 4], "big")
        start += 4
    raise PacketDecodeError("not-ip", "too many VLAN tags")


def _by_family(family: int, frame: bytes) -> bytes:
    if family == _AF_INET or family in _AF_INET6:
        return frame[4:]
    raise PacketDecodeError("not-ip", f"address family {family}")


def ip_packet(linktype: int, frame: bytes) -> bytes:
    """The IP packet (header first) in ``frame`` captured with link type ``linktype``."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < _ETHERNET_HEADER_BYTES:
            raise PacketDecodeError("link-truncated", "Ethernet header")
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype <= 1500:
            # IEEE 802.3 length field: an LLC frame (STP, CDP ...), never IP here.
            raise PacketDecodeError("not-ip", "802.3 LLC frame")
        return _by_ethertype(ethertype, frame, _ETHERNET_HEADER_BYTES)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < _SLL_HEADER_BYTES:
            raise PacketDecodeError("link-truncated", "Linux cooked header")
        return _by_ethertype(int.from_bytes(frame[14:16], "big"), frame, _SLL_HEADER_BYTES)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < _SLL2_HEADER_BYTES:
            raise PacketDecodeError("link-truncated", "Linux cooked v2 header")
        return _by_ethertype(int.from_bytes(frame[0:2], "big"), frame, _SLL2_HEADER_BYTES)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            raise PacketDecodeError("link-truncated", "loopback header")
        if linktype == LINKTYPE_LOOP:
            return _by_family(int.from_bytes(frame[:4], "big"), frame)
        # DLT_NULL's family is in the capturing host's byte order, which the file does not
        # record: the family is small, so the order in which it reads small is the right one.
        family = int.from_bytes(frame[:4], "little")
        if family > 0xFFFF:
            family = int.from_bytes(frame[:4], "big")
        return _by_family(family, frame)
    raise PacketDecodeError("linktype", f"link type {linktype}")


SUPPORTED_LINKTYPES: Final = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)
