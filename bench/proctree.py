"""CPU and memory of a process and every process below it, read from /proc (proc(5)).

srs may run as one process or as a signalling process with media worker processes below
it, which it restarts when one dies.  :class:`TreeWindow` therefore re-reads the tree at
every sample: a process is known by its pid and start time (so a reused pid is a new
process), one that appears during the window counts all its CPU (it started at zero), and
one that ends keeps what it had used at its last sample.  Nothing here is timed: the
benchmark samples about once a second.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MIN_SAMPLE_S = 0.9


@dataclass(frozen=True, slots=True)
class ProcStat:
    """One process, from /proc/PID/stat (fields 4, 14, 15, 20, 22 and 24 of proc(5))."""

    pid: int
    ppid: int
    started: int  # clock ticks after boot: with the pid, names the process
    name: str
    cpu_s: float  # utime + stime of all its threads
    threads: int
    rss_kb: int

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.started


def _fields(text: str) -> tuple[str, list[str]]:
    """The command name and the fields after it (the name may hold spaces and ')')."""
    return text[text.index("(") + 1: text.rindex(")")], text[text.rindex(")") + 2:].split()


def read_stat(pid: int) -> ProcStat | None:
    try:
        name, f = _fields(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError):
        return None  # it ended meanwhile
    return ProcStat(pid, int(f[1]), int(f[19]), name, (int(f[11]) + int(f[12])) / CLOCK_TICKS,
                    int(f[17]), int(f[21]) * PAGE_KB)


def main_thread_cpu_s(pid: int) -> float:
    """utime + stime of the thread whose id is the pid: the one that runs the event loop."""
    try:
        _, f = _fields(Path(f"/proc/{pid}/task/{pid}/stat").read_text())
    except (OSError, ValueError):
        return 0.0
    return (int(f[11]) + int(f[12])) / CLOCK_TICKS


def pss_kb(pid: int) -> int:
    """Proportional set size (pages shared between processes counted once in all)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> list[ProcStat]:
    """``root`` and all its descendants (by ppid), root first; empty once root ended."""
    children: dict[int, list[ProcStat]] = {}
    top = None
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is None:
                continue
            if stat.pid == root:
                top = stat
            children.setdefault(stat.ppid, []).append(stat)
    if top is None:
        return []
    out, queue = [], [top]
    while queue:
        proc = queue.pop(0)
        out.append(proc)
        queue.extend(children.get(proc.pid, ()))
    return out


def memory_kb(root: int) -> dict[str, int]:
    """RSS and PSS of the whole tree, summed, and the number of processes."""
    procs = tree(root)
    return {"rss_kb": sum(p.rss_kb for p in procs), "pss_kb": sum(pss_kb(p.pid) for p in procs),
            "processes": len(procs)}


@dataclass
class _Seen:
    first: ProcStat
    last: ProcStat
    cpu0: float  # its CPU at the window's start (0 for a process born during the window)
    loop0: float
    loop: float
    rss_max_kb: int
    cmdline: str
    born: bool  # it appeared during the window
    ended: bool = False


@dataclass
class TreeWindow:
    """CPU (and RSS) of every process of the tree over one window, summed and per process."""

    root: int
    seen: dict[tuple[int, int], _Seen] = field(default_factory=dict)
    rss_series_kb: list[int] = field(default_factory=list)
    per_second_cpu: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.seen.clear()
        self._t0 = time.monotonic()
        self._read(at_start=True)
        self._last = (self._t0, self.cpu_s())

    def _read(self, at_start: bool = False) -> None:
        current = tree(self.root)
        keys = {p.key for p in current}
        for key, known in self.seen.items():
            known.ended = key not in keys
        for proc in current:
            loop = main_thread_cpu_s(proc.pid)
            seen = self.seen.get(proc.key)
            if seen is None:
                cmd = _cmdline(proc.pid)
                self.seen[proc.key] = _Seen(proc, proc, proc.cpu_s if at_start else 0.0,
                                            loop if at_start else 0.0, loop, proc.rss_kb, cmd,
                                            born=not at_start)
            else:
                seen.last, seen.loop = proc, loop
                seen.rss_max_kb = max(seen.rss_max_kb, proc.rss_kb)
        if current:
            self.rss_series_kb.append(sum(p.rss_kb for p in current))

    def sample(self) -> None:
        """Re-read the tree; adds a CPU-share sample when MIN_SAMPLE_S or more have passed
        since the last one (CPU time comes in clock ticks: shorter spans are noise)."""
        self._read()
        now, cpu = time.monotonic(), self.cpu_s()
        if now - self._last[0] >= MIN_SAMPLE_S:
            self.per_second_cpu.append((cpu - self._last[1]) / (now - self._last[0]))
            self._last = (now, cpu)

    def cpu_s(self) -> float:
        return sum(s.last.cpu_s - s.cpu0 for s in self.seen.values())

    def loop_cpu_s(self) -> float:
        """The main threads of all the processes (each runs one event loop)."""
        return sum(s.loop - s.loop0 for s in self.seen.values())

    def processes(self) -> int:
        return sum(not s.ended for s in self.seen.values())

    def rows(self, wall_s: float) -> list[dict[str, Any]]:
        """One row per process seen in the window."""
        return [{"pid": s.last.pid, "ppid": s.last.ppid, "name": s.last.name,
                 "cmdline": s.cmdline, "threads": s.last.threads,
                 "cpu_s": round(s.last.cpu_s - s.cpu0, 3),
                 "core_pct": round(100 * (s.last.cpu_s - s.cpu0) / max(wall_s, 1e-9), 1),
                 "loop_thread_cpu_s": round(s.loop - s.loop0, 3),
                 "rss_kb_first": s.first.rss_kb, "rss_kb_last": s.last.rss_kb,
                 "rss_kb_max": s.rss_max_kb, "born_in_window": s.born,
                 "ended_in_window": s.ended}
                for s in self.seen.values()]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:200]
