"""RFC 3550 §A.8 interarrival jitter, with values worked by hand."""

from __future__ import annotations

import pytest

from srs.errors import UsageError
from srs.rtp.stats import JitterEstimator, SsrcJitter


def test_jitter_golden() -> None:
    # 1000 Hz clock; binary-exact times.  D(1,2) = 0, D(2,3) = 750 - 500 = 250,
    # D(3,4) = 500 - 500 = 0.  J: 0 -> 0 -> 250/16 = 15.625 -> 15.625 * 15/16 = 14.6484375.
    estimator = JitterEstimator(1000)
    for arrival_s, timestamp in [(0.0, 0), (0.5, 500), (1.25, 1000), (1.75, 1500)]:
        estimator.update(arrival_s, timestamp)
    assert estimator.jitter_ts_units == 14.6484375
    assert estimator.jitter_ms == 14.6484375
    assert estimator.packets == 4


def test_jitter_in_ms_scales_by_the_clock_rate() -> None:
    estimator = JitterEstimator(8000)
    estimator.update(0.0, 0)
    estimator.update(0.03125, 160)  # 250 units after 160: D = 90
    assert estimator.jitter_ts_units == 90 / 16
    assert estimator.jitter_ms == pytest.approx(90 / 16 / 8)


def test_negative_transit_difference_counts_by_magnitude() -> None:
    estimator = JitterEstimator(1000)
    estimator.update(0.5, 0)
    estimator.update(0.75, 500)  # arrived 250 units early: D = -250
    assert estimator.jitter_ts_units == 15.625


def test_timestamp_wrap_is_no_jump() -> None:
    estimator = JitterEstimator(1000)
    estimator.update(0.0, 2**32 - 250)
    estimator.update(0.5, 250)  # 500 units later across the wrap
    assert (estimator.jitter_ts_units, estimator.discontinuities) == (0.0, 0)


def test_discontinuity_is_skipped_and_restarts_the_reference() -> None:
    estimator = JitterEstimator(1000, discontinuity_s=1.0)
    estimator.update(0.0, 0)
    estimator.update(0.5, 123_456)  # timestamp restart
    estimator.update(1.0, 123_956)
    assert (estimator.jitter_ts_units, estimator.discontinuities) == (0.0, 1)


def test_bad_clock_rate() -> None:
    with pytest.raises(UsageError):
        JitterEstimator(0)


def test_per_ssrc_and_bounded() -> None:
    jitter = SsrcJitter(1000, max_ssrcs=2)
    for ssrc in (7, 8, 9):
        jitter.update(ssrc, 0.0, 0)
        jitter.update(ssrc, 0.5, 250)
    assert dict(jitter.jitter_ms()) == {7: 15.625, 8: 15.625}
    assert jitter.estimator(9) is None
