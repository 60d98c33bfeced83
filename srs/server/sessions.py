"""The recording sessions of a running server: the asyncio driver of the recording core.

:class:`LiveRecorder` feeds session events to the pure
:class:`~srs.recording.core.Recorder` and executes what it returns: port requests go to
:class:`~srs.server.media.SocketMedia`, file jobs to a worker thread (blocking file I/O
never runs on the event loop), answers, rejections and BYEs to a :class:`Signalling` (the
SIP core in this process, or the signalling process seen from a media worker), log events
to the logger, and starts, ends and refusals to :class:`Reports` (metrics and the
completion webhook).  The core's ticks are served by one ``call_at`` handle, re-armed
after every input.  Every task is kept and awaited on shutdown; none is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, assert_never

from srs.config import Settings
from srs.live.streams import LiveStreams
from srs.log import log_entry
from srs.ops.metrics import Metrics
from srs.ops.retention import directory_bytes
from srs.ops.webhook import WebhookSender
from srs.recording import jobs
from srs.recording.capture import CaptureRecord
from srs.recording.core import Recorder
from srs.recording.outputs import (
    Answer,
    Attach,
    Drain,
    EndLive,
    Fail,
    Finished,
    HangUp,
    Log,
    OpenPorts,
    Output,
    Reject,
    Rejected,
    Release,
    Request,
    Started,
    StartLive,
    WaitLive,
)
from srs.recording.sidecar import EndReason
from srs.recording.signalling import answer, signal
from srs.server.media import SocketMedia
from srs.server.timer import CoreTimer
from srs.sip.dialog import DialogId
from srs.sip.events import Local, NewSession, SessionEnded, SessionUpdate
from srs.sip.routing import PeerLike
from srs.sip.uas import Output as SipOutput
from srs.sip.uas import SipCore

__all__ = ["CoreSignalling", "LiveRecorder", "live_streams", "Reports", "SessionReports",
           "Signalling", "SHUTDOWN_WAIT_S", "BULK_THREADS", "URGENT_THREADS"]

# How long shutdown waits for sessions that are finishing.
SHUTDOWN_WAIT_S = 30.0
# Threads for file work: the once-a-tick writes and finishes, and the jobs answers wait for.
BULK_THREADS = 4
URGENT_THREADS = 2
_BULK_JOBS = (jobs.WriteBatch, jobs.FinishFiles, jobs.FailFiles, jobs.DiscardFiles)


class Signalling(Protocol):
    """Where the recording core's answers, rejections and BYEs go.  ``answer`` calls
    ``done`` with the dialog the answer made (None: it reached no peer): at once when the
    SIP core is in this process, when the reply comes in when it is the signalling
    process's -- before any later message of that process is handled, which may be a
    request in that very dialog."""

    def answer(self, answer: Answer, done: Callable[[DialogId | None], None]) -> None: ...

    def send(self, output: Reject | Fail | HangUp) -> None: ...


class Reports(Protocol):
    """Where session starts, ends and refusals are reported (metrics, webhook)."""

    def started(self, started: Started) -> None: ...

    def rejected(self, rejected: Rejected) -> None: ...

    async def finished(self, finished: Finished) -> None: ...


class CoreSignalling:
    """The SIP core of this process: each output is executed at once."""

    def __init__(self, core: SipCore, transmit: Callable[[list[SipOutput]], None],
                 clock: Callable[[], float]) -> None:
        self.core = core
        self.transmit = transmit
        self.clock = clock

    def answer(self, answer: Answer, done: Callable[[DialogId | None], None]) -> None:
        done(self.answer_now(answer))

    def answer_now(self, work: Answer) -> DialogId | None:
        outputs, dialog_id = answer(self.core, work, self.clock())
        if outputs:
            self.transmit(outputs)
        return dialog_id

    def send(self, output: Reject | Fail | HangUp) -> None:
        outputs = signal(self.core, output, self.clock())
        if outputs:
            self.transmit(outputs)


class SessionReports:
    """Metrics and the completion webhook of the sessions this process records."""

    def __init__(self, metrics: Metrics | None, webhook: WebhookSender | None) -> None:
        self.metrics = metrics
        self.webhook = webhook

    def started(self, started: Started) -> None:
        if self.metrics is not None:
            self.metrics.session_started()

    def rejected(self, rejected: Rejected) -> None:
        if self.metrics is not None:
            self.metrics.session_rejected(rejected.reason)

    async def finished(self, finished: Finished) -> None:
        directory = Path(finished.directory)
        if self.metrics is not None:
            written = await asyncio.to_thread(directory_bytes, directory)
            self.metrics.session_finished(finished.status.value, finished.streams, written)
        if self.webhook is not None:
            await self.webhook.submit(directory)


def live_streams(settings: Settings, clock: Callable[[], float], log: Any) -> LiveStreams | None:
    """The live streams of the sessions this process records, when ``stream.url`` is set."""
    return LiveStreams(settings.stream, clock=clock, log=log) if settings.stream.url else None


class LiveRecorder:
    def __init__(
        self,
        recorder: Recorder,
        *,
        media: SocketMedia,
        signalling: Signalling,
        reports: Reports,
        local_for: Callable[[PeerLike], Local],
        media_address_for: Callable[[PeerLike], str],
        clock: Callable[[], float],
        log: Any,
        live: LiveStreams | None = None,
    ) -> None:
        self.recorder = recorder
        self.live = live  # stream.url: the sessions streamed live from this process
        self.media = media
        self.signalling = signalling
        self.reports = reports
        self.local_for = local_for
        self.media_address_for = media_address_for
        self.clock = clock
        self.log = log
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._timer = CoreTimer(recorder.next_timer, self._fire_timer)
        # The ticks' writes and the finishes of hundreds of sessions queue in their own
        # threads; the jobs a SIP answer waits for (session directory, files, metadata,
        # the sidecar of a set-up or an update) never wait behind them.
        self._bulk = ThreadPoolExecutor(BULK_THREADS, thread_name_prefix="srs-write")
        self._urgent = ThreadPoolExecutor(URGENT_THREADS, thread_name_prefix="srs-answer")
        self._outputs: collections.deque[Output] = collections.deque()
        self._executing = False
        self._in_flight = 0  # requests out to a thread or the signalling process

    @property
    def active(self) -> int:
        return self.recorder.active

    @property
    def draining(self) -> bool:
        return self.recorder.draining

    def capturing(self, call_id: str) -> bool:
        return self.recorder.capturing(call_id)

    def capture_sip(self, call_id: str, record: CaptureRecord, *, remote_host: str) -> None:
        self.recorder.capture_sip(call_id, record, remote_host=remote_host)

    def dispatch(self, event: NewSession | SessionUpdate | SessionEnded) -> None:
        """A session event of the UAS core."""
        if isinstance(event, NewSession):
            peer = event.peer
            self.execute(self.recorder.receive(event, self.clock(), local=self.local_for(peer),
                                               media_address=self.media_address_for(peer)))
        else:
            self.execute(self.recorder.receive(event, self.clock()))

    def execute(self, outputs: Iterable[Output]) -> None:
        """Carry out the core's outputs in order.  The requests it can complete at once
        (ports, a drain, an answer to the SIP core of this process) are completed here and
        their outputs follow in the same pass; a file job's completion comes back in one
        loop iteration from its thread.  Each hop through the loop costs a whole
        iteration, which under media load is milliseconds: a set-up takes two."""
        self._outputs.extend(outputs)
        if self._executing:
            return  # a completion inside this pass: the loop below takes its outputs
        self._executing = True
        try:
            while self._outputs:
                output = self._outputs.popleft()
                if isinstance(output, Request):
                    self._start(output)
                elif isinstance(output, Reject | Fail | HangUp):
                    self.signalling.send(output)
                elif isinstance(output, Attach):
                    self.media.attach(output.port, output.stream)
                elif isinstance(output, Release):
                    self.media.close(list(output.ports))
                elif isinstance(output, Log):
                    log_entry(self.log, output)
                elif isinstance(output, Rejected):
                    self.reports.rejected(output)
                elif isinstance(output, Started):
                    self.reports.started(output)
                elif isinstance(output, Finished):
                    self._keep(self.reports.finished(output))
                elif isinstance(output, StartLive | EndLive):
                    self._live(output)
                else:
                    assert_never(output)
        finally:
            self._executing = False
            self._outputs.clear()  # only after a bug: the rest of that pass is dropped
            self._timer.arm()  # the core's next tick, whatever happened above

    def _live(self, output: StartLive | EndLive) -> None:
        """Live audio out: a fault there is logged and costs the recording nothing."""
        if self.live is None:
            return
        try:
            if isinstance(output, StartLive):
                self.live.start(output.session)
            else:
                self.live.end(output.session, output.at)
        except Exception as exc:
            self.log.error("stream_failed", exc_info=exc)

    async def shutdown(self, reason: EndReason = EndReason.SHUTDOWN) -> None:
        """Stop taking sessions; BYE and finalise every active one, and let sessions that
        were already finishing complete their files rather than cutting them half way.
        Whatever sending the BYEs does, the sessions' file work still runs to its end.
        (``reason`` CRASH: no BYE, sessions ``interrupted``; see ``Recorder.shutdown``.)"""
        try:
            self.execute(self.recorder.shutdown(self.clock(), reason=reason))
        finally:
            await self._drain()

    async def _drain(self) -> None:
        deadline = self._loop.time() + SHUTDOWN_WAIT_S
        while ((self.tasks or self._in_flight or not self.recorder.idle)
               and self._loop.time() < deadline):
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=deadline - self._loop.time(),
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.01)  # a job in its thread, or between two requests
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.live is not None:
            await self.live.close()
        self._timer.cancel()
        self._bulk.shutdown(wait=False, cancel_futures=True)
        self._urgent.shutdown(wait=False, cancel_futures=True)

    # -- requests -----------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        work = request.work
        if isinstance(work, OpenPorts | Drain):
            result: Any = None
            error: Exception | None = None
            try:
                if isinstance(work, OpenPorts):
                    result = self.media.open(work.count, work.near)
                else:
                    result = self.media.drain(list(work.ports))
            except Exception as exc:  # handed to the core, which classifies it
                error = exc
            self._complete(request.id, result, error)
            return
        if isinstance(work, WaitLive):
            self._in_flight += 1
            self._keep(self._wait_live(request.id, work))
            return
        if isinstance(work, Answer):
            try:
                self.signalling.answer(work, functools.partial(self._answered, request.id))
            except Exception as exc:  # handed to the core, which classifies it
                self._complete(request.id, None, exc)
            return
        self._in_flight += 1
        pool = self._bulk if isinstance(work, _BULK_JOBS) else self._urgent
        job = pool.submit(work.run)
        job.add_done_callback(functools.partial(self._job_done, request.id))

    async def _wait_live(self, request_id: int, work: WaitLive) -> None:
        try:
            if self.live is not None:
                await self.live.wait(work.session)
        finally:
            self._in_flight -= 1
            self._complete(request_id, None, None)

    def _job_done(self, request_id: int, job: concurrent.futures.Future[Any]) -> None:
        """In the job's thread: back to the loop, one wake-up."""
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is going away
            self._loop.call_soon_threadsafe(self._finished, request_id, job)

    def _answered(self, request_id: int, dialog_id: DialogId | None) -> None:
        self._complete(request_id, dialog_id, None)

    def _finished(self, request_id: int, future: concurrent.futures.Future[Any]) -> None:
        self._in_flight -= 1
        if future.cancelled():
            return  # a job dropped by a shutdown past its wait: nothing is waited for
        error = future.exception()
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: not the core's to classify
        self._complete(request_id, None if error is not None else future.result(), error)

    def _complete(self, request_id: int, result: Any, error: Exception | None) -> None:
        try:
            self.execute(self.recorder.complete(request_id, result, error, self.clock()))
        except Exception as exc:  # a bug in the core or here: logged, the others go on
            self.log.error("task_failed", exc_info=exc)

    def _keep(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", exc_info=task.exception())

    # -- the core's timer ----------------------------------------------------------------

    def _fire_timer(self) -> None:
        self.execute(self.recorder.handle_timer(self.clock()))
