"""Real disk failures (ENOSPC, EFBIG, ENOTDIR) become RecordingIOError, nothing else.

Tests run as root, so permissions cannot make a write fail: /dev/full gives ENOSPC,
RLIMIT_FSIZE in a child process gives EFBIG, a path under a regular file gives ENOTDIR.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.errors import PeerError, SrsError, UsageError
from srs.recording.repair import RepairedWav, repair_wav
from srs.recording.sidecar import read_sidecar, write_sidecar
from srs.recording.wav import HEADER_BYTES, RecordingIOError, WavWriter, read_wav_info, write_all
from tests.recording.samples import ramp
from tests.recording.sidecars import recording_sidecar

REPO = Path(__file__).parents[2]


def test_recording_io_error_is_ours_but_not_a_peer_error() -> None:
    assert issubclass(RecordingIOError, SrsError)
    assert not issubclass(RecordingIOError, PeerError)


def test_dev_full_gives_enospc_when_the_header_is_written() -> None:
    with pytest.raises(RecordingIOError) as caught:
        WavWriter(Path("/dev/full"), 8000, exclusive=False)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.action == "write"
    assert str(caught.value) == "write /dev/full: [ENOSPC] No space left on device"


def test_write_all_to_dev_full_is_enospc() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(RecordingIOError) as caught:
            write_all(fd, b"x" * 10, Path("/dev/full"))
    finally:
        os.close(fd)
    assert caught.value.errno == errno.ENOSPC


def _writer_on_a_full_disk(path: Path) -> WavWriter:
    """A writer whose file descriptor now points at /dev/full: its next write fails."""
    writer = WavWriter(path, 8000, buffer_bytes=0)
    writer.append(ramp(100))
    writer.flush()
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, writer._fd)
    os.close(full)
    return writer


def test_enospc_on_append_fails_the_writer_only(tmp_path: Path) -> None:
    writer = _writer_on_a_full_disk(tmp_path / "a.wav")
    other = WavWriter(tmp_path / "b.wav", 8000)
    with pytest.raises(RecordingIOError) as caught:
        writer.append(ramp(10))
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(UsageError, match="failed earlier"):
        writer.append(ramp(10))
    with pytest.raises(UsageError, match="failed earlier"):
        writer.flush()
    writer.close()  # a failed writer still closes quietly
    assert writer.closed
    other.append(ramp(5))  # another session's file is unaffected
    other.close()
    np.testing.assert_array_equal(sf.read(tmp_path / "b.wav", dtype="int16")[0], ramp(5))
    # What was flushed before the failure is still a valid file.
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav", dtype="int16")[0], ramp(100))


def test_enospc_on_header_rewrite(tmp_path: Path) -> None:
    writer = _writer_on_a_full_disk(tmp_path / "a.wav")
    with pytest.raises(RecordingIOError) as caught:
        writer.flush()  # nothing pending: only the header pwrite runs
    assert (caught.value.errno, caught.value.action) == (errno.ENOSPC, "write header of")
    writer.close()


def test_enotdir_for_a_wav_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(RecordingIOError) as caught:
        WavWriter(tmp_path / "f" / "a.wav", 8000)
    assert (caught.value.errno, caught.value.action) == (errno.ENOTDIR, "create")


def test_enotdir_for_a_sidecar_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(RecordingIOError) as caught:
        write_sidecar(tmp_path / "f" / "session.json", recording_sidecar())
    assert caught.value.errno == errno.ENOTDIR


# Files may not grow past this in the child: the header and 500 samples.
LIMIT_BYTES = HEADER_BYTES + 500 * 2
EFBIG_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from dataclasses import replace
    from pathlib import Path
    from srs.recording.mix import mix_stereo
    from srs.recording.sidecar import write_sidecar
    from srs.recording.wav import RecordingIOError, WavWriter
    from tests.recording.samples import ramp
    from tests.recording.sidecars import recording_sidecar

    root = Path(sys.argv[1])
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    found = {}
    writer = WavWriter(root / "a.wav", 8000, buffer_bytes=0)
    writer.append(ramp(400))
    writer.flush()
    try:
        writer.append(ramp(600, start=400))
    except RecordingIOError as exc:
        found["append"] = exc.errno
    writer.close()
    write_sidecar(root / "session.json", recording_sidecar())
    try:
        write_sidecar(root / "session.json", replace(recording_sidecar(), user_agent="U" * 1000))
    except RecordingIOError as exc:
        found["sidecar"] = exc.errno
    try:
        mix_stereo(root / "left.wav", root / "right.wav", root / "mix.wav")
    except RecordingIOError as exc:
        found["mix"] = exc.errno
    print(json.dumps(found))
    """
)


def test_efbig_under_rlimit_fsize(tmp_path: Path) -> None:
    for name in ("left.wav", "right.wav"):
        with WavWriter(tmp_path / name, 8000) as writer:
            writer.append(ramp(400))
    result = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(tmp_path), str(LIMIT_BYTES)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "append": errno.EFBIG,
        "sidecar": errno.EFBIG,
        "mix": errno.EFBIG,
    }
    # The WAV: the header still says 400 samples; the kernel took 100 more before EFBIG.
    wav = tmp_path / "a.wav"
    assert wav.stat().st_size == LIMIT_BYTES
    assert read_wav_info(wav).header_data_bytes == 800
    np.testing.assert_array_equal(sf.read(wav, dtype="int16")[0], ramp(400))
    assert repair_wav(wav) == RepairedWav("a.wav", 8000, 500, 400, 0)
    np.testing.assert_array_equal(sf.read(wav, dtype="int16")[0], ramp(500))
    # The sidecar: the last complete version stays, no temporary file is left.
    assert read_sidecar(tmp_path / "session.json") == recording_sidecar()
    # The mix: no mix.wav and no mix.wav.part.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.wav",
        "left.wav",
        "right.wav",
        "session.json",
    ]
