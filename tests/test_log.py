"""srs.log: the rate limiter of flood warnings and the redaction of secrets."""

from __future__ import annotations

import io
import json
import sys

from srs.log import RateLimiter, configure_logging, get_logger


def test_rate_limiter_passes_a_burst_then_counts_what_it_suppressed() -> None:
    limiter = RateLimiter(period_s=10.0, burst=2)
    seen = [limiter.allow("parse", now=t) for t in (0.0, 1.0, 2.0, 3.0, 4.0, 11.0, 12.0)]
    assert seen == [(True, 0), (True, 0), (False, 0), (False, 0), (False, 0), (True, 3), (True, 0)]


def test_rate_limiter_keys_are_independent_and_bounded() -> None:
    limiter = RateLimiter(period_s=10.0, burst=1, max_keys=2)
    assert limiter.allow(("refused", "a"), now=0.0) == (True, 0)
    assert limiter.allow(("refused", "b"), now=0.0) == (True, 0)
    assert limiter.allow(("refused", "a"), now=1.0) == (False, 0)
    # A third key forgets every window rather than grow without bound.
    assert limiter.allow(("refused", "c"), now=1.0) == (True, 0)
    assert limiter.allow(("refused", "a"), now=2.0) == (True, 0)


def test_secret_keys_are_redacted() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        get_logger(call_id="c1").info("auth", token="t0ps3cret", master_key="k", user="u")
    finally:
        configure_logging("debug", "console", stream=sys.stderr)  # as conftest leaves it
    event = json.loads(out.getvalue())
    assert event["token"] == event["master_key"] == "<redacted>"
    assert event["user"] == "u"
    assert event["call_id"] == "c1"
