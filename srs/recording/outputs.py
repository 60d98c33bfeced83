"""What the recording core hands its driver (see :mod:`srs.recording.core`).

Besides the SIP core's own outputs (``Transmit`` …), which the driver executes as the SIP
shell does: :class:`Request` (work whose result goes back through
``Recorder.complete``), media routing (:class:`Attach`, :class:`Release`), and events for
the log, the metrics and the completion webhook.  Frozen values; no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srs.recording import jobs
from srs.recording import sidecar as sc
from srs.recording.stream import StreamState
from srs.rtp.track import TrackStats
from srs.sip.uas import Output as SipOutput

__all__ = [
    "Attach",
    "Finished",
    "Log",
    "OpenPorts",
    "Rejected",
    "Release",
    "Request",
    "Started",
    "Output",
    "RecorderOutput",
]


@dataclass(frozen=True, slots=True)
class OpenPorts:
    """Bind ``count`` RTP ports (after ``near`` when the session has ports)."""

    count: int
    near: int | None


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """Work for the driver; answer with ``Recorder.complete(id, result, error, now)``."""

    id: int
    work: OpenPorts | jobs.FileJob


@dataclass(frozen=True, slots=True, eq=False)
class Attach:
    """Deliver what arrives on ``port`` to ``stream`` from now on."""

    port: int
    stream: StreamState


@dataclass(frozen=True, slots=True)
class Release:
    """Stop receiving on ``ports`` and give them back."""

    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Log:
    """A log event: ``level`` is ``info``, ``warning`` or ``error``; ``error`` carries the
    exception of a bug (log its traceback).  ``context`` names the session."""

    level: str
    event: str
    context: dict[str, str]
    fields: dict[str, Any]
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dialog-creating INVITE was refused: ``reason`` is the metrics label."""

    reason: str  # "draining", "limit", "storage", "ports"


@dataclass(frozen=True, slots=True)
class Started:
    directory: str


@dataclass(frozen=True, slots=True, eq=False)
class Finished:
    """A session that was answered is done; its directory is final."""

    status: sc.SessionStatus
    directory: str
    streams: tuple[TrackStats, ...]


# What the recorder hands its driver: its own requests and notices, and the SIP core's
# outputs it produced while answering (answers, rejections, BYEs), in order.
RecorderOutput = Request | Attach | Release | Log | Rejected | Started | Finished
Output = RecorderOutput | SipOutput
