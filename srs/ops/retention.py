"""Storage guard and retention of recordings.

* :class:`StorageGuard` -- is there room for a new session?  A cached ``statvfs`` of
  ``recordings.dir``, refreshed every ``refresh_s`` by :meth:`StorageGuard.watch` in a
  worker thread (a ``statvfs`` of a hung network file system blocks), so asking per
  INVITE costs nothing on the event loop.  Below ``min_free_bytes`` (or when the
  directory is unusable) new INVITEs get 503 with ``Retry-After`` (RFC 3261 §21.5.4) and
  ``/readyz`` fails.
* :func:`remove_expired` -- delete finished sessions (``complete``, ``interrupted``,
  ``failed``; never ``recording``) that ended more than ``retention_days`` ago, and say
  what was removed.  Bounded per run, walks ``YYYY/MM/DD/<session>/`` oldest first and
  stops at the first day too young to hold an expired session.  Symlinks are never
  followed: a symlinked year, month, day or session directory is skipped, and the
  removal itself is ``shutil.rmtree``'s file-descriptor based walk, which deletes a link
  and never what it points at.
* :func:`run_retention` -- the asyncio shell's periodic loop around it, with logging.

Everything above :func:`run_retention` is synchronous, without logging, and takes the
time as an argument.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from srs.errors import ServiceUnavailable, UsageError
from srs.log import Logger
from srs.recording.layout import SIDECAR_FILE
from srs.recording.sidecar import SessionStatus, read_sidecar
from srs.recording.wav import RecordingFormatError, RecordingIOError

__all__ = [
    "StorageGuard",
    "RemovedSession",
    "RetentionReport",
    "remove_expired",
    "directory_bytes",
    "run_retention",
    "MAX_REMOVALS",
    "MAX_SCANNED",
]

MAX_REMOVALS: Final = 500
MAX_SCANNED: Final = 20000
_MAX_FILES_COUNTED: Final = 1000
_YEAR, _TWO_DIGITS = re.compile(r"\d{4}"), re.compile(r"\d{2}")
_FINAL: Final = (SessionStatus.COMPLETE, SessionStatus.INTERRUPTED, SessionStatus.FAILED)


class StorageGuard:
    """Free space of ``directory`` against ``min_free_bytes``, measured lazily."""

    def __init__(self, directory: Path, min_free_bytes: int, *, refresh_s: float = 5.0,
                 retry_after_s: int = 60, clock: Callable[[], float] = time.monotonic,
                 statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> None:
        if min_free_bytes < 0 or refresh_s < 0:
            raise UsageError("min_free_bytes and refresh_s must not be negative")
        self.directory = directory
        self.min_free_bytes = min_free_bytes
        self.refresh_s = refresh_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._statvfs = statvfs
        self._checked_at: float | None = None
        self._free: int | None = None
        self._problem: str | None = None
        self._watched = False  # watch() is refreshing: problem() never measures
        # problem() runs on the event loop, free_bytes() in the metrics scrape's thread.
        self._lock = threading.Lock()

    async def watch(self) -> None:
        """Refresh the measurement every ``refresh_s`` in a worker thread, for ever (the
        shell runs it as a task and cancels it on shutdown), the first ``refresh_s`` after
        the measurement the shell made at start-up."""
        self._watched = True
        try:
            while True:
                await asyncio.sleep(self.refresh_s)
                await asyncio.to_thread(self._refresh, True)
        finally:
            self._watched = False

    def _measure(self) -> None:
        try:
            st = self._statvfs(self.directory)
        except OSError as exc:
            self._free, self._problem = None, f"recordings dir unusable: {exc.strerror or exc}"
        else:
            # f_bavail: blocks available to an unprivileged process, which srs should be.
            self._free = st.f_bavail * st.f_frsize
            self._problem = (
                f"low disk space: {self._free} bytes free, {self.min_free_bytes} needed"
                if self._free < self.min_free_bytes else None)
        self._checked_at = self._clock()

    def _refresh(self, force: bool) -> None:
        with self._lock:
            now = self._clock()
            if force or self._checked_at is None or now - self._checked_at >= self.refresh_s:
                self._measure()

    def problem(self) -> str | None:
        """``None`` when there is room for new sessions, else why not (for logs and
        ``/readyz``).  Runs on the event loop, so it never waits: while :meth:`watch` runs
        the last measurement answers; without it, a stale one is refreshed here unless
        another thread (a metrics scrape) is measuring."""
        if self._watched and self._checked_at is not None:
            return self._problem
        if self._lock.acquire(blocking=False):
            try:
                now = self._clock()
                if self._checked_at is None or now - self._checked_at >= self.refresh_s:
                    self._measure()
            finally:
                self._lock.release()
        return self._problem

    def admit(self) -> None:
        """Raise :class:`ServiceUnavailable` (503 with ``Retry-After``) when short of space."""
        problem = self.problem()
        if problem is not None:
            raise ServiceUnavailable(f"Service Unavailable: {problem.split(':')[0]}",
                                     retry_after_s=self.retry_after_s)

    def free_bytes(self) -> int | None:
        """Measured now (for the metrics scrape, which also refreshes the cache)."""
        self._refresh(True)
        return self._free


@dataclass(frozen=True, slots=True)
class RemovedSession:
    directory: Path
    status: str
    ended_at: datetime
    bytes: int


@dataclass(frozen=True, slots=True)
class RetentionReport:
    removed: tuple[RemovedSession, ...] = ()
    problems: tuple[str, ...] = ()
    scanned: int = 0
    more_left: bool = False  # a bound was reached: the next run continues
    removed_bytes: int = field(default=0)


def remove_expired(recordings_dir: Path, *, retention_days: int, now: datetime,
                   max_removals: int = MAX_REMOVALS,
                   max_scanned: int = MAX_SCANNED) -> RetentionReport:
    """Remove finished sessions that ended at or before ``now - retention_days``."""
    if retention_days < 1 or max_removals < 1 or max_scanned < 1:
        raise UsageError("retention_days, max_removals and max_scanned must be positive")
    if now.utcoffset() is None:
        raise UsageError("now must be an aware datetime")
    cutoff = now - timedelta(days=retention_days)
    last_day = cutoff.astimezone(UTC).date()
    try:
        root = recordings_dir.resolve(strict=True)
    except OSError as exc:
        return RetentionReport(problems=(f"{recordings_dir}: {exc.strerror or exc}",))
    removed: list[RemovedSession] = []
    problems: list[str] = []
    scanned = 0
    for _day, day_dir in _days(root, last_day, problems):
        for session_dir in _subdirs(day_dir, None, problems):
            if scanned >= max_scanned or len(removed) >= max_removals:
                return _report(removed, problems, scanned, more_left=True)
            scanned += 1
            outcome = _expire(root, session_dir, cutoff)
            if isinstance(outcome, RemovedSession):
                removed.append(outcome)
            elif outcome is not None:
                problems.append(outcome)
        _prune_empty(root, day_dir)
    return _report(removed, problems, scanned, more_left=False)


def _report(removed: list[RemovedSession], problems: list[str], scanned: int, *,
            more_left: bool) -> RetentionReport:
    return RetentionReport(tuple(removed), tuple(problems), scanned, more_left,
                           sum(r.bytes for r in removed))


def _days(root: Path, last_day: date, problems: list[str]) -> list[tuple[date, Path]]:
    """``YYYY/MM/DD`` directories up to ``last_day``, oldest first (no symlinks)."""
    days: list[tuple[date, Path]] = []
    for year in _subdirs(root, _YEAR, problems):
        if int(year.name) > last_day.year:
            break
        for month in _subdirs(year, _TWO_DIGITS, problems):
            for day_dir in _subdirs(month, _TWO_DIGITS, problems):
                try:
                    day = date(int(year.name), int(month.name), int(day_dir.name))
                except ValueError:
                    continue  # not a date: not ours
                if day <= last_day:
                    days.append((day, day_dir))
    return days


def _subdirs(parent: Path, pattern: re.Pattern[str] | None, problems: list[str]) -> list[Path]:
    try:
        with os.scandir(parent) as entries:
            names = sorted(e.name for e in entries
                           if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                           and (pattern is None or pattern.fullmatch(e.name)))
    except OSError as exc:
        problems.append(f"{parent}: cannot list: {exc.strerror or exc}")
        return []
    return [parent / name for name in names]


def _expire(root: Path, directory: Path, cutoff: datetime) -> RemovedSession | str | None:
    """Remove one session directory if it is finished and old enough.  A problem (str),
    the removal, or None when the session is kept."""
    sidecar = directory / SIDECAR_FILE
    try:
        if not stat.S_ISREG(os.lstat(sidecar).st_mode):
            return f"{directory}: {SIDECAR_FILE} is not a regular file; kept"
        record = read_sidecar(sidecar)
    except FileNotFoundError:
        return f"{directory}: no {SIDECAR_FILE}; kept"
    except (OSError, RecordingIOError, RecordingFormatError) as exc:
        return f"{directory}: {exc}; kept"
    if record.status not in _FINAL or record.ended_at is None or record.ended_at > cutoff:
        return None
    resolved = directory.resolve()
    if resolved.parent.parent.parent.parent != root or os.path.islink(directory):
        return f"{directory}: outside {root} after resolving links; kept"
    if not shutil.rmtree.avoids_symlink_attacks:
        return f"{directory}: this platform's rmtree may follow symlinks; kept"
    size = directory_bytes(resolved)
    try:
        shutil.rmtree(resolved)
    except OSError as exc:
        return f"{directory}: removal failed: {exc.strerror or exc}"
    return RemovedSession(directory, record.status.value, record.ended_at, size)


def directory_bytes(directory: Path) -> int:
    """Bytes in the regular files directly in ``directory`` (a session's files; at most
    the first 1000 are counted), without following links."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for count, entry in enumerate(entries):
                if count >= _MAX_FILES_COUNTED:
                    break
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return total
    return total


def _prune_empty(root: Path, day_dir: Path) -> None:
    """Remove the day, month and year directories that retention left empty."""
    for directory in (day_dir, day_dir.parent, day_dir.parent.parent):
        if directory == root:
            return
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (or in use): the rest stays


async def run_retention(recordings_dir: Path, retention_days: int, log: Logger, *,
                        interval_s: float = 3600.0, busy_interval_s: float = 60.0,
                        max_removals: int = MAX_REMOVALS,
                        now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Every ``interval_s`` (sooner while a bound left work), remove expired sessions in a
    worker thread and log each removal.  Runs until cancelled."""
    while True:
        try:
            report = await asyncio.to_thread(remove_expired, recordings_dir,
                                             retention_days=retention_days, now=now(),
                                             max_removals=max_removals)
        except Exception:
            log.exception("retention_failed")  # a bug: loud, and tried again next time
            report = RetentionReport()
        for item in report.removed:
            log.info("recording_expired", dir=str(item.directory), status=item.status,
                     ended_at=item.ended_at.isoformat(), bytes=item.bytes)
        for problem in report.problems[:20]:
            log.warning("retention_problem", problem=problem)
        if report.removed or report.problems:
            log.info("retention_run", removed=len(report.removed), bytes=report.removed_bytes,
                     problems=len(report.problems), scanned=report.scanned,
                     more_left=report.more_left)
        await asyncio.sleep(busy_interval_s if report.more_left else interval_s)
