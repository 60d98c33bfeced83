"""One session's tracks, decoded live from what the timeline placed.

The file path takes each stream's placed payloads once a tick (``StreamState.
take_pending``) and writes them a second or so late.  A :class:`SessionFeed` reads the
same payloads as they are placed: every pump (tens of ms) it decodes what was appended to
``StreamState.pending`` since the last one, and the stream calls :meth:`TrackFeed.taken`
with the list it detaches, so nothing placed is missed and nothing is taken away from the
file.  Its own :class:`~srs.rtp.assembler.PcmAssembler` lays the audio out as the file's
does (same decoders, same positions), at the rate the live format wants, and it is cut
into 20 ms chunks from the session's origin: the chunk at ``timestamp`` ms is the file's
audio at that time.

Live cannot wait for late packets: audio goes out up to the end of what has arrived, and
when nothing arrives (hold, silence suppression) silence goes out :data:`SILENCE_LAG_S`
late; a packet that lands behind what was sent is dropped from the live stream only
(the file still places it).  Pure: no I/O, no clock; a fault here disables the feed
(``error``) and never reaches the recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from srs.codecs import Codec
from srs.codecs.g711 import pcmu_decode
from srs.errors import RtpError
from srs.live.formats import CHUNK_MS, Digit, LiveFormat, StreamStart, TrackInfo, track_rate
from srs.live.ulaw import UlawLayout, g711_only
from srs.recording.session import RecordingSession
from srs.recording.stream import StreamState
from srs.rtp.assembler import PcmAssembler
from srs.rtp.dtmf import DtmfDetector
from srs.rtp.track import Placed

__all__ = ["Chunk", "SILENCE_LAG_S", "SessionFeed", "TrackFeed", "selected", "stream_parameters",
           "track_names"]

# With nothing arriving, silence is sent this far behind now: longer than the jitter of a
# stream that flows, short enough that a consumer on hold still hears time pass.
SILENCE_LAG_S = 0.5
# RFC 4733 §3.2 events 0-15: the keys Twilio's dtmf event reports.
_KEYS = frozenset("0123456789*#ABCD")
_EMPTY = np.zeros(0, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class Chunk:
    """``CHUNK_MS`` of one track (shorter only at the end), from ``start_sample``."""

    track: int
    start_sample: int
    rate_hz: int
    pcm: npt.NDArray[np.int16] | bytes  # bytes: mu-law octets (see srs.live.ulaw)

    @property
    def timestamp_ms(self) -> int:
        return self.start_sample * 1000 // self.rate_hz

    @property
    def ms(self) -> int:
        return len(self.pcm) * 1000 // self.rate_hz


def track_names(session: RecordingSession) -> dict[str, str]:
    """Each stream's track name: Twilio's ``inbound`` and ``outbound`` for the two streams
    of the mix (the order ``mix.wav`` puts them in), ``inbound`` for a lone stream, the
    stream's own name for three or more."""
    order = session.mix_order()
    if order is not None:
        return {order[0].stem: "inbound", order[1].stem: "outbound"}
    if len(session.streams) == 1:
        return {session.streams[0].stem: "inbound"}
    return {s.stem: s.stem for s in session.streams}


def stream_parameters(session: RecordingSession) -> dict[str, str]:
    """The ``start`` event's ``customParameters``: Twilio's are the ``<Parameter>``s of
    the ``<Siprec>``, which its SIPREC forks carry in the metadata (and again as ``X-``
    headers): the metadata's when it has any, else the ``X-`` headers, less the two Twilio
    ids that ``callSid`` and ``accountSid`` already give."""
    if session.metadata is not None and (params := session.metadata.custom_parameters()):
        return dict(params)
    return {name: value for name, value in session.info.header_parameters.items()
            if name.lower() not in ("x-twilio-callsid", "x-twilio-accountsid")}


def selected(stream: StreamState, name: str, wanted: Sequence[str]) -> bool:
    """``stream.tracks``: ``both``, a track name, or a stream label or name."""
    return any(w == "both" or w == name or w in (stream.label, stream.stem) for w in wanted)


class TrackFeed:
    """One stream's live audio; installed as the stream's ``tap``."""

    __slots__ = ("index", "stream", "info", "assembler", "dtmf", "seen", "position",
                 "digits", "_carry", "_size", "_decoders", "_rates", "error")

    def __init__(self, index: int, stream: StreamState, info: TrackInfo, *,
                 ulaw: bool = False) -> None:
        self.index = index
        self.stream = stream
        self.info = info
        clock = stream.timeline.clock_rate_hz
        # mu-law out (Twilio) from G.711 in: the octets as they came (srs.live.ulaw).
        self.assembler: PcmAssembler | UlawLayout
        if ulaw and clock == info.rate_hz == 8000 and g711_only(stream.decoders):
            self.assembler = UlawLayout(stream.decoders)
        else:
            self.assembler = PcmAssembler(stream.decoders, clock, info.rate_hz)
        self.dtmf = DtmfDetector(clock, stream.event_rates_hz)
        self.seen = 0  # items of stream.pending decoded already
        self.position = 0  # samples handed out in chunks (info.rate_hz, from the origin)
        self._carry: npt.NDArray[np.int16] | bytes = (
            b"" if isinstance(self.assembler, UlawLayout) else _EMPTY)  # less than a chunk
        self._size = info.rate_hz * CHUNK_MS // 1000
        self._decoders: dict[int, Codec] = stream.decoders
        self._rates = stream.event_rates_hz
        self.digits: list[Digit] = []  # key presses not handed out yet
        self.error: BaseException | None = None
        stream.tap = self

    def taken(self, batch: list[Placed]) -> None:
        """The stream detaches ``batch`` (its ``pending``): decode what is new of it."""
        try:
            self._add(batch, self.seen)
        finally:
            self.seen = 0

    def pump(self, now: float, out: list[Chunk]) -> list[Digit]:
        """Decode what arrived since the last pump; append the whole chunks ready."""
        pending = self.stream.pending
        if len(pending) > self.seen:
            start, self.seen = self.seen, len(pending)
            self._add(pending, start)
        if self.error is not None:
            return []
        assembler = self.assembler
        floor = self.stream.timeline.wall_offset(now - SILENCE_LAG_S)
        self._cut(assembler.take(max(assembler.end_offset, floor)), out, last=False)
        digits, self.digits = self.digits, []
        return digits

    def finish(self, at: float, out: list[Chunk]) -> None:
        """The rest, up to the session's end at ``at`` (silence where nothing came), the
        last chunk short; the stream's tap is removed."""
        if self.stream.tap is self:
            self.stream.tap = None
        if self.error is None:
            self._add(self.stream.pending, self.seen)
            end = max(self.assembler.end_offset, self.stream.timeline.wall_offset(at))
            self._cut(self.assembler.take(end), out, last=True)

    def _add(self, items: list[Placed], start: int) -> None:
        if self.error is not None or start >= len(items):
            return
        try:
            stream = self.stream
            if stream.decoders is not self._decoders:  # a new offer's mapping (use_offer)
                self._decoders = stream.decoders
                if isinstance(self.assembler, UlawLayout) and not g711_only(stream.decoders):
                    self._leave_ulaw()
                self.assembler.use_codecs(stream.decoders)
            if stream.event_rates_hz is not self._rates:
                self._rates = stream.event_rates_hz
                self.dtmf.use_rates(stream.event_rates_hz)
            new = items[start:] if start else items
            for item in new:
                if item.is_event:
                    self._event(item)
            self.assembler.add(new)
        except Exception as exc:  # a fault of the live path must not reach the recording
            self.error = exc

    def _leave_ulaw(self) -> None:
        """A new offer brought a codec other than G.711: decode from here on, starting
        where the octets end (what is laid out goes on as PCM)."""
        ulaw = self.assembler
        if not isinstance(ulaw, UlawLayout):
            return
        end = ulaw.end_offset
        rest = ulaw.take(end)
        carry = self._carry
        self._carry = pcmu_decode(bytes(carry) + rest) if isinstance(carry, bytes) else carry
        self.assembler = PcmAssembler(self._decoders, self.stream.timeline.clock_rate_hz,
                                      self.info.rate_hz)
        self.assembler.skip_to(end)

    def _event(self, item: Placed) -> None:
        try:
            events = self.dtmf.push(item)
        except RtpError:
            return  # too short to read: the file path counts it
        for event in events:
            if event.digit in _KEYS:
                self.digits.append(Digit(self.index, event.digit,
                                          event.start_offset_samples * 1000
                                          // event.clock_rate_hz))

    def _cut(self, pcm: npt.NDArray[np.int16] | bytes, out: list[Chunk], *,
             last: bool) -> None:
        carry = self._carry
        if len(carry):
            if isinstance(pcm, bytes) and isinstance(carry, bytes):
                pcm = carry + pcm
            elif not isinstance(pcm, bytes) and not isinstance(carry, bytes):
                pcm = np.concatenate((carry, pcm))
        size, rate = self._size, self.info.rate_hz
        whole = len(pcm) // size * size
        position = self.position
        out.extend(Chunk(self.index, position + at, rate, pcm[at:at + size])
                   for at in range(0, whole, size))
        self.position = position + whole
        self._carry = pcm[whole:]
        if last and len(self._carry):
            out.append(Chunk(self.index, self.position, rate, self._carry))
            self.position += len(self._carry)
            self._carry = self._carry[:0]


class SessionFeed:
    """Every streamed track of one recording session."""

    def __init__(self, session: RecordingSession, live_format: LiveFormat,
                 wanted: Sequence[str], stream_sid: str) -> None:
        names = track_names(session)
        self.tracks: list[TrackFeed] = []
        for stream in session.streams:
            name = names[stream.stem]
            if selected(stream, name, wanted):
                info = TrackInfo(name, stream.stem,
                                 track_rate(live_format, stream.sample_rate_hz))
                self.tracks.append(TrackFeed(len(self.tracks), stream, info,
                                             ulaw=live_format == "twilio"))
        twilio = session.info.twilio
        self.start = StreamStart(
            stream_sid=stream_sid, session_id=session.session_id, call_id=session.info.call_id,
            tracks=tuple(t.info for t in self.tracks),
            custom_parameters=stream_parameters(session),
            call_sid=twilio.call_sid if twilio is not None else None,
            account_sid=twilio.account_sid if twilio is not None else None)

    @property
    def error(self) -> BaseException | None:
        return next((t.error for t in self.tracks if t.error is not None), None)

    def pump(self, now: float) -> tuple[list[Chunk], list[Digit]]:
        chunks: list[Chunk] = []
        digits: list[Digit] = []
        for track in self.tracks:
            digits.extend(track.pump(now, chunks))
        return chunks, digits

    def finish(self, at: float) -> tuple[list[Chunk], list[Digit]]:
        chunks: list[Chunk] = []
        digits: list[Digit] = []
        for track in self.tracks:
            track.finish(at, chunks)
            digits.extend(track.digits)
            track.digits = []
        return chunks, digits
