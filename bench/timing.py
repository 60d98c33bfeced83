"""Shared by the bench scripts (run as ``python bench/<name>.py``, so this directory is on
``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["best_of"]


def best_of(rounds: int, work: Callable[[], object]) -> float:
    """The shortest of ``rounds`` runs of ``work``, in seconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
