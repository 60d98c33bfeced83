"""Start-up repair of sessions that a crash (kill -9, OOM, power loss) left ``recording``.

For every session directory whose ``session.json`` still says ``recording``:

1. leftover temporary files (``.session.json.*.tmp``, ``*.part``) are removed: they are
   incomplete by construction and the last complete version of each file is in place;
2. each stream WAV gets a header that matches the samples present, whole frames only (a
   trailing half sample is cut).  Samples written after the last flush but before the
   crash are kept: the kernel had them, so they are part of the recording;
3. durations and SHA-256 are computed, and the stereo mix is built when the session has
   two streams (in the channel order the sidecar planned, else stream order);
4. the sidecar is rewritten atomically with status ``interrupted``, ``end_reason``
   ``crash`` (the process died, so neither ``bye`` nor ``shutdown`` is known to be true),
   and ``ended_at`` the newest modification time of the session's files, which is the
   last moment anything was recorded.

One broken session never stops the scan: each one gets a :class:`RepairOutcome` with its
problems for the caller to log.

With an ``index`` file (the server keeps ``<state_dir>/repair-index``), a start reads only
the sidecars of sessions not listed in it: the index lists the sessions the last scan found
final (complete, interrupted, failed), which never go back to ``recording``.  Each scan
rewrites it with the final sessions that are still there, so sessions that were deleted
drop out of it.  A session whose sidecar could not be rewritten stays
``recording`` and is tried again at the next start.

No asyncio, no logging: the asyncio shell calls these in a worker thread and logs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from srs.errors import UsageError
from srs.recording.layout import MIX_FILE, SIDECAR_FILE, SessionLayout
from srs.recording.mix import PART_SUFFIX, MixResult, MixSkipped, mix_stereo
from srs.recording.sidecar import (
    SCHEMA_VERSION,
    EndReason,
    MixRecord,
    SessionSidecar,
    SessionStatus,
    StreamRecord,
    read_sidecar,
    replace_atomically,
    sha256_file,
    write_sidecar,
)
from srs.recording.wav import (
    HEADER_BYTES,
    RecordingFormatError,
    RecordingIOError,
    header_bytes,
    read_wav_info,
)

__all__ = [
    "MAX_REPAIRS",
    "RepairOutcome",
    "RepairReport",
    "RepairedWav",
    "repair_recordings",
    "repair_session",
    "repair_wav",
    "INDEX_FILE",
]

# The index of final sessions in the state directory (see the module docstring).
INDEX_FILE: Final = "repair-index"
_INDEX_HEADER: Final = "srs repair-index 1"
# An index larger than this is not read (a start then reads every sidecar once).
MAX_INDEX_BYTES: Final = 64 * 1024 * 1024

# At most this many sessions are repaired in one scan; the rest wait for the next start.
MAX_REPAIRS: Final = 1000
# Files looked at per session directory when finding the newest mtime and leftovers.
MAX_FILES_PER_SESSION: Final = 1000
_YEAR, _MONTH_OR_DAY = re.compile(r"\d{4}"), re.compile(r"\d{2}")
# write_sidecar's temp files: files.create_temporary(prefix=".session.json.", suffix=".tmp").
_SIDECAR_TMP = re.compile(re.escape(f".{SIDECAR_FILE}.") + r"[A-Za-z0-9_]+\.tmp")
# What an atomically written sidecar that needs no repair starts with (see to_dict).
_FINAL_PREFIXES: Final = tuple(
    f'{{\n  "schema": "{SCHEMA_VERSION}",\n  "status": "{status}"'.encode()
    for status in ("complete", "interrupted", "failed")
)


@dataclass(frozen=True, slots=True)
class RepairedWav:
    """One WAV after repair: ``header_frames_before`` is what its header said at the crash."""

    file: str
    sample_rate_hz: int
    frames: int
    header_frames_before: int
    truncated_bytes: int  # a trailing partial frame that was cut

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    """What happened to one session directory.  ``repaired`` means the sidecar was rewritten."""

    directory: Path
    repaired: bool
    problems: tuple[str, ...] = ()
    streams: tuple[RepairedWav, ...] = ()
    mix: MixResult | MixSkipped | None = None
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RepairReport:
    """The scan's result: one outcome per session that needed attention."""

    outcomes: tuple[RepairOutcome, ...]
    sessions_seen: int
    more_left: bool  # MAX_REPAIRS was reached; the rest are done at the next start
    sessions_indexed: int = 0  # of sessions_seen, those the index said were final
    index_problem: str | None = None  # the index could not be written (the scan still ran)


def repair_wav(path: Path, *, empty_sample_rate_hz: int | None = None) -> RepairedWav:
    """Rewrite the header of a WAV written by WavWriter to the whole frames it holds.

    A file shorter than its header (created, then the crash came before the header reached
    the disk) holds no audio; with ``empty_sample_rate_hz`` it becomes a valid empty mono
    file, without it :class:`RecordingFormatError` is raised.
    """
    try:
        info = read_wav_info(path)
    except RecordingFormatError:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise RecordingIOError("repair", path, exc) from exc
        if empty_sample_rate_hz is None or size >= HEADER_BYTES:
            raise
        _rewrite(path, header_bytes(empty_sample_rate_hz, 1, 0), truncate_to=0)
        return RepairedWav(path.name, empty_sample_rate_hz, 0, 0, 0)
    align = info.block_align_bytes
    frames = info.present_frames
    truncated = info.file_data_bytes - frames * align
    header = header_bytes(info.sample_rate_hz, info.channels, frames * align)
    _rewrite(path, header, truncate_to=HEADER_BYTES + frames * align if truncated else None)
    return RepairedWav(
        file=path.name,
        sample_rate_hz=info.sample_rate_hz,
        frames=frames,
        header_frames_before=info.header_data_bytes // align,
        truncated_bytes=truncated,
    )


def repair_session(
    directory: Path, *, started_before: datetime | None = None
) -> RepairOutcome | None:
    """Repair one session directory.

    ``None`` when its sidecar is not ``recording``, or when the session started at or
    after ``started_before`` (it belongs to the running process, which is recording it).
    """
    layout = SessionLayout(directory)
    try:
        sidecar = read_sidecar(layout.sidecar)
    except (RecordingIOError, RecordingFormatError) as exc:  # SidecarFormatError is one
        return RepairOutcome(directory, repaired=False, problems=(str(exc),))
    if sidecar.status is not SessionStatus.RECORDING:
        return None
    if started_before is not None and sidecar.started_at >= started_before:
        return None
    problems: list[str] = []
    try:
        newest_mtime_s, leftovers = _scan_files(directory)
        for name in leftovers:
            (directory / name).unlink()
    except OSError as exc:
        return RepairOutcome(directory, repaired=False, problems=(f"{directory}: {exc}",))
    repaired: list[RepairedWav] = []
    streams: list[StreamRecord] = []
    for stream in sidecar.streams:
        path = layout.file(stream.file)
        try:
            if not path.is_file():
                raise RecordingFormatError(path, "missing")
            # The file's rate is right for an empty file's header: it holds no samples.
            fixed = repair_wav(path, empty_sample_rate_hz=stream.sample_rate or stream.clock_rate)
            sha = sha256_file(path)
        except (RecordingFormatError, RecordingIOError) as exc:
            problems.append(f"stream {stream.label!r}: {exc}")
            streams.append(stream)
            continue
        repaired.append(fixed)
        streams.append(replace(stream, duration_s=fixed.duration_s, sha256=sha,
                               sample_rate=fixed.sample_rate_hz))
    mix_result, mix_record, mix_reason = _remix(layout, sidecar, tuple(streams), repaired)
    started_s = sidecar.started_at.timestamp()
    final = replace(
        sidecar,
        status=SessionStatus.INTERRUPTED,
        end_reason=EndReason.CRASH,
        ended_at=datetime.fromtimestamp(max(newest_mtime_s, started_s), UTC),
        streams=tuple(streams),
        mix=mix_record,
        mix_skipped_reason=mix_reason,
    )
    try:
        write_sidecar(layout.sidecar, final)
    except RecordingIOError as exc:
        problems.append(str(exc))
        return RepairOutcome(directory, False, tuple(problems), tuple(repaired), mix_result)
    return RepairOutcome(
        directory, True, tuple(problems), tuple(repaired), mix_result, tuple(leftovers)
    )


def repair_recordings(
    recordings_dir: Path,
    *,
    started_before: datetime | None = None,
    max_repairs: int = MAX_REPAIRS,
    index: Path | None = None,
) -> RepairReport:
    """Scan ``<recordings_dir>/YYYY/MM/DD/*/`` and repair every session left ``recording``.

    Run it before accepting calls, or pass ``started_before`` (the process start time) so
    that sessions this process is recording are never touched.  Session directories
    without a ``session.json`` and directories that cannot be listed are reported, not
    touched.  Only sessions actually repaired count toward ``max_repairs``: a corrupt
    sidecar, reported at every start until someone looks at it, never starves the rest.
    With ``index``, sessions listed in it are taken as final unread, and the index is
    rewritten (see the module docstring).
    """
    if max_repairs < 1:
        raise UsageError("max_repairs must be positive")
    known = _read_index(index) if index is not None else frozenset()
    final: list[str] = []
    outcomes: list[RepairOutcome] = []
    seen = repaired = indexed = 0
    more_left = False
    for name in _session_dirs(recordings_dir, outcomes):
        if repaired >= max_repairs:
            more_left = True
            break
        seen += 1
        if name in known:
            indexed += 1
            final.append(name)
            continue
        directory = recordings_dir / name
        sidecar = directory / SIDECAR_FILE
        if not sidecar.is_file():
            outcomes.append(RepairOutcome(directory, False, (f"no {SIDECAR_FILE}",)))
            continue
        if _is_final(sidecar):
            final.append(name)
            continue
        outcome = repair_session(directory, started_before=started_before)
        if outcome is not None:
            outcomes.append(outcome)
            repaired += outcome.repaired
            if outcome.repaired:
                final.append(name)
    problem = None
    if index is not None:
        # Sessions past a max_repairs stop were not looked at: keep what the index knew.
        keep = known - {*final} if more_left else frozenset()
        problem = _write_index(index, [*final, *sorted(keep)])
    return RepairReport(tuple(outcomes), seen, more_left, indexed, problem)


def _read_index(index: Path) -> frozenset[str]:
    """The session names in ``index``; none when it is missing, too large or not ours."""
    try:
        with open(index, "rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)
    except OSError:
        return frozenset()
    lines = data.decode("utf-8", errors="replace").split("\n")
    if len(data) > MAX_INDEX_BYTES or lines[0] != _INDEX_HEADER:
        return frozenset()
    return frozenset(line for line in lines[1:] if line)


def _write_index(index: Path, names: list[str]) -> str | None:
    """Replace ``index`` atomically; the error text when that failed."""
    lines = [_INDEX_HEADER, *(n for n in names if "\n" not in n and "\r" not in n)]
    data = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
    try:
        index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the state directory
        replace_atomically(index, data, mode=0o600)
    except OSError as exc:
        return f"{index}: {exc}"
    except RecordingIOError as exc:
        return str(exc)
    return None


def _rewrite(path: Path, header: bytes, *, truncate_to: int | None) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            if truncate_to is not None:
                os.ftruncate(fd, truncate_to)
            os.pwrite(fd, header, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise RecordingIOError("repair", path, exc) from exc


def _remix(
    layout: SessionLayout,
    sidecar: SessionSidecar,
    streams: tuple[StreamRecord, ...],
    repaired: list[RepairedWav],
) -> tuple[MixResult | MixSkipped | None, MixRecord | None, str | None]:
    """Build the mix in the planned channel order, or stream order for two streams."""
    if sidecar.mix is not None:
        channels = sidecar.mix.channels
    elif len(streams) == 2:
        channels = (streams[0].label, streams[1].label)
    else:
        return None, None, sidecar.mix_skipped_reason
    by_label = {stream.label: stream for stream in streams}
    good = {wav.file for wav in repaired}
    left, right = by_label[channels[0]], by_label[channels[1]]
    if left.file not in good or right.file not in good:
        skipped = MixSkipped("a stream file could not be repaired")
        return skipped, None, skipped.reason
    try:
        result = mix_stereo(layout.file(left.file), layout.file(right.file), layout.mix)
    except (RecordingFormatError, RecordingIOError) as exc:
        skipped = MixSkipped(str(exc))
        return skipped, None, skipped.reason
    if isinstance(result, MixSkipped):
        return result, None, result.reason
    try:
        sha = sha256_file(layout.mix)
    except RecordingIOError as exc:
        return MixSkipped(str(exc)), None, str(exc)
    return result, MixRecord(MIX_FILE, channels, sha), None


def _scan_files(directory: Path) -> tuple[float, list[str]]:
    """The newest mtime among the session's files, and our leftover temporary files."""
    newest_s = 0.0
    leftovers: list[str] = []
    with os.scandir(directory) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_FILES_PER_SESSION:
                break
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.endswith(PART_SUFFIX) or _SIDECAR_TMP.fullmatch(entry.name):
                leftovers.append(entry.name)
                continue
            newest_s = max(newest_s, entry.stat(follow_symlinks=False).st_mtime)
    return newest_s, sorted(leftovers)


def _session_dirs(recordings_dir: Path, outcomes: list[RepairOutcome]) -> list[str]:
    """``YYYY/MM/DD/<session>`` directories in order, as names relative to
    ``recordings_dir`` (strings: a start with the index makes no path object for a session
    it skips); unlistable ones go into ``outcomes``."""
    root = os.fspath(recordings_dir)
    levels = [""]
    for pattern in (_YEAR, _MONTH_OR_DAY, _MONTH_OR_DAY, None):
        next_level: list[str] = []
        for parent in levels:
            try:
                with os.scandir(os.path.join(root, parent)) as entries:
                    names = sorted(
                        entry.name
                        for entry in entries
                        if entry.is_dir(follow_symlinks=False)
                        and (pattern is None or pattern.fullmatch(entry.name))
                    )
            except OSError as exc:
                outcomes.append(RepairOutcome(recordings_dir / parent, False,
                                              (f"cannot list: {exc}",)))
                continue
            next_level.extend(f"{parent}/{name}" if parent else name for name in names)
        levels = next_level
    return levels


def _is_final(sidecar: Path) -> bool:
    """Cheap check that a sidecar is complete/interrupted/failed, without parsing it.

    Sidecars are written whole (write_sidecar), so a finished one always starts with the
    exact prefix; anything else (recording, corrupt, foreign) is parsed properly.
    """
    try:
        with open(sidecar, "rb") as f:
            head = f.read(96)
    except OSError:
        return False  # repair_session reads it again and reports the error
    return head.startswith(_FINAL_PREFIXES)
