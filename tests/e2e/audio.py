"""Independent checks of recorded audio: what tone a track holds, where, and file layout."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# A 0.5 full-scale sine (the test tones) has an RMS near 11,600 after G.711; silence is 0.
LOUD_RMS = 3000.0
SPAN_CHUNK = 80


def dominant_frequency(samples: npt.NDArray[np.generic], rate_hz: int) -> float:
    """The frequency of the largest FFT bin (Hann window, DC removed)."""
    x = samples.astype(np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / rate_hz)[int(np.argmax(spectrum))])


def band_energy_ratio(
    samples: npt.NDArray[np.generic], rate_hz: int, freq_hz: float, other_hz: float
) -> float:
    """Spectral magnitude near ``freq_hz`` divided by that near ``other_hz`` (±20 Hz)."""
    x = samples.astype(np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / rate_hz)

    def near(f: float) -> float:
        return float(spectrum[np.abs(freqs - f) <= 20].sum())

    return near(freq_hz) / max(near(other_hz), 1e-9)


@dataclass(frozen=True)
class LoudSpan:
    first: int  # index of the first sample louder than LOUD_RMS's peak threshold
    last: int  # index of the last one
    gaps: int  # quiet chunks of SPAN_CHUNK samples between first and last

    @property
    def samples(self) -> int:
        return self.last - self.first + 1


def loud_span(samples: npt.NDArray[np.int16]) -> LoudSpan | None:
    """Where the tone is in a track, and whether it has holes (quiet chunks) inside."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > LOUD_RMS)
    if loud.size == 0:
        return None
    first, last = int(loud[0]), int(loud[-1])
    inner = samples[first : last + 1].astype(np.float64)
    whole = len(inner) // SPAN_CHUNK * SPAN_CHUNK
    rms = np.sqrt((inner[:whole].reshape(-1, SPAN_CHUNK) ** 2).mean(axis=1))
    return LoudSpan(first, last, int((rms < LOUD_RMS).sum()))


@dataclass(frozen=True)
class RiffLayout:
    file_bytes: int
    riff_size: int
    channels: int
    rate_hz: int
    bits: int
    data_offset: int
    data_size: int

    @property
    def frames(self) -> int:
        return self.data_size // (self.channels * self.bits // 8)


def riff_layout(path: Path) -> RiffLayout:
    """Walk a WAV file's RIFF chunks (our own reading, independent of srs and soundfile)."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file: {data[:12]!r}")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", data, offset + 8)
        if chunk_id == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data chunk before fmt")
            _tag, channels, rate, _byte_rate, _align, bits = fmt
            return RiffLayout(len(data), riff_size, channels, rate, bits, offset + 8, size)
        offset += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")
