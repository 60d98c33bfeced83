"""The stereo mix, checked sample by sample with soundfile."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.errors import UsageError
from srs.recording.mix import MixResult, MixSkipped, _read, mix_stereo
from srs.recording.wav import RecordingFormatError, RecordingIOError, WavWriter
from tests.recording.samples import ramp


def mono(path: Path, samples: np.ndarray, rate_hz: int = 8000) -> Path:
    with WavWriter(path, rate_hz) as writer:
        writer.append(samples)
    return path


def test_mix_puts_left_and_right_in_order_and_pads_the_shorter(tmp_path: Path) -> None:
    left = mono(tmp_path / "inbound.wav", ramp(1000))
    right = mono(tmp_path / "outbound.wav", ramp(2500, start=7))
    out = tmp_path / "mix.wav"
    result = mix_stereo(left, right, out, chunk_frames=300)  # many chunks, uneven ends
    assert result == MixResult(out, 8000, 2500)
    assert result.duration_s == 2500 / 8000
    data, rate = sf.read(out, dtype="int16")
    assert (rate, data.shape) == (8000, (2500, 2))
    np.testing.assert_array_equal(data[:1000, 0], ramp(1000))
    assert not data[1000:, 0].any()
    np.testing.assert_array_equal(data[:, 1], ramp(2500, start=7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbound.wav", "mix.wav", "outbound.wav"]


def test_swapped_order_swaps_channels(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(10))
    b = mono(tmp_path / "b.wav", ramp(10, start=50))
    mix_stereo(b, a, tmp_path / "mix.wav")
    data, _ = sf.read(tmp_path / "mix.wav", dtype="int16")
    np.testing.assert_array_equal(data[:, 0], ramp(10, start=50))
    np.testing.assert_array_equal(data[:, 1], ramp(10))


def test_two_empty_streams_give_an_empty_valid_mix(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(0))
    b = mono(tmp_path / "b.wav", ramp(0))
    assert mix_stereo(a, b, tmp_path / "mix.wav") == MixResult(tmp_path / "mix.wav", 8000, 0)
    info = sf.info(tmp_path / "mix.wav")
    assert (info.frames, info.channels) == (0, 2)


def test_existing_mix_is_replaced(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(4))
    out = tmp_path / "mix.wav"
    out.write_bytes(b"stale")
    mix_stereo(a, a, out)
    data, _ = sf.read(out, dtype="int16")
    np.testing.assert_array_equal(data, np.column_stack([ramp(4), ramp(4)]))


def _sine(freq_hz: float, seconds: float, rate_hz: int) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return np.round(8000 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


@pytest.mark.parametrize("chunk_frames", [64 * 1024, 1000, 7])
def test_different_rates_mix_at_the_higher_rate_and_stay_aligned(
    tmp_path: Path, chunk_frames: int
) -> None:
    """8 kHz against 16 kHz: the 8 kHz side is resampled; its tone keeps its frequency and
    its onset stays where it was (within 1 ms), whatever the chunking."""
    from tests.e2e.audio import dominant_frequency

    narrow = np.concatenate((np.zeros(4000, np.int16), _sine(440.0, 1.5, 8000)))
    wide = np.concatenate((np.zeros(8000, np.int16), _sine(5000.0, 1.0, 16000)))
    a = mono(tmp_path / "a.wav", narrow, 8000)
    b = mono(tmp_path / "b.wav", wide, 16000)
    result = mix_stereo(a, b, tmp_path / "mix.wav", chunk_frames=chunk_frames)
    assert isinstance(result, MixResult) and result.sample_rate_hz == 16000
    data, rate = sf.read(tmp_path / "mix.wav", dtype="int16")
    assert rate == 16000 and data.shape == (2 * len(narrow), 2) == (result.frames, 2)
    left, right = data[:, 0], data[:, 1]
    np.testing.assert_array_equal(right[: len(wide)], wide)
    onset = int(np.flatnonzero(np.abs(left) > 1000)[0])
    assert abs(onset - 8000) <= 16
    assert dominant_frequency(left[10000:-1000], 16000) == pytest.approx(440.0, abs=2)


def test_a_stereo_input_is_skipped_with_a_reason(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(10))
    with WavWriter(tmp_path / "st.wav", 8000, channels=2) as writer:
        writer.append_silence(10)
    result = mix_stereo(a, tmp_path / "st.wav", tmp_path / "mix.wav")
    assert result == MixSkipped("st.wav has 2 channels, not 1")


def test_a_foreign_input_raises_a_format_error(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(10))
    foreign = tmp_path / "f.wav"
    sf.write(foreign, ramp(100), 8000, subtype="PCM_16")  # libsndfile's 44-byte header
    with pytest.raises(RecordingFormatError, match="not an srs WAV header"):
        mix_stereo(a, foreign, tmp_path / "mix.wav")


def test_only_samples_present_are_mixed(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(100))
    b = mono(tmp_path / "b.wav", ramp(100))
    # The header of b says 100 frames but only 20 are there: b counts as 20 frames long.
    with open(b, "r+b") as f:
        f.truncate(80 + 40)
    out = tmp_path / "mix.wav"
    result = mix_stereo(a, b, out)
    assert result == MixResult(out, 8000, 100)
    data, _ = sf.read(out, dtype="int16")
    np.testing.assert_array_equal(data[:20, 1], ramp(20))
    assert not data[20:, 1].any()


def test_a_file_shrinking_during_the_mix_is_an_io_error() -> None:
    with pytest.raises(OSError, match="short read: 10 of 200 bytes") as caught:
        _read(io.BytesIO(bytes(10)), frames_left=100, frames=300)
    assert caught.value.errno == errno.EIO


def test_missing_input_is_an_io_error(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(10))
    with pytest.raises(RecordingIOError) as caught:
        mix_stereo(a, tmp_path / "gone.wav", tmp_path / "mix.wav")
    assert caught.value.errno == 2


def test_unwritable_output_leaves_no_part_file(tmp_path: Path) -> None:
    a = mono(tmp_path / "a.wav", ramp(10))
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(RecordingIOError) as caught:
        mix_stereo(a, a, blocker / "mix.wav")
    assert caught.value.errno == 20  # ENOTDIR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "file"]


def test_chunk_frames_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="chunk_frames"):
        mix_stereo(tmp_path / "a", tmp_path / "b", tmp_path / "c", chunk_frames=0)
