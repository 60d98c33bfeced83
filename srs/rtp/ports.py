"""The RTP port pool (pure; time passed in).

Each recording session takes a block of even ports P, P+2, … from the configured range, one
per m-line (RFC 3550 §11: RTP on an even port, RTCP on the next odd one, which stays free).
Blocks keep a multi-stream session's ports together, which is also what tools that replay a
capture by port offset expect.  Released ports rest for a cool-down before reuse, so late
packets of a finished call never land in a new one.  Allocation walks the range round-robin
from where the last one ended, spreading reuse.
"""

from __future__ import annotations

from collections import deque

from srs.errors import ServiceUnavailable, UsageError

__all__ = ["PortPool", "COOLDOWN_S"]

COOLDOWN_S = 10.0


class PortPool:
    def __init__(self, port_min: int, port_max: int, *, cooldown_s: float = COOLDOWN_S) -> None:
        if port_min % 2 or port_max < port_min:
            raise UsageError(f"bad RTP port range {port_min}-{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self.cooldown_s = cooldown_s
        self._free = [True] * ((port_max - port_min) // 2 + 1)
        self._cooling: deque[tuple[float, int]] = deque()
        self._cursor = 0
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
        slots = len(self._free)
        for step in range(slots):
            start = (self._cursor + step) % slots
            if start + count > slots:
                continue
            block = range(start, start + count)
            if all(self._free[i] for i in block) and not any(
                self._port(i) in skip for i in block
            ):
                for i in block:
                    self._free[i] = False
                self.in_use += count
                self._cursor = (start + count) % slots
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
