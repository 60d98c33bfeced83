"""DTMF and other telephone events carried in RTP (RFC 4733).

These packets are never audio.  :class:`TelephoneEvent` is one payload (RFC 4733 §2.3);
:class:`DtmfDetector` turns the stream of them into one :class:`DtmfEvent` per key press
for the recording's sidecar.

An event is identified by its RTP timestamp (the event's start, RFC 4733 §2.3.1, the same
in every packet of the event) and SSRC.  Its packets repeat with a growing duration; the
final packet, with the E bit, is sent three times (RFC 4733 §2.5.1.4).  A receiver reports
the event once, on the first E packet, and ignores the repeats.  If every E packet is lost,
the event is reported when the next event starts or at :meth:`DtmfDetector.finish`, with
the longest duration seen.

Not handled: a long event split into segments (RFC 4733 §2.5.1.3, over 8 s at 8 kHz) is
reported as one event per segment; RFC 2198 redundancy is not decoded.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

from srs.errors import RtpError, UsageError
from srs.rtp.track import TELEPHONE_EVENT_BYTES, Placed

__all__ = ["TelephoneEvent", "DtmfEvent", "DtmfDetector", "event_name"]

_PAYLOAD = struct.Struct("!BBH")
# RFC 4733 §3.2 Table 7: events 0-15 are the DTMF keys, 16 is flash.
_DTMF_NAMES = "0123456789*#ABCD"
# Ended events remembered to ignore their repeated E packets (three per event).
_ENDED_MEMORY = 16
# An event in progress: ((ssrc, start timestamp), code, start offset, longest duration, volume)
_InProgress = tuple[tuple[int, int], int, int, int, int]


def event_name(event_code: int) -> str:
    """``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``, ``"flash"``, else ``"event-N"``."""
    if 0 <= event_code < len(_DTMF_NAMES):
        return _DTMF_NAMES[event_code]
    if event_code == 16:
        return "flash"
    return f"event-{event_code}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3).

    ``volume`` is the power level in -dBm0 (0-63); ``duration`` is in timestamp units since
    the event's start timestamp.
    """

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first four octets; raises ``RtpError("telephone_event")`` if short.

        Octets after the first four are ignored: RFC 4733 §2.3 defines only four, and a
        longer payload is not worth losing the key press over.
        """
        if len(payload) < TELEPHONE_EVENT_BYTES:
            raise RtpError("telephone_event", f"{len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload, 0)
        # The R bit (0x40) is reserved: senders set it to 0, receivers ignore it.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration <= 0xFFFF):
            raise UsageError("event 0-255, volume 0-63, duration 0-65535")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press (or other event) for the sidecar.

    ``start_offset_samples`` is the event's start on the track (samples from the session
    origin at ``clock_rate_hz``); ``ended`` is False when no E packet arrived.
    """

    event_code: int
    start_offset_samples: int
    duration_samples: int
    clock_rate_hz: int
    volume: int
    ended: bool

    @property
    def digit(self) -> str:
        return event_name(self.event_code)

    @property
    def start_s(self) -> float:
        return self.start_offset_samples / self.clock_rate_hz

    @property
    def duration_ms(self) -> int:
        return round(self.duration_samples * 1000 / self.clock_rate_hz)


class DtmfDetector:
    """Collapses the telephone-event packets of one track into :class:`DtmfEvent` values.

    Feed it the ``is_event`` :class:`Placed` items of a :class:`~srs.rtp.track.TrackTimeline`
    in the order the timeline produced them.  ``clock_rate_hz`` is the rate of the track's
    positions and of the event durations (RFC 4733 §2.3.5: the duration is in the
    timestamp units of the stream), except for the payload types of ``event_rates_hz``,
    whose ``a=rtpmap`` gives another rate (telephone-event/8000 beside Opus): their
    durations are converted to the track's rate.
    """

    __slots__ = ("clock_rate_hz", "_rates", "_current", "_ended")

    def __init__(self, clock_rate_hz: int,
                 event_rates_hz: Mapping[int, int] | None = None) -> None:
        if clock_rate_hz <= 0:
            raise UsageError(f"clock_rate_hz must be positive, not {clock_rate_hz}")
        self.clock_rate_hz = clock_rate_hz
        self._rates: dict[int, int] = {}
        self.use_rates(event_rates_hz or {})
        # The event in progress: (key, code, start offset, longest duration, volume).
        self._current: _InProgress | None = None
        self._ended: deque[tuple[int, int]] = deque(maxlen=_ENDED_MEMORY)

    def use_rates(self, event_rates_hz: Mapping[int, int]) -> None:
        """The other rates of a new offer (RFC 3264 §8.3.2), for the packets after it."""
        self._rates = {pt: rate for pt, rate in event_rates_hz.items()
                       if 0 < rate != self.clock_rate_hz}

    def push(self, placed: Placed) -> list[DtmfEvent]:
        """One telephone-event packet; returns the events it completes (0, 1 or 2).

        Raises ``RtpError("telephone_event")`` for a payload too short to read.
        """
        parsed = TelephoneEvent.parse(placed.payload)
        rate = self._rates.get(placed.payload_type) if self._rates else None
        if rate is not None:
            parsed = replace(parsed, duration=parsed.duration * self.clock_rate_hz // rate)
        key = (placed.ssrc, placed.timestamp)
        if key in self._ended:
            return []  # RFC 4733 §2.5.1.4: a repeat of an E packet (or a stray after it)
        out: list[DtmfEvent] = []
        current = self._current
        if current is not None and current[0] != key:
            # A new event began before the previous one's E packet arrived.
            out.append(self._report(current, ended=False))
            current = None
        if current is None:
            current = (key, parsed.event, placed.offset_samples, parsed.duration, parsed.volume)
        elif parsed.duration > current[3]:
            current = (key, current[1], current[2], parsed.duration, parsed.volume)
        if parsed.end:
            out.append(self._report(current, ended=True))
            self._ended.append(key)
            current = None
        self._current = current
        return out

    def finish(self) -> list[DtmfEvent]:
        """End of the track: report an event still in progress (its E packets were lost)."""
        current, self._current = self._current, None
        return [] if current is None else [self._report(current, ended=False)]

    def _report(self, current: _InProgress, *, ended: bool) -> DtmfEvent:
        _, code, start, duration, volume = current
        return DtmfEvent(code, start, duration, self.clock_rate_hz, volume, ended)
