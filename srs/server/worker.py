"""A media worker process: ``python -m srs.server.worker FD``.

The signalling process (:mod:`srs.server.pool`) starts one per core and hands each a slice
of the RTP port range.  A worker runs the same recording core and driver as a
single-process server (:class:`~srs.recording.core.Recorder`,
:class:`~srs.server.sessions.LiveRecorder`, :class:`~srs.server.media.SocketMedia`) for
the sessions the signalling process assigns it: it binds their RTP sockets, keeps their
timelines and SRTP contexts, writes their files and is the one author of their sidecars.
Everything it would say to the SIP core or the log goes over the control channel
(:mod:`srs.server.control`); the signalling process executes it.

A worker ignores SIGINT and SIGTERM (the signalling process drains it with
:class:`~srs.server.control.Shutdown`); when the channel closes under it (the signalling
process died), it finalises every session without BYEs, as ``interrupted`` (end reason
``crash``: keeping every packet it had, which start-up repair could not), and exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from srs.log import get_logger, redact_secrets
from srs.ops.management import watch_loop_lag
from srs.recording.core import Recorder
from srs.recording.outputs import Answer, Fail, Finished, HangUp, Reject, Rejected, Started
from srs.recording.policy import RecorderConfig, quantize_s
from srs.recording.sidecar import EndReason
from srs.server import control as c
from srs.server.heap import settle_heap
from srs.server.media import SocketMedia
from srs.server.sessions import LiveRecorder, live_streams
from srs.sip.dialog import DialogId
from srs.sip.events import Local, NewSession, SessionEnded, SessionUpdate
from srs.sip.message import SipRequest
from srs.sip.routing import PeerLike

__all__ = ["RemotePending", "main"]

LOAD_EVERY_S = 1.0


# How long a thread holds the GIL while another waits for it (CPython's default: 5 ms).
# A set-up's file job in its thread waits for the GIL at each of its system calls while
# the loop and the file threads run; at 1 ms, bench/capacity.py --calls 1000 --workers 2
# gave INVITE p99 39-48 ms in five runs against 38-133 ms (median 98) at 5 ms, in
# alternation, with the same CPU per packet (10.4 against 10.3 us).
SWITCH_INTERVAL_S = 0.001


class RemotePending:
    """A request the signalling process holds, as the worker's recording core sees it."""

    __slots__ = ("token", "request")

    def __init__(self, token: int, request: SipRequest) -> None:
        self.token = token
        self.request = request


class _ChannelSignalling:
    """The recording core's answers, rejections and BYEs, sent to the signalling process."""

    def __init__(self, channel: c.Channel) -> None:
        self.channel = channel
        self._ids = itertools.count(1)
        self.waiting: dict[int, Callable[[DialogId | None], None]] = {}

    def answer(self, answer: Answer, done: Callable[[DialogId | None], None]) -> None:
        request_id = next(self._ids)
        self.waiting[request_id] = done
        self.channel.send(c.AnswerRequest(request_id, _token(answer.pending), answer.status,
                                          answer.local, answer.body, answer.content_type,
                                          answer.directory))

    def answered(self, message: c.Answered) -> None:
        """The reply, handled before the channel's next message (an UPDATE or BYE in the
        dialog it made must find the dialog known)."""
        done = self.waiting.pop(message.request_id, None)
        if done is not None:
            done(message.dialog_id)

    def closed(self) -> None:
        """The signalling process is gone: no answer reaches a peer any more."""
        waiting, self.waiting = self.waiting, {}
        for done in waiting.values():
            done(None)

    def send(self, output: Reject | Fail | HangUp) -> None:
        if isinstance(output, Reject):
            self.channel.send(c.RejectRequest(_token(output.pending), c.Refusal.of(output.error)))
        elif isinstance(output, Fail):
            self.channel.send(c.FailRequest(_token(output.pending)))
        else:
            self.channel.send(c.HangUpDialog(output.dialog_id, output.at, output.local))


class _ChannelReports:
    def __init__(self, channel: c.Channel) -> None:
        self.channel = channel

    def started(self, started: Started) -> None:
        self.channel.send(c.Report(started))

    def rejected(self, rejected: Rejected) -> None:
        self.channel.send(c.Report(rejected))

    async def finished(self, finished: Finished) -> None:
        # The track counters' read-only mappings do not pickle; their copies do.
        streams = tuple(dataclasses.replace(
            stats, dropped=dict(stats.dropped), resyncs=dict(stats.resyncs),
            jitter_ms=dict(stats.jitter_ms)) for stats in finished.streams)
        self.channel.send(c.Report(dataclasses.replace(finished, streams=streams)))


def _token(pending: object) -> int:
    if not isinstance(pending, RemotePending):
        raise TypeError(f"not a request of the signalling process: {pending!r}")
    return pending.token


def _configure_logging(channel: c.Channel, level: str) -> None:
    """Every event goes to the signalling process, which renders it with its own
    logger: one writer for the log, whatever the number of processes."""

    def forward(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        channel.send(c.LogEvent(dict(event)))
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            redact_secrets,
            structlog.processors.format_exc_info,
            forward,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )


class Worker:
    def __init__(self, channel: c.Channel, hello: c.Hello) -> None:
        self.channel = channel
        self.hello = hello
        self.loop = asyncio.get_running_loop()
        settings = hello.settings
        _configure_logging(channel, settings.log.level)
        self.log = get_logger(worker=hello.index)
        self.signalling = _ChannelSignalling(channel)
        media = SocketMedia(settings.media.host, hello.port_min, hello.port_max, self.now)
        recorder = Recorder(RecorderConfig.from_settings(settings),
                            epoch_offset_s=hello.epoch_offset_s)
        self.sessions = LiveRecorder(
            recorder, media=media, signalling=self.signalling,
            reports=_ChannelReports(channel), local_for=self._local_for,
            media_address_for=self._media_address_for, clock=self.now, log=self.log,
            live=live_streams(settings, self.now, self.log))
        # Our addresses for the session being opened (the signalling process knows them).
        self._current: tuple[Local, str] = (Local("127.0.0.1", 0, "udp"), "127.0.0.1")
        self._lag_s = 0.0
        self._stopping: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] = self.loop.create_future()

    def now(self) -> float:
        return quantize_s(self.loop.time())

    def _local_for(self, peer: PeerLike) -> Local:
        return self._current[0]

    def _media_address_for(self, peer: PeerLike) -> str:
        return self._current[1]

    async def run(self) -> None:
        """Serve the channel's messages until a Shutdown has drained every session (then
        Idle is sent) or the signalling process is gone (then what was recorded is
        finalised).  Messages are still taken while a shutdown runs: its sessions still
        need the answers to their INVITEs (a session being set up is answered, then
        ended)."""
        self.channel.send(c.Ready(os.getpid()))
        load = self.loop.create_task(self._report_load())
        lag = self.loop.create_task(watch_loop_lag(self._observe_lag))
        closed = self.loop.create_task(self.channel.wait_closed())
        self.channel.listen(self._receive)
        try:
            waits: set[asyncio.Future[Any]] = {closed, self._stopped}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if self._stopped.done():
                self._stopped.result()
                self.channel.send(c.Idle())
                await self.channel.drain()
                return
            # The signalling process is gone: finalise what was recorded.
            self.signalling.closed()
            if self._stopping is None:
                await self.sessions.shutdown(EndReason.CRASH)
            else:
                await self._stopping
        finally:
            for task in (load, lag, closed):
                task.cancel()
            await asyncio.gather(load, lag, closed, return_exceptions=True)

    def _receive(self, message: c.Message) -> None:
        if isinstance(message, c.Shutdown):
            if self._stopping is None:
                self._stopping = self.loop.create_task(self.sessions.shutdown())
                self._stopping.add_done_callback(self._stop_done)
            return
        try:
            self._handle(message)
        except Exception as exc:  # a bug: logged, and the other calls go on
            self.log.error("control_message_failed", type=type(message).__name__,
                           exc_info=exc)

    def _stop_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._stopped.cancel()
        elif task.exception() is not None:
            self._stopped.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self._stopped.set_result(None)

    def _handle(self, message: c.Message) -> None:
        if isinstance(message, c.Open):
            self._current = (message.local, message.media_address)
            event = NewSession(RemotePending(message.token, message.request), message.request,
                               message.peer, message.received_at)
            self.sessions.dispatch(event)
        elif isinstance(message, c.Update):
            self.sessions.dispatch(SessionUpdate(
                RemotePending(message.token, message.request), message.request,
                message.dialog_id, message.peer, message.received_at))
        elif isinstance(message, c.End):
            self.sessions.dispatch(SessionEnded(message.reason, message.dialog_id,
                                                at=message.at))
        elif isinstance(message, c.Answered):
            self.signalling.answered(message)
        elif isinstance(message, c.CaptureSip):
            self.sessions.capture_sip(message.call_id, message.record,
                                      remote_host=message.remote_host)
        else:
            self.log.error("control_message_unexpected", type=type(message).__name__)

    def _observe_lag(self, lag_s: float) -> None:
        self._lag_s = lag_s

    async def _report_load(self) -> None:
        """The CPU share of this process (every thread) over each second."""
        last_cpu, last_wall = time.process_time(), time.monotonic()
        while True:
            await asyncio.sleep(LOAD_EVERY_S)
            cpu, wall = time.process_time(), time.monotonic()
            share = (cpu - last_cpu) / max(wall - last_wall, 1e-3)
            last_cpu, last_wall = cpu, wall
            self.channel.send(c.Load(round(share, 3), round(self._lag_s, 4),
                                     self.sessions.active))


async def _serve(fd: int) -> int:
    channel = await c.Channel.connect(socket.socket(fileno=fd))
    try:
        hello = await channel.receive()
    except c.ChannelClosed:
        return 1
    if not isinstance(hello, c.Hello):
        return 1
    worker = Worker(channel, hello)
    settle_heap()
    try:
        await worker.run()
    finally:
        await channel.drain()
        channel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m srs.server.worker FD (started by srs serve)", file=sys.stderr)
        return 2
    # The signalling process decides when a worker stops (a terminal's ^C reaches the
    # whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.run(_serve(int(args[0])))
    return uvloop.run(_serve(int(args[0])))


if __name__ == "__main__":
    sys.exit(main())
