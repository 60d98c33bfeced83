"""Many calls from one process (asyncio): paced starts, bounded concurrency, progress.

:func:`run_calls` starts call ``i`` at ``i / rate`` seconds (never earlier), with at most
``concurrency`` calls active at once (a call waiting for a free slot starts as soon as one
frees, so the rate is an upper bound), and returns every result in call order.  Each call
runs in a task of one TaskGroup; a bug in one surfaces with its traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from srs.client.call import CallPlan, CallResult, place_call
from srs.errors import UsageError

__all__ = ["Progress", "run_calls"]


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts at one moment of a run."""

    total: int
    done: int
    failed: int
    active: int

    def __str__(self) -> str:
        return (f"calls {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.active} active")


async def run_calls(
    plan: CallPlan,
    *,
    calls: int,
    rate_per_s: float,
    concurrency: int,
    say: Callable[[int, str], None],
    progress: Callable[[Progress], None] | None = None,
) -> list[CallResult]:
    """Run ``calls`` calls; ``say(number, line)`` gets each call's steps."""
    if calls < 1 or rate_per_s <= 0 or concurrency < 1:
        raise UsageError("calls, rate and concurrency must be positive")
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    results: list[CallResult | None] = [None] * calls
    active = done = failed = 0

    def report() -> None:
        if progress is not None:
            progress(Progress(calls, done, failed, active))

    async def one(number: int) -> None:
        nonlocal active, done, failed
        try:
            active += 1
            report()
            result = await place_call(plan, number, lambda line: say(number, line))
            results[number - 1] = result
            done += 1
            failed += 0 if result.ok else 1
        finally:
            active -= 1
            slots.release()
            report()

    start = loop.time()
    async with asyncio.TaskGroup() as group:
        for index in range(calls):
            await asyncio.sleep(max(0.0, start + index / rate_per_s - loop.time()))
            await slots.acquire()
            group.create_task(one(index + 1), name=f"srs-call-{index + 1}")
    return [r for r in results if r is not None]
