"""An impairing RTP sender for tests: builds what a track receives, with exact times.

Pure: no sockets, no clock.  A :class:`Sender` produces packets at a fixed packet time,
like a phone; the functions below impair the resulting list of ``Arrival`` values (loss,
duplicates, reordering, delay) before it is fed to a ``TrackTimeline``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from srs.rtp.packet import RtpPacket


@dataclass(frozen=True)
class Arrival:
    arrival_s: float
    packet: RtpPacket
    index: int  # position in the sender's output, to name packets in tests


class Sender:
    """One RTP source.  Times in seconds; ``ptime_ms`` per packet; 1 payload byte per sample
    (G.711).  Each payload is ``index % 256`` repeated, so a test can tell packets apart."""

    def __init__(
        self,
        *,
        ssrc: int = 0x1234_5678,
        sequence_number: int = 1000,
        timestamp: int = 50_000,
        start_s: float = 0.0,
        clock_rate_hz: int = 8000,
        ptime_ms: int = 20,
        payload_type: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        self.ssrc = ssrc
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.time_s = start_s
        self.clock_rate_hz = clock_rate_hz
        self.samples_per_packet = clock_rate_hz * ptime_ms // 1000
        self.ptime_s = ptime_ms / 1000
        self.payload_type = payload_type
        self.delay_s = delay_s
        self.arrivals: list[Arrival] = []
        self._marker = True

    def talk(self, packets: int) -> None:
        for _ in range(packets):
            self.send(bytes([len(self.arrivals) % 256]) * self.samples_per_packet)
            self.timestamp = (self.timestamp + self.samples_per_packet) & 0xFFFF_FFFF
            self.time_s += self.ptime_s

    def send(
        self, payload: bytes, *, payload_type: int | None = None, timestamp: int | None = None
    ) -> None:
        """One packet now, without advancing time or timestamp (events, by hand)."""
        packet = RtpPacket(
            self.payload_type if payload_type is None else payload_type,
            self.sequence_number,
            self.timestamp if timestamp is None else timestamp,
            self.ssrc,
            payload,
            marker=self._marker,
        )
        self._marker = False
        self.arrivals.append(
            Arrival(round(self.time_s + self.delay_s, 9), packet, len(self.arrivals))
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF

    def pause(self, seconds: float, *, advance_timestamp: bool = True) -> None:
        """Send nothing for a while (DTX, hold).  RTP time runs on unless told otherwise
        (a sender that freezes its timestamps while on hold)."""
        self.time_s += seconds
        if advance_timestamp:
            self.timestamp = (self.timestamp + round(seconds * self.clock_rate_hz)) & 0xFFFF_FFFF
        self._marker = True

    def restart(self, *, ssrc: int, sequence_number: int, timestamp: int) -> None:
        self.ssrc = ssrc
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self._marker = True


def lose(arrivals: list[Arrival], *indices: int) -> list[Arrival]:
    return [a for a in arrivals if a.index not in indices]


def duplicate(arrivals: list[Arrival], index: int, after_s: float = 0.001) -> list[Arrival]:
    original = next(a for a in arrivals if a.index == index)
    return delivered([*arrivals, replace(original, arrival_s=original.arrival_s + after_s)])


def delay(arrivals: list[Arrival], index: int, by_s: float) -> list[Arrival]:
    return delivered(
        [
            replace(a, arrival_s=round(a.arrival_s + by_s, 9)) if a.index == index else a
            for a in arrivals
        ]
    )


def delivered(arrivals: list[Arrival]) -> list[Arrival]:
    """In order of arrival (stable for equal times)."""
    return sorted(arrivals, key=lambda a: a.arrival_s)
