"""The RTP port pool (pure; time passed in).

Each recording session takes a block of even ports P, P+2, … from the configured range, one
per m-line (RFC 3550 §11: RTP on an even port, RTCP on the next odd one, which stays free).
Blocks keep a multi-stream session's ports together, which is also what tools that replay a
capture by port offset expect.  Released ports rest for a cool-down before reuse, so late
packets of a finished call never land in a new one.

A block starts at a random free place in the range: the ports of a call cannot be guessed
from those of the previous one, so a third party that wants to send into a call must first
find its port among the whole range (the reasoning of RFC 6056 for ephemeral ports).  When
random probes find no free block (a nearly full pool), the first free block after a random
start is taken.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections import deque

from srs.errors import ServiceUnavailable, UsageError

__all__ = ["PortPool", "COOLDOWN_S"]

COOLDOWN_S = 10.0
# Random starts tried before the scan from a random start (bounded work per allocation).
RANDOM_PROBES = 16


class PortPool:
    def __init__(self, port_min: int, port_max: int, *, cooldown_s: float = COOLDOWN_S,
                 rng: random.Random | None = None) -> None:
        """``rng`` chooses where blocks start: the system's randomness unless a test gives
        a seeded one."""
        if port_min % 2 or port_max < port_min:
            raise UsageError(f"bad RTP port range {port_min}-{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self.cooldown_s = cooldown_s
        self._rng = rng if rng is not None else secrets.SystemRandom()
        self._free = [True] * ((port_max - port_min) // 2 + 1)
        self._cooling: deque[tuple[float, int]] = deque()
        self.in_use = 0

    @property
    def capacity(self) -> int:
        return len(self._free)

    def available(self, now: float) -> int:
        self._reclaim(now)
        return sum(self._free)

    def allocate(self, count: int, now: float, *, skip: frozenset[int] = frozenset()) -> list[int]:
        """Return ``count`` consecutive even ports (P, P+2, …), or raise 503 when none.

        ``skip`` names ports the caller found unusable (bound by another process).
        """
        if count < 1:
            raise UsageError("allocate needs count >= 1")
        self._reclaim(now)
        starts = len(self._free) - count + 1  # where a block of ``count`` fits
        if starts > 0:
            rng = self._rng
            probes = (rng.randrange(starts) for _ in range(RANDOM_PROBES))
            first = rng.randrange(starts)
            scan = ((first + step) % starts for step in range(starts))
            for start in itertools.chain(probes, scan):
                block = range(start, start + count)
                if all(self._free[i] and self._port(i) not in skip for i in block):
                    for i in block:
                        self._free[i] = False
                    self.in_use += count
                    return [self._port(i) for i in block]
        raise ServiceUnavailable("Service Unavailable: RTP ports exhausted", retry_after_s=10)

    def allocate_near(self, after: int, now: float, *, skip: frozenset[int] = frozenset()) -> int:
        """One more port for a session that grows: ``after + 2`` when free, else any."""
        self._reclaim(now)
        index = self._index(after + 2) if self.port_min <= after + 2 <= self.port_max else None
        if index is not None and self._free[index] and (after + 2) not in skip:
            self._free[index] = False
            self.in_use += 1
            return after + 2
        return self.allocate(1, now, skip=skip)[0]

    def release(self, ports: list[int], now: float) -> None:
        for port in ports:
            index = self._index(port)
            if self._free[index]:
                raise UsageError(f"port {port} released twice")
            self._cooling.append((now + self.cooldown_s, index))
            self.in_use -= 1

    def _reclaim(self, now: float) -> None:
        while self._cooling and self._cooling[0][0] <= now:
            self._free[self._cooling.popleft()[1]] = True

    def _port(self, index: int) -> int:
        return self.port_min + 2 * index

    def _index(self, port: int) -> int:
        if port % 2 or not self.port_min <= port <= self.port_max:
            raise UsageError(f"port {port} is not in the pool")
        return (port - self.port_min) // 2
