"""One track's placed payloads laid out as contiguous PCM (the worker-thread side).

:class:`~srs.rtp.track.TrackTimeline` decides on the event loop where each payload goes;
:class:`PcmAssembler` decodes the payloads in batches (one codec call per run of
consecutive packets) and lays the audio out with silence in the gaps, never rewinding:
audio that would overlap what is already laid out loses its overlapping head, counted in
``trimmed_samples`` (the first arrival wins).  Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from srs.codecs import Codec
from srs.rtp.track import Placed

__all__ = ["PcmAssembler"]


class PcmAssembler:
    """Lays one track's placed audio out as contiguous int16 PCM with silence in the gaps.

    ``codecs`` maps payload type -> :class:`Codec`; give it only codecs at this file's
    ``sample_rate_hz`` (payload types without an entry, events included, are skipped and
    counted in ``undecodable_packets``).  Positions are converted from the track clock rate
    to the sample rate.

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
        "_codecs",
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

    def use_codecs(self, codecs: Mapping[int, Codec]) -> None:
        """Decode with ``codecs`` from now on (a new offer mapped more payload types)."""
        self._codecs = dict(codecs)

    def add(self, placed: Iterable[Placed]) -> None:
        """Decode and lay out placed payloads, in the order the timeline produced them.

        Consecutive payloads of one codec that follow each other without a gap are joined
        and decoded in one call.
        """
        run_codec: Codec | None = None
        run_start = run_next = 0
        run: list[bytes] = []
        for item in placed:
            codec = None if item.is_event else self._codecs.get(item.payload_type)
            if codec is None:
                self.undecodable_packets += 1
                continue
            start = self._to_samples(item.offset_samples)
            if codec is run_codec and start == run_next:
                run.append(item.payload)
            else:
                if run_codec is not None:
                    self._lay_out(run_start, run_codec.decode(b"".join(run)))
                run_codec, run_start, run = codec, start, [item.payload]
                run_next = start
            run_next += codec.samples_in(item.payload)
        if run_codec is not None:
            self._lay_out(run_start, run_codec.decode(b"".join(run)))

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
        out = self.take(total_samples)
        self.beyond_end_samples += sum(len(pcm) for _, pcm in self._segments)
        self._segments = []
        return out
