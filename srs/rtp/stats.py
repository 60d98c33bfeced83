"""Interarrival jitter (RFC 3550 §6.4.1, §A.8), per SSRC.

Pure: arrival times come in as seconds (``arrival_s``), RTP timestamps as received.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from srs.errors import UsageError

__all__ = ["JitterEstimator", "SsrcJitter"]


class JitterEstimator:
    """RFC 3550 §A.8 interarrival jitter of one SSRC.

    For consecutive packets i, j (in arrival order)
    ``D(i,j) = (Rj - Ri) - (Sj - Si)`` in timestamp units and
    ``J += (|D| - J) / 16`` (RFC 3550 §6.4.1).  ``Rj - Ri`` is the arrival-time difference
    times the clock rate; ``Sj - Si`` is the timestamp difference taken modulo 2**32 as a
    signed number, so a timestamp wrap is no jump.

    A difference larger than ``discontinuity_s`` is a timeline break (the sender restarted
    its timestamps, or resumed after hold without advancing them), not jitter: the sample is
    skipped and the estimate continues from the new packet.
    """

    __slots__ = (
        "clock_rate_hz",
        "packets",
        "discontinuities",
        "jitter_ts_units",
        "_discontinuity_ts_units",
        "_last_transit",
    )

    def __init__(self, clock_rate_hz: int, *, discontinuity_s: float = 1.0) -> None:
        if clock_rate_hz <= 0:
            raise UsageError(f"clock_rate_hz must be positive, not {clock_rate_hz}")
        self.clock_rate_hz = clock_rate_hz
        self.packets = 0
        self.discontinuities = 0
        self.jitter_ts_units = 0.0
        self._discontinuity_ts_units = discontinuity_s * clock_rate_hz
        self._last_transit: float | None = None

    @property
    def jitter_ms(self) -> float:
        return self.jitter_ts_units * 1000.0 / self.clock_rate_hz

    def update(self, arrival_s: float, rtp_timestamp: int) -> None:
        """Account for one packet (RFC 3550 §A.8), in arrival order."""
        self.packets += 1
        # RFC 3550 §A.8: transit = arrival - timestamp, both in timestamp units.
        transit = arrival_s * self.clock_rate_hz - rtp_timestamp
        last_transit = self._last_transit
        self._last_transit = transit
        if last_transit is None:
            return
        d = transit - last_transit
        if d < 0:
            d = -d
        if d > self._discontinuity_ts_units:
            # A timestamp wrap (RFC 3550 §5.1) moves transit by 2**32: not a jump.
            d = abs(d - 0x1_0000_0000)
            if d > self._discontinuity_ts_units:
                self.discontinuities += 1
                return
        self.jitter_ts_units += (d - self.jitter_ts_units) / 16.0


class SsrcJitter:
    """One :class:`JitterEstimator` per SSRC, for at most ``max_ssrcs`` SSRCs (the rest
    are not measured: a peer choosing a new SSRC per packet must not grow memory)."""

    __slots__ = ("clock_rate_hz", "max_ssrcs", "_discontinuity_s", "_by_ssrc")

    def __init__(
        self, clock_rate_hz: int, *, max_ssrcs: int = 32, discontinuity_s: float = 1.0
    ) -> None:
        self.clock_rate_hz = clock_rate_hz
        self.max_ssrcs = max_ssrcs
        self._discontinuity_s = discontinuity_s
        self._by_ssrc: dict[int, JitterEstimator] = {}

    def estimator(self, ssrc: int) -> JitterEstimator | None:
        """The estimator for ``ssrc``, created on first use; ``None`` past the limit."""
        found = self._by_ssrc.get(ssrc)
        if found is None and len(self._by_ssrc) < self.max_ssrcs:
            found = JitterEstimator(self.clock_rate_hz, discontinuity_s=self._discontinuity_s)
            self._by_ssrc[ssrc] = found
        return found

    def update(self, ssrc: int, arrival_s: float, rtp_timestamp: int) -> None:
        estimator = self.estimator(ssrc)
        if estimator is not None:
            estimator.update(arrival_s, rtp_timestamp)

    def jitter_ms(self) -> Mapping[int, float]:
        """SSRC -> current jitter in milliseconds, in order of first appearance."""
        return MappingProxyType({s: e.jitter_ms for s, e in self._by_ssrc.items()})
