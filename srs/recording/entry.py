"""What the recording core holds for one session, and the shape of its operations.

:class:`SessionEntry` is the core's record of a session: its lifecycle state, the SIP
transaction being answered, its ports, files and queued operations.  An
:data:`Operation` is a generator that yields the requests the driver serves (ports to
bind, file jobs) and gets each result back; the core runs a session's operations one at a
time (docs/architecture.md, "Pure core").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from srs.errors import CallDoesNotExist, PeerError, UsageError
from srs.recording import jobs
from srs.recording import sidecar as sc
from srs.recording.capture import CAPTURE_FILE, CaptureRecord, SessionCapture, collect
from srs.recording.layout import SessionLayout
from srs.recording.output import StreamOutput
from srs.recording.outputs import Answer, Drain, OpenPorts, WaitLive
from srs.recording.policy import Lifecycle
from srs.recording.session import RecordingSession
from srs.recording.stream import OutputReport
from srs.sip.dialog import DialogId
from srs.sip.events import Answerable, Local

__all__ = ["Operation", "SessionEntry", "bind", "gone", "is_recording"]


Operation = Generator[OpenPorts | Drain | Answer | WaitLive | jobs.FileJob, Any, None]


@dataclass(eq=False)
class SessionEntry:
    """One recording session and what the core holds for it."""

    local: Local
    context: dict[str, str]
    state: Lifecycle = Lifecycle.SETTING_UP
    session: RecordingSession | None = None  # once its INVITE is parsed
    session_dir: SessionLayout | None = None  # once its directory exists
    dialog_id: DialogId | None = None
    answering: Answerable | None = None  # the request the current operation answers
    ports: list[int] = field(default_factory=list)
    outputs: dict[str, StreamOutput] = field(default_factory=dict)  # by stream stem
    reports: dict[str, OutputReport] = field(default_factory=dict)
    capture: SessionCapture | None = None
    ops: deque[Callable[[], Operation]] = field(default_factory=deque)
    current: Operation | None = None
    ticks: int = 0
    tick_queued: bool = False
    stepping: bool = False  # its operations are being run (no re-entry)
    end_reason: sc.EndReason | None = None  # once ENDING
    next_tick_s: float | None = None
    tick_index: int = 0  # ticks fall on origin + n * TICK_S
    end_after_setup: sc.EndReason | None = None

    @property
    def recording(self) -> RecordingSession:
        """The session's files and streams; a bug to ask before its directory exists."""
        if self.session is None:
            raise UsageError("the session has no recording yet")
        return self.session

    def add_outputs(self, opened: Mapping[str, StreamOutput]) -> None:
        """WAV files a job opened, and their first reports for the sidecar."""
        self.outputs.update(opened)
        self.reports.update((stem, OutputReport(output.path.name))
                            for stem, output in opened.items())

    def place(self, made: jobs.SessionFiles) -> None:
        """What a set-up's file job made: the directory (the capture's file goes there)
        and the WAVs it opened, also when it stopped part way."""
        self.session_dir = made.layout
        self.add_outputs(made.outputs)
        if made.layout is not None and self.capture is not None:
            self.capture.path = made.layout.directory / CAPTURE_FILE

    def take_capture(self) -> list[CaptureRecord]:
        """The capture records collected since the last take (none when not captured)."""
        if self.capture is None or self.session is None:
            return []
        return collect(self.capture, self.session)

    @property
    def layout(self) -> SessionLayout:
        if self.session_dir is None:
            raise UsageError("the session has no directory yet")
        return self.session_dir


def is_recording(s: SessionEntry) -> bool:
    """Read afresh after a yield: the state is not what it was before the job ran."""
    return s.state is Lifecycle.RECORDING


def gone() -> PeerError:
    return CallDoesNotExist("Call/Transaction Does Not Exist")


def bind(op: Callable[[SessionEntry], Operation], s: SessionEntry) -> Callable[[], Operation]:
    return lambda: op(s)
