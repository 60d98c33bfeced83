"""From captured packets to UDP datagrams and ordered TCP stream bytes.

:class:`PacketDecoder` runs each :class:`~srs.capture.source.CapturedPacket` through the link
layer (:mod:`srs.capture.link`), IP with fragment reassembly (:mod:`srs.capture.ip`) and
UDP/TCP (:mod:`srs.capture.packets`, :mod:`srs.capture.tcp`).  A packet that cannot be decoded
is dropped and counted in ``drops`` under its reason -- never raised: one bad frame in a
capture of a million must not stop a replay.  Besides the reasons of those modules:
``"ip-protocol"`` counts IP datagrams that are neither UDP nor TCP (ICMP, ESP, ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from srs.capture.errors import PacketDecodeError
from srs.capture.ip import FragmentLimits, IpDecoder
from srs.capture.link import ip_packet
from srs.capture.packets import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    CaptureEvent,
    Datagram,
    parse_tcp,
    parse_udp,
)
from srs.capture.source import NS_PER_S, CapturedPacket
from srs.capture.tcp import TcpLimits, TcpReassembler

__all__ = ["PacketDecoder", "decode_packets"]


class PacketDecoder:
    """Stateful decoder of one capture: fragments and TCP streams span packets."""

    def __init__(
        self,
        *,
        fragment_limits: FragmentLimits = FragmentLimits(),
        tcp_limits: TcpLimits = TcpLimits(),
    ) -> None:
        self.drops: Counter[str] = Counter()
        self.packets = 0
        self._ip = IpDecoder(self.drops, fragment_limits)
        self._tcp = TcpReassembler(self.drops, tcp_limits)
        self._last_timestamp = 0.0

    @property
    def held_bytes(self) -> int:
        """Bytes waiting for fragments or missing TCP segments (bounded by the limits)."""
        return self._ip.held_bytes + self._tcp.buffered_bytes

    def decode(self, packet: CapturedPacket) -> list[CaptureEvent]:
        """The events ``packet`` completes (none while it waits for others)."""
        self.packets += 1
        timestamp = packet.timestamp_ns / NS_PER_S
        self._last_timestamp = timestamp
        try:
            ip = self._ip.decode(ip_packet(packet.linktype, packet.data), packet.timestamp_ns)
            if ip is None:
                return []
            if ip.protocol == IPPROTO_UDP:
                sport, dport, payload = parse_udp(ip.payload)
                return [Datagram(timestamp, ip.src, sport, ip.dst, dport, payload)]
            if ip.protocol == IPPROTO_TCP:
                return self._tcp.segment(timestamp, parse_tcp(ip.src, ip.dst, ip.payload))
            raise PacketDecodeError("ip-protocol", f"protocol {ip.protocol}")
        except PacketDecodeError as error:
            self.drops[error.reason] += 1
            return []

    def finish(self) -> list[CaptureEvent]:
        """End of capture: TCP bytes still waiting behind gaps, and fragments given up."""
        self._ip.finish()
        return self._tcp.finish(self._last_timestamp)


def decode_packets(
    packets: Iterable[CapturedPacket], decoder: PacketDecoder | None = None
) -> Iterator[CaptureEvent]:
    """Every event of ``packets`` in order, then what :meth:`PacketDecoder.finish` releases.

    Pass your own ``decoder`` to read its ``drops`` afterwards.
    """
    decoder = decoder if decoder is not None else PacketDecoder()
    for packet in packets:
        yield from decoder.decode(packet)
    yield from decoder.finish()
