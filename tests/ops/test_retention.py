"""Storage guard (fake statvfs and clock) and retention over real directories."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog
from structlog.testing import capture_logs

from srs.errors import ServiceUnavailable
from srs.ops.retention import StorageGuard, directory_bytes, remove_expired, run_retention
from tests.ops.sessions import make_session

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeDisk:
    def __init__(self) -> None:
        self.free_blocks = 1000
        self.calls = 0
        self.error: OSError | None = None

    def __call__(self, path: Path) -> os.statvfs_result:
        self.calls += 1
        if self.error is not None:
            raise self.error
        stats = SimpleNamespace(f_bavail=self.free_blocks, f_frsize=4096)
        return stats  # type: ignore[return-value]


def test_storage_guard_caches_and_refuses_with_503() -> None:
    disk, clock = FakeDisk(), [100.0]
    guard = StorageGuard(Path("/rec"), min_free_bytes=4096 * 500, refresh_s=5.0,
                         clock=lambda: clock[0], statvfs=disk)
    assert guard.problem() is None
    disk.free_blocks = 10
    clock[0] += 4.9
    assert guard.problem() is None and disk.calls == 1  # cached
    clock[0] += 0.1
    assert guard.problem() == "low disk space: 40960 bytes free, 2048000 needed"
    with pytest.raises(ServiceUnavailable) as info:
        guard.admit()
    assert (info.value.status, info.value.retry_after_s) == (503, 60)
    assert info.value.reason == "Service Unavailable: low disk space"
    disk.error = OSError(2, "No such file or directory")
    assert guard.free_bytes() is None  # a scrape measures now
    assert guard.problem() == "recordings dir unusable: No such file or directory"
    disk.error, disk.free_blocks = None, 10_000
    assert guard.free_bytes() == 40_960_000 and guard.problem() is None


def test_storage_guard_measures_off_the_event_loop_while_watched() -> None:
    """With watch() running, problem() (asked per INVITE, on the loop) never calls statvfs:
    a hung file system cannot stall the loop."""
    disk, clock = FakeDisk(), [100.0]
    threads: list[int] = []

    def statvfs(path: Path) -> os.statvfs_result:
        threads.append(threading.get_ident())
        return disk(path)

    guard = StorageGuard(Path("/rec"), min_free_bytes=4096 * 500, refresh_s=0.01,
                         clock=lambda: clock[0], statvfs=statvfs)

    async def main() -> tuple[int, list[str | None]]:
        loop_thread = threading.get_ident()
        watcher = asyncio.get_running_loop().create_task(guard.watch())
        while len(threads) < 2:  # the watcher measured twice
            await asyncio.sleep(0.01)
        answers = []
        for blocks in (10, 10_000):
            disk.free_blocks = blocks
            clock[0] += 60  # every answer stale for an unwatched guard
            guard.problem()
            seen = len(threads)
            while len(threads) < seen + 2:  # the watcher has picked up the change
                await asyncio.sleep(0.01)
            answers.append(guard.problem())
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        return loop_thread, answers

    loop_thread, answers = asyncio.run(main())
    assert loop_thread not in threads
    low = "low disk space: 40960 bytes free, 2048000 needed"
    assert answers == [low, None]
    clock[0] += 60
    guard.problem()  # unwatched again: measures itself
    assert threads[-1] == threading.get_ident()


def test_storage_guard_on_a_real_directory(tmp_path: Path) -> None:
    assert StorageGuard(tmp_path, 0).problem() is None
    assert str(StorageGuard(tmp_path, 1 << 62).problem()).startswith("low disk space")
    assert str(StorageGuard(tmp_path / "gone", 0).problem()).startswith("recordings dir unusable")


def test_removes_only_old_finished_sessions(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    old = NOW - timedelta(days=40)
    removed = {make_session(rec, old, status=s, name=s) for s in
               ("complete", "interrupted", "failed")}
    kept = {
        make_session(rec, old, status="recording", name="live"),
        make_session(rec, NOW - timedelta(days=29), name="young"),
        # Ended 5 minutes after its start: 30 days minus 1 minute before NOW is too young.
        make_session(rec, NOW - timedelta(days=30, minutes=4), name="edge"),
    }
    no_sidecar = rec / old.strftime("%Y/%m/%d") / "stray"
    no_sidecar.mkdir()
    report = remove_expired(rec, retention_days=30, now=NOW)
    assert {r.directory for r in report.removed} == removed
    assert {r.status for r in report.removed} == {"complete", "interrupted", "failed"}
    assert all(r.bytes > 1000 for r in report.removed)
    assert report.removed_bytes == sum(r.bytes for r in report.removed)
    assert not any(d.exists() for d in removed)
    assert all(d.exists() for d in kept) and no_sidecar.exists()
    assert report.problems == (f"{no_sidecar}: no session.json; kept",)
    assert not report.more_left


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    rec, outside = tmp_path / "rec", tmp_path / "outside"
    old = NOW - timedelta(days=40)
    victim = make_session(outside, old, name="victim")
    day = rec / old.strftime("%Y/%m/%d")
    day.mkdir(parents=True)
    (day / "linked-session").symlink_to(victim, target_is_directory=True)
    # A real session dir whose sidecar is a link to an old finished sidecar elsewhere.
    tricked = day / "tricked"
    tricked.mkdir()
    (tricked / "session.json").symlink_to(victim / "session.json")
    # A whole year that is a link.
    (rec / "2001").symlink_to(outside / old.strftime("%Y"), target_is_directory=True)
    report = remove_expired(rec, retention_days=30, now=NOW)
    assert report.removed == ()
    assert victim.exists() and (victim / "inbound_track.wav").exists()
    assert tricked.exists()
    assert report.problems == (f"{tricked}: session.json is not a regular file; kept",)


def test_runs_are_bounded_and_prune_empty_dirs(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    sessions = [make_session(rec, NOW - timedelta(days=400 + i), name=f"s{i}") for i in range(5)]
    first = remove_expired(rec, retention_days=30, now=NOW, max_removals=3)
    assert len(first.removed) == 3 and first.more_left
    # Oldest first.
    assert [r.directory for r in first.removed] == sessions[::-1][:3]
    second = remove_expired(rec, retention_days=30, now=NOW, max_removals=3)
    assert len(second.removed) == 2 and not second.more_left
    assert list(rec.iterdir()) == []  # the emptied YYYY/MM/DD directories are gone
    scanned = remove_expired(rec, retention_days=30, now=NOW)
    assert scanned.scanned == 0


def test_run_retention_logs_each_removal(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    make_session(rec, NOW - timedelta(days=3), name="gone")

    async def main() -> None:
        with capture_logs() as logs:
            task = asyncio.create_task(run_retention(
                rec, 1, structlog.get_logger(), interval_s=3600, now=lambda: NOW))
            for _ in range(500):
                if any(e["event"] == "retention_run" for e in logs):
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        expired = [e for e in logs if e["event"] == "recording_expired"]
        assert len(expired) == 1 and expired[0]["status"] == "complete"

    asyncio.run(asyncio.wait_for(main(), 10))


def test_directory_bytes_counts_files_not_links(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"x" * 300)
    (tmp_path / "session.json").write_bytes(b"y" * 20)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep").write_bytes(b"z" * 1000)
    (tmp_path / "link").symlink_to(tmp_path / "a.wav")
    assert directory_bytes(tmp_path) == 320
