"""Streaming 16-bit PCM WAV files that are playable at every flush.

Why our own RIFF code and not soundfile (libsndfile) for writing:

* "Nothing lost" needs the header to match the data after every flush, without closing
  the file and without an fsync per flush.  libsndfile only rewrites the header on close,
  or on ``sf_write_sync`` which also fsyncs (~0.9 ms each: docs/architecture.md, "Hot
  path").  Here a flush is one ``write`` of the buffered samples and one 80-byte
  ``pwrite`` of the header.
* Repair after a crash (``repair.py``) must rewrite the header of a file that was never
  closed.  That is only safe when we know the exact byte layout, which we do because we
  wrote it: a fixed 80-byte header, then the samples.
* soundfile stays the independent reader in the tests.

Layout of every file (little-endian, EBU Tech 3306 "RF64" compatible)::

    0  "RIFF"  u32 riff_size  "WAVE"
    12 "JUNK"  u32 28  28 zero bytes        (becomes "ds64" when the file passes 4 GiB)
    48 "fmt "  u32 16  PCM, channels, rate, byte rate, block align, 16 bits
    72 "data"  u32 data_size
    80 samples...

Files over 4 GiB: a RIFF size field is 32 bits, so a plain WAV ends at 4 GiB (74 hours of
8 kHz mono, 12 hours of 48 kHz mono).  Rather than cap a long recording (trading floors
keep lines open for days), the writer reserves the 28-byte ``JUNK`` chunk that EBU Tech
3306 asks for, and the header rewrite that passes 4 GiB turns ``RIFF``/``JUNK`` into
``RF64``/``ds64`` with 64-bit sizes and sets both 32-bit sizes to 0xFFFFFFFF.  libsndfile,
ffmpeg and sox read RF64; a file under 4 GiB is an ordinary WAV that every reader opens
(readers that skip unknown chunks ignore ``JUNK``).

No asyncio, no logging: the asyncio shell calls these in a worker thread and logs.
"""

from __future__ import annotations

import errno as errno_module
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from srs.errors import SrsError, UsageError
from srs.recording.files import create_file

__all__ = [
    "HEADER_BYTES",
    "BYTES_PER_SAMPLE",
    "RecordingIOError",
    "RecordingFormatError",
    "WavInfo",
    "WavWriter",
    "header_bytes",
    "read_wav_info",
    "write_all",
    "fsync_directory",
    "unlink_if_present",
]

HEADER_BYTES: Final = 80
BYTES_PER_SAMPLE: Final = 2  # 16-bit PCM only
_DS64_BYTES: Final = 28
_U32_MAX: Final = 0xFFFF_FFFF
# riff_size counts everything after its own field: "WAVE" + JUNK/ds64 + fmt + data header.
_RIFF_OVERHEAD_BYTES: Final = HEADER_BYTES - 8
_WAVE_FORMAT_PCM: Final = 1
_SUPPORTED_CHANNELS: Final = (1, 2)
_MAX_SAMPLE_RATE_HZ: Final = 384_000
# Appends are coalesced up to this many bytes before they reach the kernel (about 4 s of
# 8 kHz mono); flush() writes whatever is pending.
DEFAULT_BUFFER_BYTES: Final = 64 * 1024
# Silence is written in pieces of this many frames, so an hour-long gap costs no memory.
SILENCE_CHUNK_FRAMES: Final = 32 * 1024


class RecordingIOError(SrsError):
    """Writing or reading a recording on disk failed (ENOSPC, EFBIG, ENOTDIR, EIO ...).

    Not a peer error: it never becomes a SIP response by itself.  The session layer marks
    the one session it happened in ``failed`` and carries on with the others.
    """

    def __init__(self, action: str, path: Path, cause: OSError) -> None:
        code = cause.errno if cause.errno is not None else 0
        name = errno_module.errorcode.get(code, "E?")
        super().__init__(f"{action} {path}: [{name}] {os.strerror(code) if code else cause}")
        self.action = action
        self.path = path
        self.errno = code


class RecordingFormatError(SrsError):
    """A file on disk is not in the format srs writes (a foreign or damaged WAV header)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What the header of one of our WAV files says, next to what the file holds."""

    sample_rate_hz: int
    channels: int
    header_data_bytes: int  # the data size the header declares
    file_data_bytes: int  # bytes actually present after the header

    @property
    def block_align_bytes(self) -> int:
        return self.channels * BYTES_PER_SAMPLE

    @property
    def present_frames(self) -> int:
        """Whole frames present in the file, whatever the header says."""
        return self.file_data_bytes // self.block_align_bytes


def header_bytes(sample_rate_hz: int, channels: int, data_bytes: int) -> bytes:
    """The 80-byte header for ``data_bytes`` of samples: WAV below 4 GiB, RF64 above."""
    block_align = channels * BYTES_PER_SAMPLE
    riff_size = _RIFF_OVERHEAD_BYTES + data_bytes
    fmt = struct.pack(
        "<4sIHHIIHH",
        b"fmt ",
        16,
        _WAVE_FORMAT_PCM,
        channels,
        sample_rate_hz,
        sample_rate_hz * block_align,
        block_align,
        8 * BYTES_PER_SAMPLE,
    )
    if riff_size <= _U32_MAX:
        head = struct.pack("<4sI4s4sI", b"RIFF", riff_size, b"WAVE", b"JUNK", _DS64_BYTES)
        return head + bytes(_DS64_BYTES) + fmt + struct.pack("<4sI", b"data", data_bytes)
    # EBU Tech 3306 §3: the 64-bit sizes live in ds64; the 32-bit ones are set to -1.
    head = struct.pack("<4sI4s4sI", b"RF64", _U32_MAX, b"WAVE", b"ds64", _DS64_BYTES)
    ds64 = struct.pack("<QQQI", riff_size, data_bytes, data_bytes // block_align, 0)
    return head + ds64 + fmt + struct.pack("<4sI", b"data", _U32_MAX)


def read_wav_info(path: Path) -> WavInfo:
    """Read and check the header of a file written by :class:`WavWriter`.

    Raises :class:`RecordingFormatError` when the file is too short or not our layout, and
    :class:`RecordingIOError` when it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            file_bytes = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise RecordingIOError("read", path, exc) from exc
    if len(head) < HEADER_BYTES:
        raise RecordingFormatError(path, f"header truncated at {len(head)} bytes")
    # The RIFF size is implied by the data size and is not trusted: repair rewrites it.
    riff, _riff_size, wave, slot, slot_size = struct.unpack_from("<4sI4s4sI", head, 0)
    fmt_id, fmt_size, fmt_tag, channels, rate, byte_rate, align, bits = struct.unpack_from(
        "<4sIHHIIHH", head, 48
    )
    data_id, data_size = struct.unpack_from("<4sI", head, 72)
    layout = (riff, wave, slot, slot_size, fmt_id, fmt_size, data_id)
    if layout not in (
        (b"RIFF", b"WAVE", b"JUNK", _DS64_BYTES, b"fmt ", 16, b"data"),
        (b"RF64", b"WAVE", b"ds64", _DS64_BYTES, b"fmt ", 16, b"data"),
    ):
        raise RecordingFormatError(path, "not an srs WAV header")
    if (fmt_tag, bits) != (_WAVE_FORMAT_PCM, 8 * BYTES_PER_SAMPLE):
        raise RecordingFormatError(path, f"format {fmt_tag} with {bits} bits is not 16-bit PCM")
    if channels not in _SUPPORTED_CHANNELS or not 0 < rate <= _MAX_SAMPLE_RATE_HZ:
        raise RecordingFormatError(path, f"{channels} channels at {rate} Hz is not supported")
    if align != channels * BYTES_PER_SAMPLE or byte_rate != rate * align:
        raise RecordingFormatError(path, "block align or byte rate inconsistent")
    if riff == b"RF64":
        (data_size,) = struct.unpack_from("<Q", head, 28)
    return WavInfo(
        sample_rate_hz=rate,
        channels=channels,
        header_data_bytes=data_size,
        file_data_bytes=file_bytes - HEADER_BYTES,
    )


def write_all(fd: int, data: bytes | memoryview, path: Path) -> None:
    """Write every byte of ``data`` at the file position, retrying short writes.

    A short write happens right before ENOSPC or EFBIG; the retry then raises it.
    """
    view = memoryview(data).cast("B")
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise RecordingIOError("write", path, exc) from exc


def unlink_if_present(path: Path) -> None:
    """Remove a temporary file after a failure; one that cannot exist is fine."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        return


def fsync_directory(directory: Path) -> None:
    """Make a new or renamed directory entry durable (the file's own fsync does not)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise RecordingIOError("fsync directory", directory, exc) from exc


class WavWriter:
    """Appends 16-bit PCM frames to a new WAV file; the file is valid after every flush.

    The caller hands contiguous audio in order, pads gaps with :meth:`append_silence`, calls
    :meth:`flush` about once a second and :meth:`close` at the end (the only fsync).  Any
    disk failure raises :class:`RecordingIOError`; the writer is then unusable except for
    :meth:`close`, and what was flushed before stays a valid file.
    """

    def __init__(
        self,
        path: Path,
        sample_rate_hz: int,
        *,
        channels: int = 1,
        exclusive: bool = True,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        """Create ``path`` and write an empty header.

        ``exclusive`` (the default) refuses to open an existing file, so a recording is
        never overwritten; ``False`` is for the atomic temporary files of :mod:`mix` and
        for tests writing to ``/dev/full``.
        """
        if not 0 < sample_rate_hz <= _MAX_SAMPLE_RATE_HZ:
            raise UsageError(f"sample_rate_hz {sample_rate_hz} out of range")
        if channels not in _SUPPORTED_CHANNELS:
            raise UsageError(f"channels must be 1 or 2, not {channels}")
        if buffer_bytes < 0:
            raise UsageError("buffer_bytes must not be negative")
        self.path = path
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self._buffer_bytes = buffer_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._data_bytes = 0  # data handed to the kernel
        self._failed = False
        self._closed = False
        try:
            self._fd = create_file(path, exclusive=exclusive)
        except OSError as exc:
            raise RecordingIOError("create", path, exc) from exc
        try:
            write_all(self._fd, header_bytes(sample_rate_hz, channels, 0), path)
        except RecordingIOError:
            os.close(self._fd)
            self._closed = True
            raise

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def frames_written(self) -> int:
        """Frames accepted so far (flushed or still pending)."""
        return (self._data_bytes + self._pending_bytes) // (self.channels * BYTES_PER_SAMPLE)

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.sample_rate_hz

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, samples: npt.NDArray[np.int16]) -> None:
        """Append frames: shape ``(n,)`` for mono, ``(n, 2)`` for stereo, dtype int16."""
        if samples.dtype.kind != "i" or samples.dtype.itemsize != BYTES_PER_SAMPLE:
            raise UsageError(f"samples must be int16, not {samples.dtype}")
        expected_ndim = 1 if self.channels == 1 else 2
        if samples.ndim != expected_ndim or samples.shape[1:] not in ((), (2,)):
            raise UsageError(f"samples of shape {samples.shape} for {self.channels} channels")
        self._queue(np.ascontiguousarray(samples, dtype="<i2").tobytes())

    def append_silence(self, frame_count: int) -> None:
        """Append ``frame_count`` frames of digital silence, in bounded pieces."""
        if frame_count < 0:
            raise UsageError(f"frame_count {frame_count} is negative")
        block_align = self.channels * BYTES_PER_SAMPLE
        chunk = bytes(min(frame_count, SILENCE_CHUNK_FRAMES) * block_align)
        remaining = frame_count
        while remaining > 0:
            frames = min(remaining, SILENCE_CHUNK_FRAMES)
            self._queue(chunk[: frames * block_align])  # the whole chunk is not copied
            remaining -= frames

    def flush(self) -> None:
        """Write pending frames, then rewrite the header to match; no fsync."""
        self._check_usable()
        self._write_pending()
        header = header_bytes(self.sample_rate_hz, self.channels, self._data_bytes)
        try:
            os.pwrite(self._fd, header, 0)  # 80 bytes: one short pwrite cannot be split
        except OSError as exc:
            self._failed = True
            raise RecordingIOError("write header of", self.path, exc) from exc

    def close(self) -> None:
        """Flush, fsync and close.  Closing twice is allowed; after a failure, just close."""
        if self._closed:
            return
        try:
            if not self._failed:
                self.flush()
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise RecordingIOError("fsync", self.path, exc) from exc
        finally:
            self._closed = True
            self._pending.clear()
            os.close(self._fd)

    def _check_usable(self) -> None:
        if self._closed:
            raise UsageError(f"{self.path} is closed")
        if self._failed:
            raise UsageError(f"{self.path} failed earlier; only close() is allowed")

    def _queue(self, data: bytes) -> None:
        self._check_usable()
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self._buffer_bytes:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            write_all(self._fd, data, self.path)
        except RecordingIOError:
            self._failed = True
            raise
        self._data_bytes += len(data)
