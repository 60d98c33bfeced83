"""What the recording core decides by: its settings, the session lifecycle, the write window.

Pure data and arithmetic (docs/architecture.md, "Pure core"): nothing here reads a clock,
touches a file or logs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from srs import codecs
from srs.config import Settings
from srs.errors import ConfigError, UsageError
from srs.recording import sidecar as sc
from srs.rtp.sources import DEFAULT_POLICY, SourcePolicy
from srs.rtp.srtp import SrtpPolicy
from srs.rtp.track import TrackTimeline

__all__ = [
    "answered_codecs",
    "final_status",
    "SIDECAR_EVERY_TICKS",
    "SILENCE_LAG_S",
    "TICK_S",
    "TRANSITIONS",
    "WRITE_LAG_S",
    "Lifecycle",
    "RecorderConfig",
    "quantize_s",
    "write_window",
]

# Each recording session writes what arrived once per tick.
TICK_S: Final = 1.0
# Audio is written up to this long before now.  Each tick first releases what the reorder
# buffer held longer than its hold time (0.1 s); a released packet is placed by its RTP
# timestamp, which may put it somewhat before its arrival.  So a recording in progress is
# on disk up to about WRITE_LAG_S + TICK_S before now.
WRITE_LAG_S: Final = 0.4
# ... but no further than the audio that has arrived, unless that is more than this far
# behind (hold, silence suppression, a vanished sender: silence is written this late).  An
# overloaded server reads packets late; they are written when read instead of being cut.
# Audio that still lands behind the written part is cut and counted (trimmed_samples).
SILENCE_LAG_S: Final = 3.0
# The sidecar is rewritten with the current counters this often while recording, so a
# crash leaves recent numbers (it is also rewritten, durably, on every signalling change).
# Not more often: at 50-170 us of CPU per rewrite it cost as much as writing the audio
# (bench/bench_tick.py), and repair recomputes every duration from the files anyway.
SIDECAR_EVERY_TICKS: Final = 30


def quantize_s(t: float) -> float:
    """A clock reading rounded to whole microseconds: the resolution of a capture, so a
    replay sees exactly the times the live server used (and a microsecond count times
    8 kHz never falls on a half sample, so every rounding of a position agrees)."""
    return round(t * 1_000_000) / 1_000_000


def write_window(timeline: TrackTimeline, now: float) -> tuple[int, int]:
    """``(horizon, floor)`` for a tick at ``now``, in the timeline's clock units: write up
    to ``horizon``, and past the audio that arrived only up to ``floor``."""
    horizon = max(0, timeline.wall_offset(now - WRITE_LAG_S))
    floor = max(0, timeline.wall_offset(now - SILENCE_LAG_S))
    return horizon, floor


class Lifecycle(enum.Enum):
    """Where a recording session stands."""

    SETTING_UP = "setting up"  # the INVITE is being answered
    RECORDING = "recording"  # answered 2xx: media flows, ticks write
    ENDING = "ending"  # BYE, expiry, shutdown or a failure: the files are being finished
    FINISHED = "finished"  # every file finished and the final sidecar written
    FAILED = "failed"  # storage failed or a bug: what was recorded is kept, marked failed
    DISCARDED = "discarded"  # never answered 2xx (rejected, cancelled): its files removed


# The only moves a session makes; the core checks every one against this table.
TRANSITIONS: Final[dict[Lifecycle, frozenset[Lifecycle]]] = {
    Lifecycle.SETTING_UP: frozenset({Lifecycle.RECORDING, Lifecycle.FAILED, Lifecycle.DISCARDED}),
    Lifecycle.RECORDING: frozenset({Lifecycle.ENDING}),
    Lifecycle.ENDING: frozenset({Lifecycle.FINISHED, Lifecycle.FAILED}),
    Lifecycle.FINISHED: frozenset(),
    Lifecycle.FAILED: frozenset(),
    Lifecycle.DISCARDED: frozenset(),
}


def check_transition(current: Lifecycle, target: Lifecycle) -> None:
    """Raise UsageError (a bug in the core) for a move the table does not allow."""
    if target not in TRANSITIONS[current]:
        raise UsageError(f"session cannot go from {current.value} to {target.value}")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """The settings the recording core reads (a narrow view of :class:`Settings`)."""

    recordings_dir: Path
    max_sessions: int = 100
    capture: bool = False
    credential_header: str = "X-Auth-Token"
    srtp: SrtpPolicy = "allow"
    media_sources: SourcePolicy = DEFAULT_POLICY
    rtp_timeout_s: float = 60.0
    max_session_s: float = 14400.0
    codecs: tuple[str, ...] = ()  # media.codecs, checked against what decodes here
    sample_rate_hz: int = 0  # recordings.sample_rate
    live: bool = False  # stream.url: stream every session live (StartLive, EndLive)

    @classmethod
    def from_settings(cls, settings: Settings) -> RecorderConfig:
        return cls(
            recordings_dir=settings.recordings.dir,
            max_sessions=settings.server.max_sessions,
            capture=settings.recordings.capture,
            credential_header=settings.auth.header,
            srtp=settings.media.srtp,
            media_sources=SourcePolicy.from_names(settings.media.source,
                                                  settings.media.networks()),
            rtp_timeout_s=settings.media.rtp_timeout_s,
            max_session_s=settings.media.max_session_s,
            codecs=_decodable_codecs(settings.media.codecs, warm=True),
            sample_rate_hz=settings.recordings.sample_rate,
            live=bool(settings.stream.url),
        )


def answered_codecs(names: tuple[str, ...]) -> tuple[str, ...]:
    """The codecs srs answers with: ``media.codecs`` (checked), or every one it knows that
    the installed decoders take, as SDP names."""
    have = codecs.available()
    return _decodable_codecs(names) or tuple(n for n in codecs.CODEC_NAMES if n.upper() in have)


def _decodable_codecs(names: tuple[str, ...], *, warm: bool = False) -> tuple[str, ...]:
    """``media.codecs``, each a codec srs knows and the installed decoders take (``warm``:
    probe the decoders now, not on the first offer, even when the list is empty)."""
    if warm:
        codecs.available()
    known = {n.upper(): n for n in codecs.CODEC_NAMES}
    for name in names:
        if name.upper() not in known:
            raise ConfigError("media.codecs", f"unknown codec {name[:40]!r}; known: "
                              + ", ".join(codecs.CODEC_NAMES))
        if name.upper() not in codecs.available():
            raise ConfigError("media.codecs", f"{known[name.upper()]} does not decode with "
                              "the installed FFmpeg (PyAV)")
    return tuple(known[n.upper()] for n in names)


def final_status(reason: sc.EndReason) -> sc.SessionStatus:
    """A session's final status by why it ended."""
    if reason is sc.EndReason.ERROR:
        return sc.SessionStatus.FAILED
    if reason is sc.EndReason.CRASH:
        return sc.SessionStatus.INTERRUPTED
    return sc.SessionStatus.COMPLETE
