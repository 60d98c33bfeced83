"""What the recording core hands its driver (see :mod:`srs.recording.core`).

:class:`Request` (work whose result goes back through ``Recorder.complete``, the answer to
a SIP request among it: :class:`Answer`), what to say to the SIP core (:class:`Reject`,
:class:`Fail`, :class:`HangUp`), media routing (:class:`Attach`, :class:`Release`), and
events for the log, the metrics and the completion webhook.  The recording core never
holds the SIP core: its driver executes these against the one it has (in a media worker,
over the control channel, srs.server.control).  Frozen values; no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srs.errors import PeerError
from srs.recording import jobs
from srs.recording import sidecar as sc
from srs.recording.session import RecordingSession
from srs.recording.stream import StreamState
from srs.rtp.track import TrackStats
from srs.sip.dialog import DialogId
from srs.sip.events import Answerable, Local

__all__ = [
    "Answer",
    "Attach",
    "Drain",
    "Fail",
    "HangUp",
    "Reject",
    "Finished",
    "EndLive",
    "Log",
    "OpenPorts",
    "Rejected",
    "Release",
    "Request",
    "Started",
    "StartLive",
    "WaitLive",
    "Output",
    "RecorderOutput",
]


@dataclass(frozen=True, slots=True)
class OpenPorts:
    """Bind ``count`` RTP ports (after ``near`` when the session has ports)."""

    count: int
    near: int | None


@dataclass(frozen=True, slots=True)
class Drain:
    """Deliver what is already queued on ``ports`` to their streams now (before the
    session's last write: the packet in flight at the BYE is recorded)."""

    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Answer:
    """Answer ``pending`` with ``status`` (``SipCore.answer``); the result is the dialog a
    2xx to a dialog-creating INVITE made, or None (the transaction is gone: cancelled,
    timed out, or its media worker's request was already answered).  ``directory`` is the
    session directory the answer to a dialog-creating INVITE starts (its sidecar says
    ``recording`` from then on), None for a re-INVITE or UPDATE."""

    pending: Answerable
    status: int
    local: Local
    body: bytes
    content_type: str | None
    directory: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class WaitLive:
    """Complete when the session's live streams have sent their last (or given up): the
    final sidecar then counts what reached each consumer.  The result is unused."""

    session: RecordingSession


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """Work for the driver; answer with ``Recorder.complete(id, result, error, now)``."""

    id: int
    work: OpenPorts | Drain | Answer | WaitLive | jobs.FileJob


@dataclass(frozen=True, slots=True, eq=False)
class Reject:
    """Answer ``pending`` with ``error``'s status (``SipCore.reject``)."""

    pending: Answerable
    error: PeerError


@dataclass(frozen=True, slots=True, eq=False)
class Fail:
    """Answer ``pending`` with 500: srs's own fault (``SipCore.fail``)."""

    pending: Answerable


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the dialog from our side with a BYE (``SipCore.hang_up``)."""

    dialog_id: DialogId
    at: float
    local: Local


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
    dialog_id: DialogId | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Finished:
    """A session that was answered is done; its directory is final."""

    status: sc.SessionStatus
    directory: str
    streams: tuple[TrackStats, ...]
    dialog_id: DialogId | None = None


@dataclass(frozen=True, slots=True, eq=False)
class StartLive:
    """Stream ``session`` live (``stream.url``), from now until :class:`EndLive`."""

    session: RecordingSession


@dataclass(frozen=True, slots=True, eq=False)
class EndLive:
    """The session's media is over at ``at`` (its last placed payloads were taken): send
    the rest, every track up to ``at``, and ``stop``."""

    session: RecordingSession
    at: float


# What the recorder hands its driver, in order.  StartLive, EndLive and WaitLive stay in
# the process that owns the session's streams (a media worker's): they never cross the
# control channel.
Output = (Request | Reject | Fail | HangUp | Attach | Release | Log | Rejected | Started
          | Finished | StartLive | EndLive)
RecorderOutput = Output
