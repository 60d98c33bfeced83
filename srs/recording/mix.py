"""``mix.wav``: two mono stream files side by side in one stereo file.

The caller picks which stream goes left and which right and records that order in the
sidecar (``mix.channels``); for Twilio, left is ``inbound_track`` and right is
``outbound_track``.  The files are read and written in chunks, so a two-hour call never
sits in memory; the shorter stream is padded with silence at its end.

Streams at different sample rates (say G.722 at 16 kHz against PCMU at 8 kHz) are not
mixed: the result is :class:`MixSkipped` with the reason, which goes into the sidecar's
``mix_skipped_reason``.  Resampling would put audio in the mix that no stream file holds,
and each stream's own file already has the full recording.

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
    if left_info.sample_rate_hz != right_info.sample_rate_hz:
        return MixSkipped(
            f"sample rates differ: {left.name} {left_info.sample_rate_hz} Hz, "
            f"{right.name} {right_info.sample_rate_hz} Hz"
        )
    # Only what the header vouches for and the file holds (they agree for closed files).
    left_frames = _frames(left_info)
    right_frames = _frames(right_info)
    part = out.with_name(out.name + PART_SUFFIX)
    try:
        with open(left, "rb") as left_file, open(right, "rb") as right_file:
            left_file.seek(HEADER_BYTES)
            right_file.seek(HEADER_BYTES)
            rate_hz = left_info.sample_rate_hz
            with WavWriter(part, rate_hz, channels=2, exclusive=False) as writer:
                remaining = max(left_frames, right_frames)
                left_todo, right_todo = left_frames, right_frames
                while remaining > 0:
                    frames = min(chunk_frames, remaining)
                    stereo = np.zeros((frames, 2), dtype=np.int16)
                    stereo[: min(frames, left_todo), 0] = _read(left_file, left_todo, frames)
                    stereo[: min(frames, right_todo), 1] = _read(right_file, right_todo, frames)
                    writer.append(stereo)
                    left_todo = max(0, left_todo - frames)
                    right_todo = max(0, right_todo - frames)
                    remaining -= frames
        os.replace(part, out)
    except OSError as exc:
        unlink_if_present(part)
        raise RecordingIOError("mix into", out, exc) from exc
    except RecordingIOError:
        unlink_if_present(part)
        raise
    fsync_directory(out.parent)
    return MixResult(out, left_info.sample_rate_hz, max(left_frames, right_frames))


def _frames(info: WavInfo) -> int:
    return min(info.header_data_bytes, info.file_data_bytes) // BYTES_PER_SAMPLE


def _read(source: BinaryIO, frames_left: int, frames: int) -> npt.NDArray[np.int16]:
    wanted = min(frames_left, frames) * BYTES_PER_SAMPLE
    data = source.read(wanted) if wanted else b""
    if len(data) != wanted:  # the file shrank under us: never mix half a stream silently
        raise OSError(errno.EIO, f"short read: {len(data)} of {wanted} bytes")
    return np.frombuffer(data, dtype="<i2")

