"""The control channel between the signalling process and a media worker.

One stream socket pair per worker (``socket.socketpair``, inherited by the worker at its
start): never a network socket, so both ends are srs of the same installation.  Each
message is one frozen value below, sent as a 4-byte big-endian length and its pickle.
Pickle is safe here only because nothing else can write to the pair; a frame over
:data:`MAX_FRAME_BYTES` is a bug and closes the channel.

Signalling process to worker: :class:`Hello` (first), the session events of the SIP core
(:class:`Open`, :class:`Update`, :class:`End`), the answers to its requests
(:class:`Answered`), captured SIP of its sessions (:class:`CaptureSip`) and
:class:`Shutdown`.  Worker to signalling process: :class:`Ready`, what its recording core
says to the SIP core (:class:`AnswerRequest`, :class:`RejectRequest`, :class:`FailRequest`,
:class:`HangUpDialog`), session reports (:class:`Report`), log events (:class:`LogEvent`),
its load once a second (:class:`Load`) and :class:`Idle` after a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from srs.config import Settings
from srs.errors import PeerError, ServiceUnavailable
from srs.recording.capture import CaptureRecord
from srs.recording.outputs import Finished, Rejected, Started
from srs.sip.dialog import DialogId
from srs.sip.events import Local
from srs.sip.message import SipRequest
from srs.sip.transaction import Source

__all__ = [
    "AnswerRequest", "Answered", "CaptureSip", "Channel", "ChannelClosed", "End", "FailRequest",
    "HangUpDialog", "Hello", "Idle", "Load", "LogEvent", "MAX_FRAME_BYTES", "Message", "Open",
    "Ready", "Refusal", "RejectRequest", "Report", "Shutdown", "Update",
]

MAX_FRAME_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct("!I")


# -- signalling process to worker ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    """The worker's configuration: its index, its slice of the RTP ports, the clock."""

    index: int
    settings: Settings
    port_min: int
    port_max: int
    epoch_offset_s: float


@dataclass(frozen=True, slots=True)
class Open:
    """A new recording session: the dialog-creating INVITE (``token`` names it)."""

    token: int
    request: SipRequest
    peer: Source
    local: Local
    media_address: str
    received_at: float


@dataclass(frozen=True, slots=True)
class Update:
    """A re-INVITE or UPDATE of one of the worker's sessions."""

    token: int
    request: SipRequest
    dialog_id: DialogId
    peer: Source
    received_at: float


@dataclass(frozen=True, slots=True)
class End:
    """The dialog ended: ``reason`` as in ``SessionEnded``."""

    reason: str
    dialog_id: DialogId
    at: float


@dataclass(frozen=True, slots=True)
class Answered:
    """The result of an :class:`AnswerRequest`: the dialog its 2xx made, or None."""

    request_id: int
    dialog_id: DialogId | None


@dataclass(frozen=True, slots=True)
class CaptureSip:
    call_id: str
    record: CaptureRecord
    remote_host: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """BYE and finalise every session, then report :class:`Idle` and exit."""


# -- worker to signalling process ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    request_id: int
    token: int
    status: int
    local: Local
    body: bytes
    content_type: str | None
    directory: str | None = None  # the session's, for a dialog-creating INVITE


@dataclass(frozen=True, slots=True)
class Refusal:
    """A peer error as a value: exceptions do not cross the channel (their constructors
    differ), what the SIP answer needs of them does."""

    status: int
    reason: str
    retry_after_s: int | None = None

    @classmethod
    def of(cls, error: PeerError) -> Refusal:
        retry = error.retry_after_s if isinstance(error, ServiceUnavailable) else None
        return cls(error.status, error.reason, retry)

    def error(self) -> PeerError:
        if self.retry_after_s is not None:
            return ServiceUnavailable(self.reason, retry_after_s=self.retry_after_s)
        return PeerError(self.reason, status=self.status)


@dataclass(frozen=True, slots=True)
class RejectRequest:
    token: int
    refusal: Refusal


@dataclass(frozen=True, slots=True)
class FailRequest:
    token: int


@dataclass(frozen=True, slots=True)
class HangUpDialog:
    dialog_id: DialogId
    at: float
    local: Local


@dataclass(frozen=True, slots=True)
class Report:
    """A session started, was refused or finished (for metrics and the webhook)."""

    report: Started | Rejected | Finished
    token: int | None = None  # the session's, for a refusal


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A structlog event dict of the worker, rendered by the signalling process's logger."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Load:
    """Once a second: the worker's CPU share over the last second and its event-loop lag."""

    cpu: float
    lag_s: float
    active: int


@dataclass(frozen=True, slots=True)
class Idle:
    """Every session is finalised after :class:`Shutdown`."""


Message = (Hello | Open | Update | End | Answered | CaptureSip | Shutdown | Ready | AnswerRequest
           | RejectRequest | FailRequest | HangUpDialog | Report | LogEvent | Load | Idle)


class ChannelClosed(Exception):
    """The other end is gone (or sent a frame that is not a message)."""


class Channel:
    """Framed messages over one end of the socket pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, message: Message) -> None:
        """Queue ``message``; it goes out as soon as the socket takes it.  A closed
        channel drops it (the owner learns of the close from :meth:`receive`)."""
        if self.writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> Message:
        try:
            header = await self.reader.readexactly(_LENGTH.size)
            (length,) = _LENGTH.unpack(header)
            if length > MAX_FRAME_BYTES:
                raise ChannelClosed(f"control frame of {length} bytes")
            data = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed(str(exc) or "closed") from None
        try:
            message = pickle.loads(data)  # noqa: S301 - only srs holds the other end
        except Exception as exc:  # a frame srs cannot read: the channel is broken
            raise ChannelClosed(f"unreadable control frame: {exc!r}") from None
        if not isinstance(message, _MESSAGE_TYPES):
            raise ChannelClosed(f"not a control message: {type(message).__name__}")
        return message

    async def drain(self) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


_MESSAGE_TYPES = (Hello, Open, Update, End, Answered, CaptureSip, Shutdown, Ready, AnswerRequest,
                  RejectRequest, FailRequest, HangUpDialog, Report, LogEvent, Load, Idle)
