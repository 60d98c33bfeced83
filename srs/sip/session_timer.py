"""RFC 4028 session timers at the UAS, sans-IO.

srs never refreshes a session itself: it runs the timer only when the recording client
supports it, and always names the client the refresher (``refresher=uac``, §9).  Each
2xx to the INVITE and to every refresh (re-INVITE or UPDATE) starts the session interval
again (§10); when no refresh has come by the interval's end less ``min(32, interval/3)``
seconds, srs ends the session with a BYE (§10: "the side not performing refreshes ...
SHOULD send a BYE ... slightly before the session expiration").

:class:`SessionTimers` keeps one deadline per dialog in a :class:`TimerHeap`; the UAS
core (``sip/uas.py``) arms it from its answers and ends the dialogs it hands back.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from srs.errors import SessionIntervalTooSmall, UsageError
from srs.sip.message import SipRequest
from srs.sip.timers import TimerHeap

__all__ = ["MIN_SE_S", "SessionTimers", "check_session_interval", "enforced_interval_s",
           "session_interval_s", "session_timer_headers"]

# RFC 4028 §4: the smallest session interval srs accepts unless configured otherwise
# (90 s is the least the RFC allows an implementation to ask for).
MIN_SE_S = 90
# RFC 4028 §10: the BYE goes out this long before expiry at most.
BYE_AHEAD_MAX_S = 32.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def session_interval_s(request: SipRequest) -> int | None:
    """The delta-seconds of ``Session-Expires`` (RFC 4028 §4), or None."""
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    try:
        interval = int(value.split(";", 1)[0].strip())
    except ValueError:
        return None  # unreadable: treated as absent (RFC 4028 §9 needs only delta-seconds)
    return interval if interval > 0 else None


def enforced_interval_s(request: SipRequest) -> int | None:
    """The interval srs ends the session after when no refresh comes, or None.

    A client that asked for ``refresher=uas`` does not expect to refresh; srs answers
    ``refresher=uac`` as it never refreshes itself, but does not end such a session at
    expiry: a client that read the answer its own way would lose its recording."""
    value = request.headers.get("Session-Expires") or ""
    params = [p.strip().lower().replace(" ", "") for p in value.split(";")[1:]]
    return None if "refresher=uas" in params else session_interval_s(request)


def check_session_interval(request: SipRequest, min_se_s: int) -> None:
    """RFC 4028 §8.1: an interval below our Min-SE is answered 422 with Min-SE."""
    interval = session_interval_s(request)
    if interval is not None and interval < min_se_s:
        raise SessionIntervalTooSmall(min_se_s)


def session_timer_headers(request: SipRequest) -> list[tuple[str, str]]:
    """The 2xx's session timer (RFC 4028 §9): ``refresher=uac`` with ``Require: timer``
    when the client supports the extension.  Without ``Supported: timer`` at the client,
    no Session-Expires is answered: no one would refresh it."""
    interval = session_interval_s(request)
    if interval is None or "timer" not in (tag.lower() for tag in request.supported):
        return []
    return [("Session-Expires", f"{interval};refresher=uac"), ("Require", "timer")]


def bye_at(answered_at: float, interval_s: int) -> float:
    """RFC 4028 §10: expiry less the minimum of 32 s and a third of the interval."""
    return answered_at + interval_s - min(BYE_AHEAD_MAX_S, interval_s / 3)


class SessionTimers(Generic[K, V]):
    """The session timer of each dialog: its BYE deadline and what ending it needs."""

    def __init__(self, min_se_s: int = MIN_SE_S) -> None:
        if not 0 < min_se_s <= 86400:
            raise UsageError("min_se_s must be between 1 and 86400")
        self.min_se_s = min_se_s
        self._due: dict[K, tuple[float, V]] = {}
        self._heap: TimerHeap[K] = TimerHeap(self._is_current)

    def __len__(self) -> int:
        return len(self._due)

    def answered(self, key: K, interval_s: int | None, now: float, value: V) -> None:
        """A 2xx to the INVITE or to a refresh of ``key`` went out at ``now`` with a session
        interval of ``interval_s``: restart it; None (the answer carries no Session-Expires)
        stops the timer (RFC 4028 §9: each refresh negotiates it anew)."""
        if interval_s is None:
            self.cancel(key)
            return
        deadline = bye_at(now, interval_s)
        self._due[key] = (deadline, value)
        self._heap.push(key, deadline)

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)

    def next_timer(self) -> float | None:
        return self._heap.next_timer()

    def expired(self, now: float) -> list[tuple[K, V]]:
        """Each dialog whose refresh is due and missing, forgotten as it is returned."""
        due = [key for key, _ in self._heap.pop_due(now)]
        return [(key, self._due.pop(key)[1]) for key in due]

    def _is_current(self, key: K, deadline: float) -> bool:
        entry = self._due.get(key)
        return entry is not None and entry[0] == deadline
