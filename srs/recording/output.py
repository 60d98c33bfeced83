"""One recorded stream's files, driven from the worker thread: decode, lay out, write.

The event loop owns a stream's timeline (:class:`srs.recording.session.StreamState`); a
:class:`StreamOutput` owns its decoder, its WAV writer and its DTMF detector, and only the
worker thread touches it.  The shell hands batches of placed payloads from one to the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from srs.codecs import Codec
from srs.recording import sidecar as sc
from srs.recording.stream import CodecSwitch
from srs.recording.wav import RecordingIOError, WavWriter
from srs.rtp.assembler import PcmAssembler
from srs.rtp.dtmf import DtmfDetector, DtmfEvent
from srs.rtp.track import Placed

__all__ = ["StreamOutput", "TAIL_GRACE_S"]

# A track ends at the session's end (the BYE), but the last packet the sender sent before
# its BYE starts a few ms before it and lasts a whole packet: it is kept whole, up to this
# much past the end (a 100 ms packet), instead of cut.  Audio further out stays cut
# (``beyond_end_samples``): a sender's timestamps cannot make a file grow.
TAIL_GRACE_S = 0.1

# RFC 4733 §3.2 events 0-16 that the sidecar records as key presses.
_DTMF_DIGITS = frozenset("0123456789*#ABCD") | {"flash"}
# Key presses listed per stream; more are only counted (dtmf_dropped): a sender can start
# a new event with every packet, and the sidecar must stay small.
MAX_DTMF_EVENTS = 1000
# An event of the same key that starts within this of the previous one's end continues it:
# RFC 4733 §2.5.1.3 splits a long press into segments that abut, and a repeated E packet
# set is no new press.  Far below the pause between two real presses (tens of ms).
COALESCE_GAP_S = 0.01


class StreamOutput:
    """One stream's files, driven from the worker thread: decode, lay out, write."""

    def __init__(self, path: Path, decoders: Mapping[int, Codec], clock_rate_hz: int,
                 sample_rate_hz: int, event_rates_hz: Mapping[int, int] | None = None) -> None:
        self.path = path
        self.assembler = PcmAssembler(decoders, clock_rate_hz, sample_rate_hz)
        self.writer = WavWriter(path, sample_rate_hz)
        self.dtmf = DtmfDetector(clock_rate_hz, event_rates_hz)
        self.dtmf_events: list[sc.DtmfEvent] = []
        self.dtmf_dropped = 0
        self._last_press: DtmfEvent | None = None  # the last one listed, as detected
        self.label: str | None = None
        self.failed: str | None = None  # the storage error that stopped this file

    def switch(self, switch: CodecSwitch) -> None:
        """Lay out what was placed under the old mapping, then decode with the new one."""
        if self.failed is None:
            self._events(switch.before)
            self.assembler.add(switch.before)
        self.assembler.use_codecs(switch.decoders)
        self.dtmf.use_rates(switch.event_rates_hz)

    def write(self, placed: Sequence[Placed], horizon: int, floor: int) -> None:
        """Lay out ``placed`` and write the track up to ``horizon`` -- but not past the end
        of the audio that has arrived, unless that is behind ``floor``.  So audio that
        waited in the kernel (an overloaded server) is written when it comes instead of
        being cut, and silence (hold, a vanished sender) is still written, ``floor`` late."""
        if self.failed is not None:
            return
        self._events(placed)
        self.assembler.add(placed)
        pcm = self.assembler.take(min(horizon, max(self.assembler.end_offset, floor)))
        try:
            if len(pcm):
                self.writer.append(pcm)
            self.writer.flush()
        except RecordingIOError as exc:
            self.failed = str(exc)
            raise

    def add_last(self, placed: Sequence[Placed]) -> None:
        """The session's last placed payloads, before :meth:`finish`."""
        if self.failed is None:
            self._events(placed)
            self.assembler.add(placed)

    def tail_s(self, total_offset: int) -> float:
        """How far past ``total_offset`` the packet playing there runs (0 when none does),
        at most :data:`TAIL_GRACE_S`: the session keeps it whole on every track."""
        assembler = self.assembler
        if self.failed is not None or assembler.end_offset <= total_offset:
            return 0.0
        return min(TAIL_GRACE_S, (assembler.end_offset - total_offset) / assembler.clock_rate_hz)

    def finish(self, total_offset: int) -> None:
        """Write the rest up to ``total_offset`` and close.  A file whose storage already
        failed is only closed: what reached the disk stays playable."""
        if self.failed is None:
            pcm = self.assembler.finish(total_offset)
            for event in self.dtmf.finish():
                self._record(event)
            try:
                if len(pcm):
                    self.writer.append(pcm)
            except RecordingIOError as exc:
                self.failed = str(exc)
        self.writer.close()

    def _events(self, placed: Sequence[Placed]) -> None:
        for item in placed:
            if item.is_event:
                for event in self.dtmf.push(item):
                    self._record(event)

    def _record(self, event: DtmfEvent) -> None:
        digit = event.digit
        if digit not in _DTMF_DIGITS:
            return  # RFC 4733 events other than keys (tones, flash variants) are not DTMF
        last = self._last_press
        if last is not None and last.event_code == event.event_code:
            end = last.start_offset_samples + last.duration_samples
            gap = COALESCE_GAP_S * event.clock_rate_hz
            if last.start_offset_samples <= event.start_offset_samples <= end + gap:
                merged = replace(last, duration_samples=max(
                    end, event.start_offset_samples + event.duration_samples)
                    - last.start_offset_samples, ended=event.ended)
                self._last_press = merged
                self.dtmf_events[-1] = self._press(merged)
                return
        if len(self.dtmf_events) >= MAX_DTMF_EVENTS:
            self.dtmf_dropped += 1
            return
        self._last_press = event
        self.dtmf_events.append(self._press(event))

    def _press(self, event: DtmfEvent) -> sc.DtmfEvent:
        return sc.DtmfEvent(digit=event.digit, at_s=round(event.start_s, 3),
                            duration_ms=event.duration_ms, label=self.label)
