"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers, and bounded fragment reassembly.

:class:`IpDecoder` turns the IP packet of a frame into an :class:`IpPacket` (addresses,
upper-layer protocol, upper-layer bytes), holding fragments until their datagram is whole.
Drop reasons (:class:`PacketDecodeError` ``reason``, or counted in ``drops`` when a held
datagram is given up):

``"ip-truncated"``  shorter than its header or its own length fields say.
``"ip-header"``     a field that cannot be right (IHL < 5, a bad version, an extension
                    header chain that runs past the end or is too long).
``"ip-jumbogram"``  an IPv6 jumbogram (RFC 2675): never carries SIP or RTP.
``"fragment-bad"``  a fragment whose length or offset cannot be right (RFC 791: all but the
                    last carry a multiple of 8 bytes; the datagram stays within 65535).
``"fragment-overlap"`` fragments that overlap with different bytes: the datagram is
                    dropped (RFC 5722 for IPv6; for IPv4 the same, as overlaps are attacks).
``"fragment-timeout"`` / ``"fragment-evicted"``: given up after ``timeout_s`` of capture time,
                    or to stay within the memory bounds.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from srs.capture.errors import PacketDecodeError
from srs.capture.source import NS_PER_S

__all__ = ["IpPacket", "IpDecoder", "FragmentLimits"]

_IPV4_MIN_HEADER_BYTES: Final = 20
_IPV6_HEADER_BYTES: Final = 40
_MAX_DATAGRAM_BYTES: Final = 65535  # RFC 791 Total Length; RFC 8200 §4.5 reassembled size
# RFC 8200 §4: extension headers that share the (type, length-in-8-octets-minus-1) shape:
# hop-by-hop 0, routing 43, destination options 60, mobility 135, HIP 139, shim6 140.
_IPV6_GENERIC_EXTENSIONS: Final = frozenset({0, 43, 60, 135, 139, 140})
_IPV6_FRAGMENT: Final = 44
_IPV6_AH: Final = 51  # RFC 4302 §2.2: length in 4-octet units minus 2
_MAX_EXTENSION_HEADERS: Final = 16
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")


@dataclass(frozen=True, slots=True)
class IpPacket:
    """An IP datagram, reassembled if it was fragmented: what UDP and TCP sit on."""

    version: int
    src: str
    dst: str
    protocol: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class FragmentLimits:
    """Bounds on reassembly: datagrams held at once, bytes held in all, fragments each."""

    max_datagrams: int = 256
    max_total_bytes: int = 4 << 20
    max_fragments_per_datagram: int = 128
    timeout_s: float = 30.0  # Linux's ipfrag_time; RFC 791 suggests 15 s as a lower bound


@dataclass(slots=True)
class _Pending:
    first_ns: int
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None
    held_bytes: int = 0
    next_header: int | None = None  # IPv6: from the fragment header of offset 0


class IpDecoder:
    """Decodes IP packets; keeps fragments of unfinished datagrams within ``limits``."""

    def __init__(self, drops: Counter[str], limits: FragmentLimits = FragmentLimits()) -> None:
        self.drops = drops
        self.limits = limits
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self._held_bytes = 0

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def decode(self, data: bytes, timestamp_ns: int) -> IpPacket | None:
        """The datagram in ``data``, or None while it waits for more fragments."""
        if not data:
            raise PacketDecodeError("ip-truncated", "empty")
        version = data[0] >> 4
        if version == 4:
            return self._ipv4(data, timestamp_ns)
        if version == 6:
            return self._ipv6(data, timestamp_ns)
        raise PacketDecodeError("ip-header", f"IP version {version}")

    # ------------------------------------------------------------------ IPv4, RFC 791 §3.1

    def _ipv4(self, data: bytes, timestamp_ns: int) -> IpPacket | None:
        if len(data) < _IPV4_MIN_HEADER_BYTES:
            raise PacketDecodeError("ip-truncated", "IPv4 header")
        ver_ihl, _tos, total, ident, flags_frag, _ttl, proto, _sum, src, dst = (
            _IPV4_HEADER.unpack_from(data)
        )
        header_bytes = (ver_ihl & 0x0F) * 4
        if header_bytes < _IPV4_MIN_HEADER_BYTES or total < header_bytes:
            raise PacketDecodeError("ip-header", f"IHL {header_bytes}, total length {total}")
        if total > len(data):
            # Cut by the snap length; a TSO/GRO super-packet on Linux loopback may also say
            # 0 here, which fails the check above.
            raise PacketDecodeError("ip-truncated", f"total length {total} > {len(data)}")
        # Checksums are not verified: captures of locally sent packets carry whatever the
        # NIC's checksum offload would have filled in.
        payload = data[header_bytes:total]
        src_text = socket.inet_ntop(socket.AF_INET, src)
        dst_text = socket.inet_ntop(socket.AF_INET, dst)
        more = bool(flags_frag & 0x2000)
        offset = (flags_frag & 0x1FFF) * 8
        if more or offset:
            whole = self._add_fragment(
                (4, src, dst, proto, ident), timestamp_ns, offset, more, payload, None
            )
            if whole is None:
                return None
            payload = whole[0]
        return IpPacket(4, src_text, dst_text, proto, payload)

    # ----------------------------------------------------------------- IPv6, RFC 8200 §3, §4

    def _ipv6(self, data: bytes, timestamp_ns: int) -> IpPacket | None:
        if len(data) < _IPV6_HEADER_BYTES:
            raise PacketDecodeError("ip-truncated", "IPv6 header")
        _vtf, length, next_header, _hops, src, dst = _IPV6_HEADER.unpack_from(data)
        if length == 0 and next_header == 0:
            raise PacketDecodeError("ip-jumbogram")
        end = _IPV6_HEADER_BYTES + length
        if end > len(data):
            raise PacketDecodeError("ip-truncated", f"payload length {length}")
        body = data[_IPV6_HEADER_BYTES:end]
        src_text = socket.inet_ntop(socket.AF_INET6, src)
        dst_text = socket.inet_ntop(socket.AF_INET6, dst)
        protocol, pos, fragment = _walk_extensions(next_header, body, 0)
        if fragment is not None:
            offset_more, ident = fragment
            offset = offset_more & 0xFFF8
            more = bool(offset_more & 1)
            # RFC 8200 §4.5: the Fragment header's Next Header is the fragmentable part's first.
            whole = self._add_fragment(
                (6, src, dst, ident), timestamp_ns, offset, more, body[pos:], protocol
            )
            if whole is None:
                return None
            fragmentable, first_header = whole
            protocol, pos, again = _walk_extensions(first_header, fragmentable, 0)
            if again is not None:
                raise PacketDecodeError("ip-header", "a fragment header after reassembly")
            body = fragmentable
        return IpPacket(6, src_text, dst_text, protocol, body[pos:])

    # --------------------------------------------------------------------- reassembly

    def _add_fragment(
        self,
        key: tuple[object, ...],
        timestamp_ns: int,
        offset: int,
        more: bool,
        data: bytes,
        next_header: int | None,
    ) -> tuple[bytes, int] | None:
        limits = self.limits
        self._expire(timestamp_ns)
        end = offset + len(data)
        if end > _MAX_DATAGRAM_BYTES or (more and len(data) % 8) or (more and not data):
            self._forget(key, None)
            raise PacketDecodeError("fragment-bad", f"offset {offset}, {len(data)} bytes")
        pending = self._pending.get(key)
        if pending is None:
            while len(self._pending) >= limits.max_datagrams:
                self._forget(next(iter(self._pending)), "fragment-evicted")
            pending = self._pending[key] = _Pending(timestamp_ns)
        if not more:
            if pending.total is not None and pending.total != end:
                self._forget(key, None)
                raise PacketDecodeError("fragment-overlap", "two different last fragments")
            pending.total = end
        same = pending.pieces.get(offset)
        if same is not None and same == data:
            return None  # a duplicate: the network or the sender repeated it
        for start, piece in pending.pieces.items():
            if start < end and offset < start + len(piece):
                self._forget(key, None)
                raise PacketDecodeError("fragment-overlap", f"at offset {offset}")
        if (pending.total is not None and end > pending.total) or (
            len(pending.pieces) >= limits.max_fragments_per_datagram
        ):
            self._forget(key, None)
            raise PacketDecodeError("fragment-bad", f"offset {offset}, {len(data)} bytes")
        pending.pieces[offset] = data
        pending.held_bytes += len(data)
        self._held_bytes += len(data)
        if offset == 0 and next_header is not None:
            pending.next_header = next_header
        while self._held_bytes > limits.max_total_bytes and len(self._pending) > 1:
            oldest = next(iter(self._pending))
            self._forget(oldest if oldest != key else list(self._pending)[1], "fragment-evicted")
        if pending.total is None or pending.held_bytes != pending.total:
            return None
        # No overlaps and as many bytes as the total: the pieces tile [0, total).
        self._forget(key, None)
        whole = b"".join(pending.pieces[start] for start in sorted(pending.pieces))
        return whole, pending.next_header if pending.next_header is not None else -1

    def _forget(self, key: tuple[object, ...], reason: str | None) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._held_bytes -= pending.held_bytes
        if reason is not None:
            self.drops[reason] += 1

    def _expire(self, now_ns: int) -> None:
        limit_ns = int(self.limits.timeout_s * NS_PER_S)
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            if now_ns - oldest.first_ns <= limit_ns:
                return
            self._forget(key, "fragment-timeout")

    def finish(self) -> None:
        """End of capture: every datagram still missing fragments is given up."""
        for key in list(self._pending):
            self._forget(key, "fragment-timeout")


def _walk_extensions(
    next_header: int, body: bytes, pos: int
) -> tuple[int, int, tuple[int, int] | None]:
    """RFC 8200 §4: (upper-layer protocol, its offset, fragment (offset|M, id) or None).

    Stops at the first Fragment header, whose Next Header it returns as the protocol.
    """
    for _ in range(_MAX_EXTENSION_HEADERS):
        if next_header in _IPV6_GENERIC_EXTENSIONS or next_header == _IPV6_AH:
            if pos + 2 > len(body):
                raise PacketDecodeError("ip-truncated", f"extension header {next_header}")
            # AH counts 4-octet units less 2 (RFC 4302 §2.2), the others 8-octet units less 1
            # (RFC 8200 §4.3).
            size = (body[pos + 1] + 2) * 4 if next_header == _IPV6_AH else (body[pos + 1] + 1) * 8
            if pos + size > len(body):
                raise PacketDecodeError("ip-truncated", f"extension header {next_header}")
            next_header = body[pos]
            pos += size
            continue
        if next_header == _IPV6_FRAGMENT:
            if pos + 8 > len(body):
                raise PacketDecodeError("ip-truncated", "fragment header")
            following, _reserved, offset_more, ident = struct.unpack_from("!BBHI", body, pos)
            return following, pos + 8, (offset_more, ident)
        return next_header, pos, None
    raise PacketDecodeError("ip-header", "too many extension headers")
