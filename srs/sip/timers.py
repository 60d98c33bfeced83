"""What every SIP transaction's timing rests on (RFC 3261 §17), and the one timer heap.

* :data:`T1`, :data:`T2`, :data:`T4` and :class:`SipTimers`: the base values of RFC 3261
  §17 Table 4, from which each transaction timer (A to M) is derived, injectable so that
  tests run the real schedules at tiny scale.
* :class:`Kind` and :class:`SourceLike`: the two facts that pick a transaction's timers:
  INVITE or not (RFC 3261 §17.1/§17.2 draw separate machines), and whether the transport
  is reliable (only unreliable transports retransmit, and Timers D, I, J and K are zero on
  reliable ones).
* :class:`TimerHeap`: a lazy-deletion min-heap of ``(deadline, key)``.  Server and client
  transactions each keep one, so that an owner of any number of transactions answers
  ``next_timer()`` / ``handle_timer(now)`` with one shell timer.

Pure: no clock is read here; deadlines are whatever ``now`` the caller passed plus a
duration.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from srs.errors import UsageError

__all__ = ["T1", "T2", "T4", "TIMER_D_MIN_S", "Kind", "SipTimers", "SourceLike", "TimerHeap"]

# RFC 3261 §17 Table 4 (and Appendix A), in seconds.
T1 = 0.5  # RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message stays in the network
# RFC 3261 §17.1.1.2: Timer D (wait for response retransmits) is not derived from T1: it
# MUST be at least 32 s on unreliable transports.
TIMER_D_MIN_S = 32.0


@dataclass(frozen=True, slots=True)
class SipTimers:
    """The base values of RFC 3261 §17 Table 4; every transaction timer derives from them.

    ``timer_d_s`` is Timer D on unreliable transports (RFC 3261 §17.1.1.2), the one value
    Table 4 gives as a floor rather than a multiple of T1.  Production keeps the defaults;
    tests shrink all four together.
    """

    t1_s: float = T1
    t2_s: float = T2
    t4_s: float = T4
    timer_d_s: float = TIMER_D_MIN_S

    def __post_init__(self) -> None:
        if not 0 < self.t1_s <= self.t2_s or self.t4_s <= 0 or self.timer_d_s <= 0:
            raise UsageError("SipTimers need 0 < t1_s <= t2_s, t4_s > 0 and timer_d_s > 0")


class Kind(Enum):
    INVITE = "INVITE"
    NON_INVITE = "non-INVITE"

    @classmethod
    def of(cls, method: str) -> Kind:
        """RFC 3261 §17: INVITE has its own machines; every other method shares one."""
        return cls.INVITE if method == "INVITE" else cls.NON_INVITE


class SourceLike(Protocol):
    """What a transaction needs of the transport's address value: whether it is reliable."""

    @property
    def reliable(self) -> bool: ...


K = TypeVar("K")


class TimerHeap(Generic[K]):
    """A min-heap of ``(deadline, key)`` with lazy deletion.

    The owner keeps the truth (which deadline each key has now) and answers it through
    ``is_current(key, deadline)``.  Re-arming a key is pushing it again and cancelling it
    is forgetting it in the owner: the superseded entries are dropped when they reach the
    top, so no operation searches the heap.  Entries with equal deadlines come out in the
    order they were pushed.
    """

    __slots__ = ("_entries", "_is_current", "_sequence")

    def __init__(self, is_current: Callable[[K, float], bool]) -> None:
        self._entries: list[tuple[float, int, K]] = []
        self._is_current = is_current
        self._sequence = itertools.count()

    def push(self, key: K, deadline: float) -> None:
        heapq.heappush(self._entries, (deadline, next(self._sequence), key))

    def next_timer(self) -> float | None:
        """The earliest current deadline, or None; stale entries on top are dropped."""
        entries = self._entries
        while entries:
            deadline, _, key = entries[0]
            if self._is_current(key, deadline):
                return deadline
            heapq.heappop(entries)
        return None

    def pop_due(self, now: float) -> Iterator[tuple[K, float]]:
        """Pop and yield each current entry due at or before ``now``, earliest first.

        Currency is checked as each entry is popped, so handling one key may cancel another
        that is due at the same time; entries pushed meanwhile are yielded when due.
        """
        entries = self._entries
        while entries and entries[0][0] <= now:
            deadline, _, key = heapq.heappop(entries)
            if self._is_current(key, deadline):
                yield key, deadline
