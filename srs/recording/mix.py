"""``mix.wav``: two mono stream files side by side in one stereo file.

The caller picks which stream goes left and which right and records that order in the
sidecar (``mix.channels``); for Twilio, left is ``inbound_track`` and right is
``outbound_track``.  The files are read and written in chunks, so a two-hour call never
sits in memory; the shorter stream is padded with silence at its end.

Streams at different sample rates (say G.722 at 16 kHz against PCMU at 8 kHz) are mixed
at the higher rate: the other stream is resampled as it is read (FFmpeg's libswresample,
:class:`~srs.codecs.resample.Resampler`), so both channels keep their timing.  A stream
file that is not mono gives :class:`MixSkipped` with the reason, which goes into the
sidecar's ``mix_skipped_reason``.

The mix is written to ``mix.wav.part`` and renamed when complete, so ``mix.wav`` is either
whole or absent (a crash mid-mix leaves a ``.part`` that repair removes and redoes).

No asyncio, no logging: the asyncio shell calls these in a worker thread and logs.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from srs.codecs.resample import Resampler
from srs.errors import UsageError
from srs.recording.wav import (
    BYTES_PER_SAMPLE,
    HEADER_BYTES,
    RecordingIOError,
    WavInfo,
    WavWriter,
    fsync_directory,
    read_wav_info,
    unlink_if_present,
)

__all__ = ["MIX_CHUNK_FRAMES", "PART_SUFFIX", "MixResult", "MixSkipped", "mix_stereo"]

# 64 Ki frames: 128 KiB per source read, 256 KiB of stereo per write.
MIX_CHUNK_FRAMES: Final = 64 * 1024
PART_SUFFIX: Final = ".part"


@dataclass(frozen=True, slots=True)
class MixResult:
    """A written mix: ``frames`` stereo frames (the longer stream's length)."""

    path: Path
    sample_rate_hz: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class MixSkipped:
    """No mix was written; ``reason`` says why, for the sidecar."""

    reason: str


def mix_stereo(
    left: Path, right: Path, out: Path, *, chunk_frames: int = MIX_CHUNK_FRAMES
) -> MixResult | MixSkipped:
    """Write ``out`` with ``left`` on channel 1 and ``right`` on channel 2.

    Both inputs must be mono files written by :class:`~srs.recording.wav.WavWriter`.
    Raises :class:`~srs.recording.wav.RecordingFormatError` for an input that is not, and
    :class:`RecordingIOError` for a disk failure (``out`` is then absent).
    """
    if chunk_frames < 1:
        raise UsageError("chunk_frames must be positive")
    left_info, right_info = read_wav_info(left), read_wav_info(right)
    for path, info in ((left, left_info), (right, right_info)):
        if info.channels != 1:
            return MixSkipped(f"{path.name} has {info.channels} channels, not 1")
    rate_hz = max(left_info.sample_rate_hz, right_info.sample_rate_hz)
    part = out.with_name(out.name + PART_SUFFIX)
    try:
        with open(left, "rb") as left_file, open(right, "rb") as right_file:
            sides = (_Side(left_file, left_info, rate_hz), _Side(right_file, right_info, rate_hz))
            total = max(side.frames for side in sides)
            with WavWriter(part, rate_hz, channels=2, exclusive=False) as writer:
                remaining = total
                while remaining > 0:
                    frames = min(chunk_frames, remaining)
                    stereo = np.zeros((frames, 2), dtype=np.int16)
                    for channel, side in enumerate(sides):
                        pcm = side.read(frames)
                        stereo[: len(pcm), channel] = pcm
                    writer.append(stereo)
                    remaining -= frames
        os.replace(part, out)
    except OSError as exc:
        unlink_if_present(part)
        raise RecordingIOError("mix into", out, exc) from exc
    except RecordingIOError:
        unlink_if_present(part)
        raise
    fsync_directory(out.parent)
    return MixResult(out, rate_hz, total)


class _Side:
    """One mono input, read in order at the mix's rate (resampled when its own is lower)."""

    def __init__(self, source: BinaryIO, info: WavInfo, rate_hz: int) -> None:
        source.seek(HEADER_BYTES)
        self._source = source
        # Only what the header vouches for and the file holds (they agree for closed files).
        self._todo = _frames(info)
        self._rate_hz = info.sample_rate_hz
        self.frames = self._todo * rate_hz // info.sample_rate_hz  # at the mix's rate
        self._resampler = (Resampler(info.sample_rate_hz, rate_hz)
                           if info.sample_rate_hz != rate_hz else None)
        self._ready = np.zeros(0, dtype=np.int16)  # resampled, not handed out yet
        self._given = 0

    def read(self, frames: int) -> npt.NDArray[np.int16]:
        """The next ``frames`` at the mix's rate, fewer at the end."""
        frames = min(frames, self.frames - self._given)
        resampler = self._resampler
        if resampler is None:
            pcm = _read(self._source, self._todo, frames)
            self._todo -= len(pcm)
        else:
            while len(self._ready) < frames:
                wanted = min(self._todo, max(1, frames * self._rate_hz // resampler.to_rate_hz))
                if wanted:
                    chunk = _read(self._source, self._todo, wanted)
                    self._todo -= len(chunk)
                    out, _ = resampler.push(chunk)
                else:
                    out = resampler.flush()
                self._ready = np.concatenate((self._ready, out))
                if not wanted:
                    break
            pcm, self._ready = self._ready[:frames], self._ready[frames:]
        self._given += len(pcm)
        return pcm


def _frames(info: WavInfo) -> int:
    return min(info.header_data_bytes, info.file_data_bytes) // BYTES_PER_SAMPLE


def _read(source: BinaryIO, frames_left: int, frames: int) -> npt.NDArray[np.int16]:
    wanted = min(frames_left, frames) * BYTES_PER_SAMPLE
    data = source.read(wanted) if wanted else b""
    if len(data) != wanted:  # the file shrank under us: never mix half a stream silently
        raise OSError(errno.EIO, f"short read: {len(data)} of {wanted} bytes")
    return np.frombuffer(data, dtype="<i2")

