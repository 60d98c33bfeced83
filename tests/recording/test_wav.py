"""The streaming WAV writer, checked by reading back with soundfile (libsndfile)."""

from __future__ import annotations

import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.errors import UsageError
from srs.recording.wav import (
    HEADER_BYTES,
    SILENCE_CHUNK_FRAMES,
    RecordingFormatError,
    RecordingIOError,
    WavInfo,
    WavWriter,
    header_bytes,
    read_wav_info,
)
from tests.recording.samples import ramp


def read_int16(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16", always_2d=False)
    return data, rate


def test_samples_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 8000) as writer:
        writer.append(ramp(8000))
        writer.append(ramp(3, start=8000))
    data, rate = read_int16(path)
    assert rate == 8000
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, ramp(8003))
    assert path.stat().st_size == HEADER_BYTES + 8003 * 2
    info = sf.info(path)
    assert (info.channels, info.subtype, info.format) == (1, "PCM_16", "WAV")


def test_stdlib_wave_reads_it_too(tmp_path: Path) -> None:
    # The JUNK chunk reserved for RF64 must not confuse a reader that skips unknown chunks.
    path = tmp_path / "a.wav"
    with WavWriter(path, 16000) as writer:
        writer.append(ramp(100))
    with wave.open(str(path)) as reader:
        shape = (reader.getframerate(), reader.getnchannels(), reader.getsampwidth())
        assert shape == (16000, 1, 2)
        assert reader.readframes(100) == ramp(100).astype("<i2").tobytes()


def test_silence_fills_gap_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "gap.wav"
    gap = 2 * SILENCE_CHUNK_FRAMES + 5
    with WavWriter(path, 8000, buffer_bytes=0) as writer:
        writer.append(ramp(10))
        writer.append_silence(gap)
        writer.append_silence(0)
        writer.append(ramp(10, start=10))
        assert writer.frames_written == 20 + gap
        assert writer.duration_s == (20 + gap) / 8000
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data[:10], ramp(10))
    assert not data[10 : 10 + gap].any()
    np.testing.assert_array_equal(data[10 + gap :], ramp(10, start=10))


def test_file_is_valid_at_every_flush_without_close(tmp_path: Path) -> None:
    """A simulated crash: flush, never close, copy the file; the copy plays to the flush."""
    path = tmp_path / "live.wav"
    writer = WavWriter(path, 8000)
    for second in range(3):
        writer.append(ramp(8000, start=8000 * second))
        writer.flush()
        copy = tmp_path / f"copy-{second}.wav"
        shutil.copyfile(path, copy)
        data, _ = read_int16(copy)
        np.testing.assert_array_equal(data, ramp(8000 * (second + 1)))
    # Appended but not flushed: still in our buffer, not in the file.
    writer.append(ramp(100, start=24000))
    shutil.copyfile(path, tmp_path / "unflushed.wav")
    data, _ = read_int16(tmp_path / "unflushed.wav")
    assert len(data) == 24000
    writer.close()
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data, ramp(24100))


def test_large_append_goes_straight_to_the_kernel(tmp_path: Path) -> None:
    # Over the buffer size the data is written at once; only the header waits for flush.
    path = tmp_path / "big.wav"
    writer = WavWriter(path, 8000, buffer_bytes=1000)
    writer.append(ramp(600))
    assert path.stat().st_size == HEADER_BYTES + 1200
    assert read_wav_info(path).header_data_bytes == 0
    writer.flush()
    assert read_wav_info(path) == WavInfo(8000, 1, 1200, 1200)
    writer.close()


def test_stereo_frames_interleave(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    frames = np.column_stack([ramp(50), ramp(50, start=1000)])
    with WavWriter(path, 8000, channels=2) as writer:
        writer.append(frames)
        writer.append_silence(3)
    data, _ = sf.read(path, dtype="int16")
    assert data.shape == (53, 2)
    np.testing.assert_array_equal(data[:50], frames)
    assert not data[50:].any()


def test_big_endian_input_is_stored_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "be.wav"
    with WavWriter(path, 8000) as writer:
        writer.append(ramp(20).astype(">i2"))
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data, ramp(20))


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"keep")
    with pytest.raises(RecordingIOError) as caught:
        WavWriter(path, 8000)
    assert caught.value.errno == 17  # EEXIST
    assert path.read_bytes() == b"keep"


def test_close_is_idempotent_and_ends_use(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "a.wav", 8000)
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(UsageError, match="closed"):
        writer.append(ramp(1))
    with pytest.raises(UsageError, match="closed"):
        writer.flush()


@pytest.mark.parametrize(
    ("samples", "channels", "message"),
    [
        (np.zeros(4, dtype=np.float32), 1, "int16"),
        (np.zeros(4, dtype=np.int32), 1, "int16"),
        (np.zeros((4, 2), dtype=np.int16), 1, "shape"),
        (np.zeros(4, dtype=np.int16), 2, "shape"),
        (np.zeros((4, 3), dtype=np.int16), 2, "shape"),
    ],
)
def test_wrong_samples_are_a_usage_error(
    tmp_path: Path, samples: np.ndarray, channels: int, message: str
) -> None:
    with (WavWriter(tmp_path / "a.wav", 8000, channels=channels) as writer,
          pytest.raises(UsageError, match=message)):
        writer.append(samples)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate_hz": 0}, "sample_rate_hz"),
        ({"sample_rate_hz": 8000, "channels": 3}, "channels"),
        ({"sample_rate_hz": 8000, "buffer_bytes": -1}, "buffer_bytes"),
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        WavWriter(tmp_path / "a.wav", **kwargs)
    assert not (tmp_path / "a.wav").exists()


def test_negative_silence_is_a_usage_error(tmp_path: Path) -> None:
    with (WavWriter(tmp_path / "a.wav", 8000) as writer,
          pytest.raises(UsageError, match="negative")):
        writer.append_silence(-1)


def test_header_switches_to_rf64_past_4_gib() -> None:
    below = 0xFFFF_FFFF - 72
    assert header_bytes(8000, 1, below)[:8] == b"RIFF" + struct.pack("<I", 0xFFFF_FFFF)
    above = below + 2
    head = header_bytes(8000, 1, above)
    assert len(head) == HEADER_BYTES
    assert head[:16] == b"RF64\xff\xff\xff\xffWAVEds64"
    riff_size, data_size, frames, table = struct.unpack_from("<QQQI", head, 20)
    assert (riff_size, data_size, frames, table) == (above + 72, above, above // 2, 0)
    assert head[72:80] == b"data\xff\xff\xff\xff"


def test_rf64_file_reads_back_with_libsndfile(tmp_path: Path) -> None:
    """A sparse 5 GiB file with the RF64 header: libsndfile finds the last samples."""
    path = tmp_path / "long.wav"
    data_bytes = 5 * 2**30
    tail = ramp(4)
    with open(path, "wb") as f:
        f.write(header_bytes(8000, 1, data_bytes))
        f.truncate(HEADER_BYTES + data_bytes)
        f.seek(HEADER_BYTES + data_bytes - tail.nbytes)
        f.write(tail.astype("<i2").tobytes())
    info = sf.info(path)
    assert (info.format, info.frames) == ("RF64", data_bytes // 2)
    with sf.SoundFile(path) as reader:
        reader.seek(info.frames - 4)
        np.testing.assert_array_equal(reader.read(dtype="int16"), tail)
    assert read_wav_info(path) == WavInfo(8000, 1, data_bytes, data_bytes)


def test_read_wav_info_counts_bytes_beyond_the_header(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    writer = WavWriter(path, 8000)
    writer.append(ramp(10))
    writer.flush()
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")
    info = read_wav_info(path)
    assert (info.header_data_bytes, info.file_data_bytes, info.present_frames) == (20, 23, 11)
    writer.close()


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ((0, b"RIFX"), "not an srs WAV header"),
        ((12, b"LIST"), "not an srs WAV header"),
        ((56, struct.pack("<H", 3)), "not 16-bit PCM"),
        ((58, struct.pack("<H", 6)), "not supported"),
        ((68, struct.pack("<H", 4)), "inconsistent"),
    ],
)
def test_read_wav_info_rejects_foreign_headers(
    tmp_path: Path, patch: tuple[int, bytes], problem: str
) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 8000) as writer:
        writer.append(ramp(4))
    offset, data = patch
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))
    with pytest.raises(RecordingFormatError, match=problem):
        read_wav_info(path)


def test_read_wav_info_rejects_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    path.write_bytes(header_bytes(8000, 1, 0)[:40])
    with pytest.raises(RecordingFormatError, match="truncated at 40 bytes"):
        read_wav_info(path)


def test_read_wav_info_of_a_missing_file_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingIOError) as caught:
        read_wav_info(tmp_path / "nope.wav")
    assert caught.value.errno == 2  # ENOENT
