"""Start-up repair: sessions killed mid-write come back playable with every sample."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from srs.errors import UsageError
from srs.recording.layout import SessionLayout, create_session_dir
from srs.recording.mix import MixResult, MixSkipped
from srs.recording.repair import (
    RepairedWav,
    RepairOutcome,
    repair_recordings,
    repair_session,
    repair_wav,
)
from srs.recording.sidecar import (
    EndReason,
    MixRecord,
    SessionSidecar,
    SessionStatus,
    format_time,
    load_session_schema,
    read_sidecar,
    write_sidecar,
)
from srs.recording.wav import HEADER_BYTES, RecordingFormatError, WavWriter, read_wav_info
from tests.recording.samples import ramp
from tests.recording.sidecars import STARTED_AT, recording_sidecar, stream

REPO = Path(__file__).parents[2]
VALIDATOR = jsonschema.Draft202012Validator(load_session_schema())

KILLED_SESSION = textwrap.dedent(
    """
    import sys, time
    from dataclasses import replace
    from pathlib import Path
    from srs.recording.layout import create_session_dir
    from srs.recording.sidecar import MixRecord, write_sidecar
    from srs.recording.wav import WavWriter
    from tests.recording.samples import ramp
    from tests.recording.sidecars import STARTED_AT, recording_sidecar, stream

    layout = create_session_dir(Path(sys.argv[1]), STARTED_AT, "CA123@0.0.0.0")
    streams = (
        stream("inbound_track", "inbound_track.wav"),
        stream("outbound_track", "outbound_track.wav"),
    )
    # The planned mix order is not stream order: repair must honour the plan.
    planned = MixRecord("mix.wav", ("outbound_track", "inbound_track"))
    write_sidecar(layout.sidecar, replace(recording_sidecar(streams=streams), mix=planned))
    inbound = WavWriter(layout.stream_wav("inbound_track"), 8000, buffer_bytes=16000)
    outbound = WavWriter(layout.stream_wav("outbound_track"), 8000, buffer_bytes=16000)
    for second in range(3):
        inbound.append(ramp(8000, start=8000 * second))
        outbound.append(ramp(6000, start=100 + 6000 * second))
        inbound.flush()
        outbound.flush()
    inbound.append(ramp(9000, start=24000))  # reaches the kernel; the header is not updated
    outbound.append(ramp(10, start=18100))  # stays in our buffer: dies with the process
    print(layout.directory, flush=True)
    time.sleep(60)
    """
)


def python_child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )


def newest_mtime(directory: Path) -> datetime:
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in directory.iterdir()), UTC)


def test_session_killed_with_sigkill_is_repaired_exactly(tmp_path: Path) -> None:
    child = python_child(KILLED_SESSION, str(tmp_path))
    assert child.stdout is not None
    directory = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stdout.close()
    inbound, outbound = directory / "inbound_track.wav", directory / "outbound_track.wav"
    # The state a crash leaves: the header lags the data by what came after the last flush.
    assert read_wav_info(inbound).header_data_bytes == 24000 * 2
    assert read_wav_info(inbound).file_data_bytes == 33000 * 2
    ended_at = newest_mtime(directory)

    report = repair_recordings(tmp_path)

    assert (report.sessions_seen, report.more_left) == (1, False)
    (outcome,) = report.outcomes
    assert outcome.directory == directory
    assert (outcome.repaired, outcome.problems, outcome.removed) == (True, (), ())
    assert outcome.streams == (
        RepairedWav("inbound_track.wav", 8000, 33000, 24000, 0),
        RepairedWav("outbound_track.wav", 8000, 18000, 18000, 0),
    )
    assert outcome.mix == MixResult(directory / "mix.wav", 8000, 33000)
    data, _ = sf.read(inbound, dtype="int16")
    np.testing.assert_array_equal(data, ramp(33000))
    data, _ = sf.read(outbound, dtype="int16")
    np.testing.assert_array_equal(data, ramp(18000, start=100))
    mix, _ = sf.read(directory / "mix.wav", dtype="int16")
    np.testing.assert_array_equal(mix[:18000, 0], ramp(18000, start=100))
    assert not mix[18000:, 0].any()
    np.testing.assert_array_equal(mix[:, 1], ramp(33000))

    doc = json.loads((directory / "session.json").read_text())
    VALIDATOR.validate(doc)
    assert (doc["status"], doc["end_reason"]) == ("interrupted", "crash")
    assert doc["ended_at"] == format_time(ended_at)
    assert [s["duration_s"] for s in doc["streams"]] == [33000 / 8000, 18000 / 8000]
    for record, path in zip(doc["streams"], (inbound, outbound), strict=True):
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc["mix"] == {
        "file": "mix.wav",
        "channels": ["outbound_track", "inbound_track"],
        "sha256": hashlib.sha256((directory / "mix.wav").read_bytes()).hexdigest(),
    }
    # A second start finds nothing left to do.
    assert repair_recordings(tmp_path).outcomes == ()


def make_session(
    root: Path,
    session_id: str,
    sidecar: SessionSidecar,
    samples: dict[str, np.ndarray],
    *,
    rates_hz: dict[str, int] | None = None,
) -> SessionLayout:
    """A session as a crash leaves it: sidecar 'recording', WAVs flushed, never closed."""
    layout = create_session_dir(root, STARTED_AT, session_id)
    write_sidecar(layout.sidecar, sidecar)
    for name, data in samples.items():
        with WavWriter(layout.file(name), (rates_hz or {}).get(name, 8000)) as writer:
            writer.append(data)
    return layout


def two_streams() -> SessionSidecar:
    return recording_sidecar(streams=(stream("a", "a.wav"), stream("b", "b.wav")))


def test_torn_last_sample_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 16000) as writer:
        writer.append(ramp(10))
    with open(path, "ab") as f:
        f.write(b"\x7f")
    assert repair_wav(path) == RepairedWav("a.wav", 16000, 10, 10, 1)
    assert path.stat().st_size == HEADER_BYTES + 20
    data, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(data, ramp(10))


def test_empty_file_becomes_a_valid_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF")  # created; the crash came before the header was on disk
    assert repair_wav(path, empty_sample_rate_hz=8000) == RepairedWav("a.wav", 8000, 0, 0, 0)
    assert sf.info(path).frames == 0
    path.write_bytes(b"")
    with pytest.raises(RecordingFormatError, match="truncated at 0 bytes"):
        repair_wav(path)


def test_foreign_wav_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, ramp(100), 8000, subtype="PCM_16")
    before = path.read_bytes()
    with pytest.raises(RecordingFormatError, match="not an srs WAV header"):
        repair_wav(path, empty_sample_rate_hz=8000)
    assert path.read_bytes() == before


def test_two_streams_without_a_plan_mix_in_stream_order(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "s", two_streams(), {"a.wav": ramp(5), "b.wav": ramp(7, 9)})
    outcome = repair_session(layout.directory)
    assert outcome is not None and outcome.repaired
    mix, _ = sf.read(layout.mix, dtype="int16")
    np.testing.assert_array_equal(mix[:, 1], ramp(7, 9))
    np.testing.assert_array_equal(mix[:5, 0], ramp(5))
    assert read_sidecar(layout.sidecar).mix == MixRecord(
        "mix.wav", ("a", "b"), hashlib.sha256(layout.mix.read_bytes()).hexdigest()
    )


def test_different_rates_are_mixed_at_the_higher_rate(tmp_path: Path) -> None:
    rates = {"a.wav": 8000, "b.wav": 16000}
    samples = {"a.wav": ramp(500), "b.wav": ramp(1000)}
    layout = make_session(tmp_path, "s", two_streams(), samples, rates_hz=rates)
    outcome = repair_session(layout.directory)
    assert outcome is not None and isinstance(outcome.mix, MixResult)
    assert (outcome.mix.sample_rate_hz, outcome.mix.frames) == (16000, 1000)
    final = read_sidecar(layout.sidecar)
    assert final.mix is not None and final.mix_skipped_reason is None
    assert layout.mix.exists()


def test_missing_stream_file_is_reported_and_the_rest_repaired(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "s", two_streams(), {"a.wav": ramp(8)})
    outcome = repair_session(layout.directory)
    assert outcome is not None and outcome.repaired
    assert len(outcome.problems) == 1 and "stream 'b'" in outcome.problems[0]
    assert "missing" in outcome.problems[0]
    assert outcome.mix == MixSkipped("a stream file could not be repaired")
    final = read_sidecar(layout.sidecar)
    assert final.status is SessionStatus.INTERRUPTED
    summary = [(s.duration_s, s.sha256 is None) for s in final.streams]
    assert summary == [(8 / 8000, False), (0.0, True)]


def test_one_stream_gets_no_mix(tmp_path: Path) -> None:
    sidecar = recording_sidecar(streams=(stream("only", "only.wav"),))
    layout = make_session(tmp_path, "s", sidecar, {"only.wav": ramp(3)})
    outcome = repair_session(layout.directory)
    assert outcome is not None and outcome.mix is None
    assert read_sidecar(layout.sidecar).mix is None


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "s", recording_sidecar(), {})
    (layout.directory / ".session.json.abc123_x.tmp").write_text("{")
    (layout.directory / "mix.wav.part").write_bytes(b"RIFF")
    (layout.directory / "notes.txt").write_text("kept")
    outcome = repair_session(layout.directory)
    assert outcome is not None
    assert outcome.removed == (".session.json.abc123_x.tmp", "mix.wav.part")
    assert sorted(p.name for p in layout.directory.iterdir()) == ["notes.txt", "session.json"]


def test_ended_at_is_never_before_started_at(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "s", recording_sidecar(), {})
    os.utime(layout.sidecar, (0, 0))  # a clock that jumped back
    repair_session(layout.directory)
    assert read_sidecar(layout.sidecar).ended_at == STARTED_AT


def test_finished_sessions_are_left_alone(tmp_path: Path) -> None:
    done = replace(
        recording_sidecar(),
        status=SessionStatus.COMPLETE,
        ended_at=STARTED_AT,
        end_reason=EndReason.BYE,
    )
    layout = make_session(tmp_path, "done", done, {})
    before = layout.sidecar.read_bytes()
    assert repair_session(layout.directory) is None
    # Written by another tool without our exact prefix: parsed, still left alone.
    layout.sidecar.write_text(json.dumps(done.to_dict()))
    report = repair_recordings(tmp_path)
    assert (report.outcomes, report.sessions_seen) == ((), 1)
    layout.sidecar.write_bytes(before)
    assert repair_recordings(tmp_path).outcomes == ()


def test_a_corrupt_sidecar_does_not_stop_the_scan(tmp_path: Path) -> None:
    bad = create_session_dir(tmp_path, STARTED_AT, "bad")
    bad.sidecar.write_bytes(b'{"schema": "srs-session/1", "status": "recor')
    empty = create_session_dir(tmp_path, STARTED_AT, "empty")
    good = make_session(tmp_path, "good", recording_sidecar(), {})
    report = repair_recordings(tmp_path)
    by_dir = {outcome.directory: outcome for outcome in report.outcomes}
    assert report.sessions_seen == 3
    assert not by_dir[bad.directory].repaired
    assert "Unterminated string" in by_dir[bad.directory].problems[0]
    assert by_dir[empty.directory] == RepairOutcome(empty.directory, False, ("no session.json",))
    assert by_dir[good.directory].repaired
    assert read_sidecar(good.sidecar).status is SessionStatus.INTERRUPTED


def test_scan_only_walks_the_dated_layout(tmp_path: Path) -> None:
    make_session(tmp_path, "s", recording_sidecar(), {})
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "2026" / "notes").mkdir()
    (tmp_path / "README").write_text("x")
    (tmp_path / "2027").symlink_to(tmp_path / "2026")  # never followed
    report = repair_recordings(tmp_path)
    assert report.sessions_seen == 1
    assert [o.repaired for o in report.outcomes] == [True]


def test_scan_stops_at_max_repairs(tmp_path: Path) -> None:
    broken = create_session_dir(tmp_path, STARTED_AT, "a-broken")  # sorts first
    broken.sidecar.write_text("{}")
    for n in range(3):
        make_session(tmp_path, f"s{n}", recording_sidecar(), {})
    report = repair_recordings(tmp_path, max_repairs=2)
    assert [o.repaired for o in report.outcomes] == [False, True, True]
    assert (report.sessions_seen, report.more_left) == (3, True)
    rest = repair_recordings(tmp_path, max_repairs=2)
    assert [o.repaired for o in rest.outcomes] == [False, True]
    assert (rest.sessions_seen, rest.more_left) == (4, False)
    with pytest.raises(UsageError, match="max_repairs"):
        repair_recordings(tmp_path, max_repairs=0)


def test_sessions_of_the_running_process_are_not_touched(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "live", recording_sidecar(), {})
    before = layout.sidecar.read_bytes()
    assert repair_recordings(tmp_path, started_before=STARTED_AT).outcomes == ()
    assert layout.sidecar.read_bytes() == before
    later = STARTED_AT + timedelta(milliseconds=1)
    (outcome,) = repair_recordings(tmp_path, started_before=later).outcomes
    assert outcome.repaired


def test_missing_recordings_dir_is_reported(tmp_path: Path) -> None:
    report = repair_recordings(tmp_path / "none")
    (outcome,) = report.outcomes
    assert outcome.directory == tmp_path / "none"
    assert not outcome.repaired and "cannot list" in outcome.problems[0]


REPAIR_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from srs.recording.repair import repair_session
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    outcome = repair_session(Path(sys.argv[1]))
    print(outcome.repaired, outcome.problems[0])
    """
)


def test_a_sidecar_that_cannot_be_rewritten_stays_recording(tmp_path: Path) -> None:
    layout = make_session(tmp_path, "s", recording_sidecar(), {})
    before = layout.sidecar.read_bytes()
    # The interrupted sidecar is a little longer than the recording one: it cannot be written.
    child = python_child(REPAIR_UNDER_LIMIT, str(layout.directory), str(len(before) + 5))
    stdout, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert stdout.startswith("False write ")
    assert "[EFBIG] File too large" in stdout
    assert layout.sidecar.read_bytes() == before
    assert sorted(p.name for p in layout.directory.iterdir()) == ["session.json"]


def test_the_index_spares_a_start_reading_final_sessions(tmp_path: Path) -> None:
    """A start reads the sidecars of sessions the last scan did not find final, only."""
    recordings, index = tmp_path / "rec", tmp_path / "state" / "repair-index"
    done = replace(recording_sidecar(), status=SessionStatus.COMPLETE, ended_at=STARTED_AT,
                   end_reason=EndReason.BYE)
    finished = [make_session(recordings, f"done-{i}", done, {}) for i in range(5)]
    crashed = make_session(recordings, "crashed", recording_sidecar(), {})
    first = repair_recordings(recordings, index=index)
    assert (first.sessions_seen, first.sessions_indexed, first.index_problem) == (6, 0, None)
    assert [o.directory for o in first.outcomes if o.repaired] == [crashed.directory]
    assert oct(index.stat().st_mode & 0o777) == "0o600"
    # Every session is now final: the next start reads none of their sidecars.  (An
    # unreadable sidecar would be reported if it were read.)
    for layout in (*finished, crashed):
        layout.sidecar.chmod(0)
    if os.access(finished[0].sidecar, os.R_OK):  # root reads regardless: damage instead
        for layout in (*finished, crashed):
            layout.sidecar.write_bytes(b"not json")
    second = repair_recordings(recordings, index=index)
    assert (second.sessions_seen, second.sessions_indexed, second.outcomes) == (6, 6, ())
    assert repair_recordings(recordings).sessions_seen == 6  # without the index: all read
    assert len(repair_recordings(recordings).outcomes) == 6
    # A new crash is repaired; a deleted session leaves the index.
    again = make_session(recordings, "again", recording_sidecar(), {})
    shutil.rmtree(finished[0].directory)
    third = repair_recordings(recordings, index=index)
    assert [o.directory for o in third.outcomes] == [again.directory]
    assert (third.sessions_seen, third.sessions_indexed) == (6, 5)
    names = index.read_text().splitlines()[1:]
    assert sorted(names) == sorted(
        p.directory.relative_to(recordings).as_posix() for p in (*finished[1:], crashed, again))


def test_an_index_that_is_not_ours_is_ignored(tmp_path: Path) -> None:
    index = tmp_path / "repair-index"
    crashed = make_session(tmp_path / "rec", "crashed", recording_sidecar(), {})
    name = crashed.directory.relative_to(tmp_path / "rec").as_posix()
    index.write_text(f"something else\n{name}\n")
    report = repair_recordings(tmp_path / "rec", index=index)
    assert [o.repaired for o in report.outcomes] == [True] and report.sessions_indexed == 0
    assert index.read_text() == f"srs repair-index 1\n{name}\n"
