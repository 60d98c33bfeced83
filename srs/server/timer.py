"""One event-loop timer for a sans-IO core (docs/architecture.md, "Pure core").

A pure core says when it next needs to run (``next_timer()``) and does its timed work in
``handle_timer(now)``; :class:`CoreTimer` keeps exactly one ``call_at`` handle at that
deadline, re-armed by the shell after every input it feeds the core, and after every
firing whatever the timed work raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["CoreTimer"]


class CoreTimer:
    def __init__(self, next_timer: Callable[[], float | None], fire: Callable[[], None]) -> None:
        """``next_timer`` is the core's deadline on the loop's clock; ``fire`` runs the
        core's timed work (and re-arms, as after any input)."""
        self._next_timer = next_timer
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self) -> None:
        """Follow the core's deadline: one handle at it, or none."""
        deadline = self._next_timer()
        if deadline == self._at:
            return
        self.cancel()
        self._at = deadline
        if deadline is not None:
            self._handle = asyncio.get_running_loop().call_at(deadline, self._fired)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None

    def _fired(self) -> None:
        self._handle = None
        self._at = None
        try:
            self._fire()
        finally:
            # Whatever the timed work raised, the core's next deadline stays armed: one
            # failed batch must not stall every later retransmission and timeout.
            self.arm()
