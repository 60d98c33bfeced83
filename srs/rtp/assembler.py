"""One track's placed payloads laid out as contiguous PCM (the worker-thread side).

:class:`~srs.rtp.track.TrackTimeline` decides on the event loop where each payload goes;
:class:`PcmAssembler` decodes the payloads in batches (one codec call per run of
consecutive packets of a stateless codec; a stateful codec's decoder per payload) and
lays the audio out with silence in the gaps, never rewinding: audio that would overlap
what is already laid out loses its overlapping head, counted in ``trimmed_samples`` (the
first arrival wins).  Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import numpy.typing as npt

from srs.codecs import Codec, ffmpeg
from srs.codecs.formats import PayloadError
from srs.codecs.resample import Resampler
from srs.rtp.track import Placed

__all__ = ["PcmAssembler"]


class PcmAssembler:
    """Lays one track's placed audio out as contiguous int16 PCM with silence in the gaps.

    ``codecs`` maps payload type -> :class:`Codec` (payload types without an entry, events
    included, are skipped and counted in ``undecodable_packets``; payloads a decoder
    refuses are dropped and counted in ``decode_errors``).  Positions are converted from
    the track clock rate to the file's ``sample_rate_hz``; audio decoded at another rate is
    resampled to it.

    Usage, about once a second and at the end::

        assembler.add(timeline.drain(now) + collected)     # decodes in one call per run
        writer.append(assembler.take(timeline.settled_offset(now)))
        ...
        assembler.add(timeline.flush())
        writer.append(assembler.finish(timeline.finish(now)))

    The concatenation of everything :meth:`take` and :meth:`finish` return is the track,
    exactly ``finish(total)`` samples long: audio never rewinds (an overlapping head is
    trimmed, ``trimmed_samples``), gaps are zeros, audio past the end is dropped
    (``beyond_end_samples``).
    """

    __slots__ = (
        "clock_rate_hz",
        "sample_rate_hz",
        "position_samples",
        "trimmed_samples",
        "beyond_end_samples",
        "undecodable_packets",
        "decode_errors",
        "_codecs",
        "_frame_decoders",
        "_stretch",
        "_segments",
        "_end",
    )

    def __init__(
        self, codecs: Mapping[int, Codec], clock_rate_hz: int, sample_rate_hz: int | None = None
    ) -> None:
        self._codecs = dict(codecs)
        self.clock_rate_hz = clock_rate_hz
        self.sample_rate_hz = clock_rate_hz if sample_rate_hz is None else sample_rate_hz
        self.position_samples = 0  # samples handed out so far
        self.trimmed_samples = 0
        self.beyond_end_samples = 0
        self.undecodable_packets = 0
        self.decode_errors = 0  # payloads their codec's decoder refused (dropped)
        # Per payload type: a stateful codec's decoder, a resampler to the file's rate.
        self._frame_decoders: dict[int, ffmpeg.FrameDecoder] = {}
        self._stretch: _Stretch | None = None
        # Decoded audio not handed out yet: (start sample, pcm), in order, non-overlapping.
        self._segments: list[tuple[int, npt.NDArray[np.int16]]] = []
        self._end = 0  # end of the audio laid out so far (never decreases)

    def _to_samples(self, offset: int) -> int:
        if self.sample_rate_hz == self.clock_rate_hz:
            return offset
        return offset * self.sample_rate_hz // self.clock_rate_hz

    @property
    def end_offset(self) -> int:
        """The track position (clock rate) where the audio laid out so far ends."""
        if self.sample_rate_hz == self.clock_rate_hz:
            return self._end
        return self._end * self.clock_rate_hz // self.sample_rate_hz

    def skip_to(self, offset: int) -> None:
        """Begin at track position ``offset``: what lies before it was laid out elsewhere
        (payloads placed there are trimmed, as if handed out)."""
        start = self._to_samples(offset)
        if start > self.position_samples:
            self.position_samples = start
            self._end = max(self._end, start)

    def use_codecs(self, codecs: Mapping[int, Codec]) -> None:
        """Decode with ``codecs`` from now on (a new offer mapped more payload types); a
        payload type whose codec changed gets a fresh decoder."""
        for pt, codec in codecs.items():
            if self._codecs.get(pt) != codec:
                self._frame_decoders.pop(pt, None)
                if self._stretch is not None and self._stretch.payload_type == pt:
                    self._end_stretch()
        self._codecs = dict(codecs)

    def add(self, placed: Iterable[Placed]) -> None:
        """Decode and lay out placed payloads, in the order the timeline produced them.

        Consecutive payloads of one stateless codec that follow each other without a gap
        are joined and decoded in one call; a stateful codec's payloads go through its
        decoder one by one, its state running across them.
        """
        run_codec: Codec | None = None
        run_decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None
        run_pt = run_start = run_next = 0
        run: list[bytes] = []
        for item in placed:
            codec = None if item.is_event else self._codecs.get(item.payload_type)
            if codec is None:
                self.undecodable_packets += 1
                continue
            start = self._to_samples(item.offset_samples)
            decode, samples_in = codec.decode, codec.samples_in
            if samples_in is None:  # stateful and framed: one payload at a time
                if run_codec is not None and run_decode is not None:
                    self._place(run_codec, run_pt, run_start, run_decode(b"".join(run)))
                    run_codec = None
                self._decode_frame(codec, item, start)
                continue
            if decode is None:  # stateful, whole samples: joined, its state runs across
                decode = functools.partial(self._decode_joined, codec, item.payload_type)
            payload = item.payload
            if codec.sample_bytes > 1 and len(payload) % codec.sample_bytes:
                payload = payload[: len(payload) - len(payload) % codec.sample_bytes]
            if codec is run_codec and item.payload_type == run_pt and start == run_next:
                run.append(payload)
            else:
                if run_codec is not None and run_decode is not None:
                    self._place(run_codec, run_pt, run_start, run_decode(b"".join(run)))
                run_codec, run_decode, run_pt = codec, decode, item.payload_type
                run_start = run_next = start
                run = [payload]
            run_next += samples_in(payload) * self.sample_rate_hz // codec.sample_rate_hz
        if run_codec is not None and run_decode is not None:
            self._place(run_codec, run_pt, run_start, run_decode(b"".join(run)))

    def _decoder(self, codec: Codec, payload_type: int) -> ffmpeg.FrameDecoder | None:
        decoder = self._frame_decoders.get(payload_type)
        if decoder is None and codec.ffmpeg is not None:
            decoder = ffmpeg.new_decoder(codec.ffmpeg, codec.sample_rate_hz, dict(codec.fmtp))
            self._frame_decoders[payload_type] = decoder
        return decoder

    def _decode_frame(self, codec: Codec, item: Placed, start: int) -> None:
        decoder = self._decoder(codec, item.payload_type)
        if decoder is None:  # neither kind of decoder: nothing to decode with
            self.undecodable_packets += 1
            return
        try:
            pcm = decoder.decode(item.payload)
        except PayloadError:
            self.decode_errors += 1
            return
        self._place(codec, item.payload_type, start, pcm)

    def _decode_joined(self, codec: Codec, payload_type: int,
                       data: bytes) -> npt.NDArray[np.int16]:
        """Joined payloads of a sample-by-sample stateful codec, in as few calls as the
        decoder's size bound allows; what it refuses is silence, counted once."""
        decoder = self._decoder(codec, payload_type)
        if decoder is None:
            self.undecodable_packets += 1
            return np.zeros(codec.samples_in(data) if codec.samples_in else 0, np.int16)
        step = decoder.max_bytes
        pieces = []
        for at in range(0, len(data), step):
            chunk = data[at:at + step]
            try:
                pieces.append(decoder.decode(chunk))
            except PayloadError:
                self.decode_errors += 1
                pieces.append(np.zeros(codec.samples_in(chunk) if codec.samples_in else 0,
                                       np.int16))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _place(self, codec: Codec, payload_type: int, start: int,
               pcm: npt.NDArray[np.int16]) -> None:
        """Lay out audio decoded at the codec's rate, resampled to the file's when they
        differ.

        Resampled audio is laid out by stretches: while payloads of one payload type
        follow each other without a gap, one resampler runs across them and its output is
        laid out back to back from where the stretch began (positions from the cumulative
        input count, never rounded per packet).  A gap, another payload type or a write
        past the stretch's end (:meth:`take`) ends it: the resampler's buffered tail is
        flushed to where it belongs first."""
        stretch = self._stretch
        if codec.sample_rate_hz == self.sample_rate_hz:
            if stretch is not None:
                self._end_stretch()
            self._lay_out(start, pcm)
            return
        if stretch is not None and (
                stretch.payload_type != payload_type
                or stretch.resampler.from_rate_hz != codec.sample_rate_hz
                or abs(start - stretch.next_start()) > 1):
            self._end_stretch()
            stretch = None
        if stretch is None:
            stretch = self._stretch = _Stretch(
                payload_type, Resampler(codec.sample_rate_hz, self.sample_rate_hz), start)
        out, _ = stretch.resampler.push(pcm)
        stretch.pushed += len(pcm)
        self._lay_out(stretch.origin + stretch.produced, out)
        stretch.produced += len(out)

    def _end_stretch(self) -> None:
        stretch, self._stretch = self._stretch, None
        if stretch is not None:
            self._lay_out(stretch.origin + stretch.produced, stretch.resampler.flush())

    def _lay_out(self, start: int, pcm: npt.NDArray[np.int16]) -> None:
        if start < self._end:
            overlap = self._end - start
            if overlap >= len(pcm):
                self.trimmed_samples += len(pcm)
                return
            self.trimmed_samples += overlap
            pcm = pcm[overlap:]
            start = self._end
        if len(pcm):
            self._segments.append((start, pcm))
            self._end = start + len(pcm)

    def take(self, up_to_offset: int) -> npt.NDArray[np.int16]:
        """The PCM from the last position up to track position ``up_to_offset`` (in the
        track clock rate), zeros where nothing was placed.  Empty if already there."""
        up_to = self._to_samples(up_to_offset)
        if self._stretch is not None and up_to > self._end:
            self._end_stretch()  # silence follows: the resampler's tail goes before it
        count = up_to - self.position_samples
        if count <= 0:
            return np.zeros(0, dtype=np.int16)
        out = np.zeros(count, dtype=np.int16)
        kept: list[tuple[int, npt.NDArray[np.int16]]] = []
        for start, pcm in self._segments:
            relative = start - self.position_samples
            if relative >= count:
                kept.append((start, pcm))
                continue
            length = min(len(pcm), count - relative)
            out[relative : relative + length] = pcm[:length]
            if length < len(pcm):
                kept.append((start + length, pcm[length:]))
        self._segments = kept
        self.position_samples = up_to
        self._end = max(self._end, up_to)
        return out

    def finish(self, total_samples: int) -> npt.NDArray[np.int16]:
        """The rest of the track, up to ``total_samples`` (track clock rate): padded with
        silence, or cut where audio runs past the end."""
        self._end_stretch()
        out = self.take(total_samples)
        self.beyond_end_samples += sum(len(pcm) for _, pcm in self._segments)
        self._segments = []
        return out


class _Stretch:
    """Consecutive payloads of one payload type going through one resampler."""

    __slots__ = ("payload_type", "resampler", "origin", "pushed", "produced")

    def __init__(self, payload_type: int, resampler: Resampler, origin: int) -> None:
        self.payload_type = payload_type
        self.resampler = resampler
        self.origin = origin  # the file position (sample rate) where the stretch began
        self.pushed = 0  # input samples (the codec's rate) so far
        self.produced = 0  # output samples laid out so far

    def next_start(self) -> int:
        """Where the next payload of the stretch starts (file positions)."""
        resampler = self.resampler
        return self.origin + self.pushed * resampler.to_rate_hz // resampler.from_rate_hz

