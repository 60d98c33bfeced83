"""RFC 4028 session timers at srs: a refresh due and missing ends the session with a BYE
(§10), each 2xx to a refresh starts the interval again, a refresh without Session-Expires
stops the timer, and intervals below Min-SE get 422 (§8.1).  In memory, on the pair's
fake clock (tests/sip/pair.py)."""

from __future__ import annotations

import pytest

from srs.client.uac import ByeReceived
from srs.sip.session_timer import bye_at
from tests.sip.pair import Pair

TIMER = [("Supported", "timer")]


def timed(interval_s: int, **kwargs: object) -> Pair:
    pair = Pair(**kwargs)  # type: ignore[arg-type]
    pair.invite([("Session-Expires", str(interval_s)), *TIMER])
    [ok] = [w.message for w in pair.wire if str(w) == "s>c 200 INVITE"]
    assert ok.headers.get("Session-Expires") == f"{interval_s};refresher=uac"
    assert pair.dialog_id is not None
    return pair


def bye_times(pair: Pair) -> list[float]:
    return [w.at for w in pair.wire if str(w) == "s>c BYE"]


@pytest.mark.parametrize(("interval_s", "bye_s"), [(90, 60.0), (1800, 1768.0)])
def test_a_missing_refresh_ends_the_session_with_a_bye(interval_s: int, bye_s: float) -> None:
    # RFC 4028 §10: the BYE goes out min(32, interval/3) before the interval ends.
    assert bye_at(0.0, interval_s) == bye_s
    pair = timed(interval_s)
    pair.run_until(bye_s - 0.001)
    assert bye_times(pair) == [] and pair.ended() == []
    pair.run_until(bye_s)
    assert bye_times(pair) == [bye_s]
    assert pair.labels()[-2:] == ["s>c BYE", "c>s 200 BYE"]
    assert pair.ended() == ["expired"]
    assert [e for e in pair.client_events if isinstance(e, ByeReceived)]
    assert len(pair.core.dialogs) == 0 and len(pair.core.session_timers) == 0
    pair.settle()
    assert pair.idle() and bye_times(pair) == [bye_s]  # one BYE, answered, done


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_each_refresh_starts_the_interval_again(method: str) -> None:
    pair = timed(90)
    body = b"v=0\r\n" if method == "INVITE" else b""
    pair.run_until(50.0)
    first = pair.request(method, body, "application/sdp" if body else None,
                         headers=[("Session-Expires", "90"), *TIMER])
    pair.run_until(100.0)
    second = pair.request(method, body, "application/sdp" if body else None,
                          headers=[("Session-Expires", "120"), *TIMER])
    assert pair.statuses(first)[-1] == pair.statuses(second)[-1] == 200
    pair.run_until(159.0)  # 60 s after the first refresh, 59 s after the second
    assert bye_times(pair) == []
    pair.settle()
    assert bye_times(pair) == [100.0 + 120 - 32]
    assert pair.ended() == ["expired"] and pair.idle()


def test_a_refresh_without_session_expires_stops_the_timer() -> None:
    # RFC 4028 §9: every refresh negotiates the timer anew; this one asks for none.
    pair = timed(90)
    pair.run_until(50.0)
    reinvite = pair.request("INVITE", b"v=0\r\n", "application/sdp")
    assert pair.statuses(reinvite)[-1] == 200
    pair.settle()
    assert bye_times(pair) == [] and pair.ended() == [] and pair.idle()
    assert len(pair.core.dialogs) == 1


def test_a_refresh_below_min_se_is_422_and_keeps_the_running_interval() -> None:
    pair = timed(90)
    pair.run_until(50.0)
    update = pair.request("UPDATE", headers=[("Session-Expires", "30"), *TIMER])
    assert pair.statuses(update) == [422]
    pair.settle()
    assert bye_times(pair) == [60.0]


def test_the_client_hanging_up_cancels_the_timer() -> None:
    pair = timed(90)
    pair.run_until(10.0)
    pair.request("BYE")
    pair.settle()
    assert bye_times(pair) == [] and pair.ended() == ["bye"] and pair.idle()
    assert len(pair.core.session_timers) == 0


def test_no_timer_runs_when_the_client_does_not_support_it() -> None:
    pair = Pair()
    pair.invite([("Session-Expires", "90")])  # no Supported: timer: no one would refresh
    pair.settle()
    assert bye_times(pair) == [] and pair.ended() == [] and len(pair.core.dialogs) == 1


def test_a_lower_configured_min_se_admits_short_intervals() -> None:
    assert Pair().core.session_timers.min_se_s == 90  # RFC 4028 §4's floor by default
    pair = timed(3, min_se_s=2)
    pair.settle()
    assert bye_times(pair) == [2.0] and pair.ended() == ["expired"]


def test_a_client_that_asked_srs_to_refresh_is_not_cut_at_expiry() -> None:
    """``refresher=uas`` in the request: srs never refreshes and answers ``refresher=uac``,
    but a client that kept to its own request would not refresh either; srs does not end
    that session at expiry (a refresh it does send still works as usual)."""
    pair = Pair()
    pair.invite([("Session-Expires", "90;refresher=uas"), *TIMER])
    [ok] = [w.message for w in pair.wire if str(w) == "s>c 200 INVITE"]
    assert ok.headers.get("Session-Expires") == "90;refresher=uac"
    pair.run_until(200.0)
    assert bye_times(pair) == [] and pair.ended() == []
    assert len(pair.core.dialogs) == 1 and len(pair.core.session_timers) == 0
