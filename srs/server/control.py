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
import collections
import pickle
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

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
    """Framed messages over one end of the socket pair.

    Frames are read in the event loop's callback for the socket: once :meth:`listen` has
    a handler, each message is handled in the loop iteration its last byte arrived in,
    not one or two iterations later as an awaiting reader would (a media worker's
    iterations are long under load, and an INVITE waits for its answer across both
    processes).  Before that, messages queue for :meth:`receive` (a worker's Hello).
    """

    def __init__(self) -> None:
        self._frames = _Frames(self)
        self._queued: collections.deque[Message] = collections.deque()
        self._handler: Callable[[Message], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, sock: socket.socket) -> Channel:
        """The channel over a connected stream socket of the pair."""
        channel = cls()
        await asyncio.get_running_loop().create_unix_connection(lambda: channel._frames,
                                                                sock=sock)
        return channel

    def send(self, message: Message) -> None:
        """Queue ``message``; it goes out as soon as the socket takes it.  A closed
        channel drops it (the owner learns of the close from :meth:`wait_closed`)."""
        transport = self._frames.transport
        if transport is None or transport.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        transport.write(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> Message:
        """The next message, for a channel nobody listens to yet."""
        while not self._queued:
            if self._closed.done():
                raise ChannelClosed(self._closed.result())
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queued.popleft()

    def listen(self, handler: Callable[[Message], None]) -> None:
        """Hand every message, queued ones first, to ``handler`` as it arrives.  The
        handler must not raise: an exception is reported to the loop's handler and the
        channel reads on."""
        self._handler = handler
        while self._queued:
            self._dispatch(self._queued.popleft())

    async def wait_closed(self) -> str:
        """Wait until the other end is gone (or sent what is not a message): why."""
        return await asyncio.shield(self._closed)

    async def drain(self) -> None:
        await self._frames.drain()

    def close(self) -> None:
        if self._frames.transport is not None:
            self._frames.transport.close()

    def _deliver(self, message: Message) -> None:
        if self._handler is not None:
            self._dispatch(message)
            return
        self._queued.append(message)
        self._wake()

    def _dispatch(self, message: Message) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler(message)
        except Exception as exc:  # a bug in the handler: the other messages still come
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"control message {type(message).__name__} failed",
                 "exception": exc})

    def _lost(self, why: str) -> None:
        if not self._closed.done():
            self._closed.set_result(why)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Frames(asyncio.Protocol):
    """The socket's bytes cut into frames (4-byte length, pickle), and write flow control."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._paused: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                self._broken(f"control frame of {length} bytes")
                return
            end = start + _LENGTH.size + length
            if len(buffer) < end:
                break
            frame = bytes(buffer[start + _LENGTH.size:end])
            start = end
            try:
                message = pickle.loads(frame)  # noqa: S301 - only srs holds the other end
            except Exception as exc:  # a frame srs cannot read: the channel is broken
                self._broken(f"unreadable control frame: {exc!r}")
                return
            if not isinstance(message, _MESSAGE_TYPES):
                self._broken(f"not a control message: {type(message).__name__}")
                return
            self.channel._deliver(message)
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel._lost(str(exc) if exc else "closed")
        self._resume()

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._resume()

    async def drain(self) -> None:
        if self._paused is not None:
            await self._paused

    def _resume(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _broken(self, why: str) -> None:
        self._buffer.clear()
        self.channel._lost(why)
        if self.transport is not None:
            self.transport.close()


_MESSAGE_TYPES = (Hello, Open, Update, End, Answered, CaptureSip, Shutdown, Ready, AnswerRequest,
                  RejectRequest, FailRequest, HangUpDialog, Report, LogEvent, Load, Idle)
