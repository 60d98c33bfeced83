"""Sample-rate conversion with FFmpeg's libswresample (through PyAV), for streams.

A track whose payloads decode at another rate than its file (a sender that switched from
G.722 to PCMU, Opus written at a configured rate, ``recordings.sample_rate``) and the mix
of two tracks at different rates both resample through :class:`Resampler`: one per
stream, fed in order, so the filter's state carries across chunks.

The filter delays its output by a few samples (32 at 8 to 16 kHz); :meth:`Resampler.push`
says how far, so a caller that places chunks on a timeline places each one where its audio
belongs and consecutive chunks stay contiguous.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Resampler"]

Pcm = npt.NDArray[np.int16]


class Resampler:
    """int16 mono from ``from_rate_hz`` to ``to_rate_hz``, one stream's state."""

    __slots__ = ("from_rate_hz", "to_rate_hz", "_av", "_resampler", "_in", "_out")

    def __init__(self, from_rate_hz: int, to_rate_hz: int) -> None:
        import av  # FFmpeg is loaded where it is used

        self._av: Any = av
        self.from_rate_hz = from_rate_hz
        self.to_rate_hz = to_rate_hz
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate_hz)
        self._in = 0  # input samples pushed
        self._out = 0  # output samples produced

    def push(self, pcm: Pcm) -> tuple[Pcm, int]:
        """Resample the next chunk.  Returns the output and how many output samples the
        end of the input is ahead of the end of that output (the audio still buffered):
        the output ends that far before where the input ends, on the output's clock."""
        if len(pcm):
            frame = self._av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1),
                format="s16", layout="mono")
            frame.sample_rate = self.from_rate_hz
            pieces = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
            out: Pcm = (np.concatenate(pieces).astype(np.int16, copy=False) if pieces
                        else np.zeros(0, dtype=np.int16))
        else:
            out = np.zeros(0, dtype=np.int16)
        self._in += len(pcm)
        self._out += len(out)
        expected = self._in * self.to_rate_hz // self.from_rate_hz
        return out, max(0, expected - self._out)

    def flush(self) -> Pcm:
        """The audio still buffered, at the end of the stream (no more input after it)."""
        pieces = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        out: Pcm = (np.concatenate(pieces).astype(np.int16, copy=False) if pieces
                    else np.zeros(0, dtype=np.int16))
        self._out += len(out)
        return out
