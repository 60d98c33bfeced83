"""Media workers seen from the signalling process: assignment, routing, faults.

With ``media.workers`` above 1 the signalling process keeps the SIP transports, the SIP
core, the management listener, metrics and the webhook, and hands each recording session
to one media worker process (:mod:`srs.server.worker`), which records it whole.
:class:`WorkerPool` stands where :class:`~srs.server.sessions.LiveRecorder` stands in a
single-process server (the application sees the same :class:`Sessions` surface):

* admission: a new session is refused with 503 and ``Retry-After`` while draining, at
  ``server.max_sessions``, when storage is short, and when every ready worker is above
  ``media.max_load`` of a core (refused before a worker is so busy that it drops packets);
* assignment: the ready worker with the fewest sessions takes it; each worker owns a fixed
  slice of ``media.port_min``-``media.port_max``;
* routing: re-INVITEs, UPDATEs and BYEs go to the dialog's worker; what its recording core
  says to the SIP core comes back and is executed here, against the one SIP core;
* faults: a worker that dies (its channel closes) has every session answered or ended
  (503 for one being set up, BYE for one recording), its session directories repaired
  as ``interrupted`` (what it had written is kept), and is started again, with a backoff
  when it keeps dying.  New calls go to the other workers meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srs.config import Settings
from srs.errors import CallDoesNotExist, ConfigError, ServiceUnavailable
from srs.log import Logger
from srs.ops.metrics import Metrics
from srs.ops.webhook import WebhookSender
from srs.recording.capture import CaptureRecord
from srs.recording.outputs import Answer, Finished, Rejected, Started
from srs.recording.repair import repair_session
from srs.recording.signalling import answer
from srs.server import control as c
from srs.server.sessions import SHUTDOWN_WAIT_S, SessionReports
from srs.sip.dialog import DialogId
from srs.sip.events import Answerable, Local, NewSession, SessionEnded, SessionUpdate
from srs.sip.routing import PeerLike
from srs.sip.transaction import Source
from srs.sip.uas import Output as SipOutput
from srs.sip.uas import SipCore

__all__ = ["WorkerPool", "port_slices"]

# How long a worker may take to start (import, bind nothing, say Ready).
START_TIMEOUT_S = 30.0
# A worker that dies within this long of its start waits before the next start,
# doubling up to MAX_RESTART_DELAY_S.
STABLE_AFTER_S = 10.0
MAX_RESTART_DELAY_S = 30.0
# On shutdown, how long the sessions of a worker that died before it drained may take to
# be ended and repaired.
LOST_WAIT_S = 10.0
# A worker reports its load every second; one silent for this long (hung, stopped, its
# loop blocked) is given no new session.
HUNG_AFTER_S = 5.0
# One silent for this long is killed: its sessions are then ended and repaired as for any
# death.  (Its sockets have overflowed long before: it records nothing any more.)
HUNG_KILL_S = 10.0
# Retry-After of a 503 when every worker is busy or restarting.
BUSY_RETRY_AFTER_S = 5


def port_slices(port_min: int, port_max: int, workers: int) -> list[tuple[int, int]]:
    """Split the RTP range into ``workers`` contiguous slices that start on even ports."""
    size = (port_max - port_min + 1) // workers
    size -= size % 2
    if size < 4:
        raise ConfigError("media.workers", f"{workers} workers need at least {4 * workers} "
                          f"RTP ports; media.port_min-port_max has {port_max - port_min + 1}")
    slices = [(port_min + i * size, port_min + (i + 1) * size - 1) for i in range(workers)]
    slices[-1] = (slices[-1][0], port_max)
    return slices


@dataclass(eq=False)
class _Session:
    token: int
    worker: _Worker
    call_id: str
    local: Local
    pending: Answerable | None  # the INVITE, until it is answered
    dialog_id: DialogId | None = None
    directory: str | None = None
    ending: bool = False
    started: bool = False  # reported Started: counted in srs_sessions_active


@dataclass(eq=False)
class _Worker:
    index: int
    port_min: int
    port_max: int
    state: Literal["starting", "ready", "stopping", "dead"] = "starting"
    process: asyncio.subprocess.Process | None = None
    channel: c.Channel | None = None
    pid: int | None = None
    load: c.Load | None = None
    sessions: dict[int, _Session] = field(default_factory=dict)
    updates: dict[int, Answerable] = field(default_factory=dict)  # token -> re-INVITE/UPDATE
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    heard_at: float = 0.0  # monotonic time of its last message
    restarts: int = 0


class WorkerPool:
    def __init__(
        self, settings: Settings, workers: int, *, core: SipCore,
        transmit: Callable[[list[SipOutput]], None], reports: SessionReports,
        local_for: Callable[[PeerLike], Local], media_address_for: Callable[[PeerLike], str],
        clock: Callable[[], float], log: Logger, metrics: Metrics, epoch_offset_s: float,
        storage_problem: Callable[[], str | None], storage_retry_after_s: int,
        webhook: WebhookSender | None,
    ) -> None:
        self.settings = settings
        self.core = core
        self.transmit = transmit
        self.reports = reports
        self.local_for = local_for
        self.media_address_for = media_address_for
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.epoch_offset_s = epoch_offset_s
        self.storage_problem = storage_problem
        self.storage_retry_after_s = storage_retry_after_s
        self.webhook = webhook
        self.draining = False
        media = settings.media
        self.workers = [_Worker(i, lo, hi) for i, (lo, hi)
                        in enumerate(port_slices(media.port_min, media.port_max, workers))]
        self._tokens = itertools.count(1)
        self._by_dialog: dict[DialogId, _Session] = {}  # dialogs in progress: routing
        self._answered: dict[DialogId, _Session] = {}  # until forgotten: the reports
        self._by_call_id: dict[str, _Session] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._readers: set[asyncio.Task[None]] = set()  # one per worker channel
        self._repairs: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._publish()

    # -- the Sessions surface -----------------------------------------------------------

    @property
    def active(self) -> int:
        return sum(not s.ending for w in self.workers for s in w.sessions.values())

    @property
    def ready_workers(self) -> int:
        return sum(w.state == "ready" for w in self.workers)

    def capturing(self, call_id: str) -> bool:
        return self.settings.recordings.capture and call_id in self._by_call_id

    def capture_sip(self, call_id: str, record: CaptureRecord, *, remote_host: str) -> None:
        s = self._by_call_id.get(call_id)
        if s is not None:
            self._send(s.worker, c.CaptureSip(call_id, record, remote_host))

    def dispatch(self, event: NewSession | SessionUpdate | SessionEnded) -> None:
        if isinstance(event, NewSession):
            self._new_session(event)
        elif isinstance(event, SessionUpdate):
            s = self._by_dialog.get(event.dialog_id)
            if s is None:
                self._reply(self.core.reject(event.pending, CallDoesNotExist(
                    "Call/Transaction Does Not Exist"), self.clock()))
                return
            token = next(self._tokens)
            s.worker.updates[token] = event.pending
            self._send(s.worker, c.Update(token, event.request, event.dialog_id,
                                          _address(event.peer), event.received_at))
        elif event.dialog_id is not None:
            s = self._by_dialog.pop(event.dialog_id, None)
            if s is not None:
                s.ending = True
                self._send(s.worker, c.End(event.reason, event.dialog_id, event.at))

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)),
                                   START_TIMEOUT_S)
        except TimeoutError:
            await self._kill_all()
            raise ConfigError("media.workers", "the media workers did not start") from None
        self._keep(self._watch())

    async def shutdown(self) -> None:
        """BYE and finalise every session in every worker, then stop the workers."""
        self.draining = True
        for w in self.workers:
            if w.state in ("starting", "ready") and w.channel is not None:
                w.state = "stopping"
                self._send(w, c.Shutdown())
        waits = [w.idle.wait() for w in self.workers if w.state == "stopping"]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), SHUTDOWN_WAIT_S + 5)
        except TimeoutError:
            self.log.error("media_workers_not_idle", waited_s=SHUTDOWN_WAIT_S + 5)
        await self._kill_all(grace_s=5.0)
        # A worker that died or was killed meanwhile still has its calls answered or
        # ended and its directories repaired: its reader and its repair run to their end.
        # Bounded, so that a stop stays within the 60 s a service manager gives it
        # (drain, kill and this wait together: under 55 s).
        deadline = self._loop.time() + LOST_WAIT_S
        for group in (self._readers, self._repairs):
            if group:
                await asyncio.wait(list(group), timeout=max(0.0, deadline - self._loop.time()))
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- admission and assignment -------------------------------------------------------

    def _new_session(self, event: NewSession) -> None:
        request, peer = event.request, event.peer
        problem, label, retry = None, "", 10
        worker = None
        if self.draining:
            problem, label = "shutting down", "draining"
        elif self.active >= self.settings.server.max_sessions:
            problem, label = "session limit reached", "limit"
        else:
            storage = self.storage_problem()
            if storage is not None:
                problem, label = storage.split(":")[0], "storage"
                retry = self.storage_retry_after_s
            else:
                worker = self._choose()
                if worker is None:
                    problem, label, retry = "media workers busy", "overload", BUSY_RETRY_AFTER_S
        if problem is not None or worker is None:
            self.log.warning("invite_rejected", call_id=request.call_id,
                             src=f"{peer.host}:{peer.port}", status=503, reason=problem)
            self.reports.rejected(Rejected(label))
            error = ServiceUnavailable(f"Service Unavailable: {problem}", retry_after_s=retry)
            self._reply(self.core.reject(event.pending, error, self.clock()))
            return
        local = self.local_for(peer)
        s = _Session(next(self._tokens), worker, request.call_id, local, event.pending)
        worker.sessions[s.token] = s
        self._by_call_id[s.call_id] = s
        self._send(worker, c.Open(s.token, request, _address(peer), local,
                                  self.media_address_for(peer), event.received_at))

    def _choose(self) -> _Worker | None:
        """The ready worker with the fewest sessions among those under ``media.max_load``."""
        limit, heard = self.settings.media.max_load, time.monotonic() - HUNG_AFTER_S
        ready = [w for w in self.workers if w.state == "ready" and w.heard_at > heard
                 and (w.load is None or w.load.cpu < limit)]
        return min(ready, key=lambda w: (len(w.sessions), w.index), default=None)

    # -- messages from a worker ---------------------------------------------------------

    def _handle(self, w: _Worker, message: c.Message) -> None:
        now = self.clock()
        w.heard_at = time.monotonic()
        if isinstance(message, c.AnswerRequest):
            self._answer(w, message, now)
        elif isinstance(message, c.RejectRequest | c.FailRequest):
            pending = self._take_pending(w, message.token)
            if pending is not None:
                if isinstance(message, c.RejectRequest):
                    self._reply(self.core.reject(pending, message.refusal.error(), now))
                else:
                    self._reply(self.core.fail(pending, now))
        elif isinstance(message, c.HangUpDialog):
            s = self._by_dialog.pop(message.dialog_id, None)
            if s is not None:
                s.ending = True
            self._reply(self.core.hang_up(message.dialog_id, message.at, local=message.local))
        elif isinstance(message, c.Report):
            self._report(w, message.report)
        elif isinstance(message, c.LogEvent):
            self._log_event(message.event)
        elif isinstance(message, c.Load):
            w.load = message
        elif isinstance(message, c.Ready):
            w.pid, w.state = message.pid, "ready" if w.state == "starting" else w.state
            w.ready.set()
            self._publish()
        elif isinstance(message, c.Idle):
            w.idle.set()
        else:
            self.log.error("control_message_unexpected", worker=w.index,
                           type=type(message).__name__)

    def _answer(self, w: _Worker, message: c.AnswerRequest, now: float) -> None:
        s = w.sessions.get(message.token)
        if s is not None and message.directory is not None:
            s.directory = message.directory  # repaired if the worker dies before Started
        pending = s.pending if s is not None else w.updates.pop(message.token, None)
        dialog_id = None
        if pending is not None:
            work = Answer(pending, message.status, message.local, message.body,
                          message.content_type)
            outputs, dialog_id = answer(self.core, work, now)
            self._reply(outputs)
        if s is not None and s.pending is not None:
            s.pending = None
            if dialog_id is None:
                self._forget(s)  # cancelled meanwhile: the worker discards it
            else:
                s.dialog_id = dialog_id
                self._by_dialog[dialog_id] = s
                self._answered[dialog_id] = s
        self._send(w, c.Answered(message.request_id, dialog_id))

    def _take_pending(self, w: _Worker, token: int) -> Answerable | None:
        s = w.sessions.get(token)
        if s is not None:
            pending, s.pending = s.pending, None
            self._forget(s)  # refused or failed before its answer: no session
            return pending
        return w.updates.pop(token, None)

    def _report(self, w: _Worker, report: Started | Rejected | Finished) -> None:
        if isinstance(report, Started):
            s = self._session_of(w, report.dialog_id)
            if s is not None:
                s.directory, s.started = report.directory, True
            self.reports.started(report)
        elif isinstance(report, Rejected):
            self.reports.rejected(report)
        else:
            s = self._session_of(w, report.dialog_id)
            if s is not None:
                self._forget(s)
            self._keep(self.reports.finished(report))

    def _session_of(self, w: _Worker, dialog_id: DialogId | None) -> _Session | None:
        s = self._answered.get(dialog_id) if dialog_id is not None else None
        return s if s is not None and s.worker is w else None

    def _log_event(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        level = str(fields.pop("level", "info"))
        name = str(fields.pop("event", "worker_event"))
        fields.pop("timestamp", None)
        method = getattr(self.log, level if level in ("debug", "info", "warning", "error",
                                                      "critical") else "info")
        method(name, **fields)

    # -- processes ----------------------------------------------------------------------

    async def _spawn(self, w: _Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            w.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "srs.server.worker", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        finally:
            child.close()
        w.channel = await c.Channel.connect(parent)
        w.state, w.load, w.started_at = "starting", None, time.monotonic()
        w.heard_at = w.started_at
        w.ready.clear()
        w.idle.clear()
        self._send(w, c.Hello(w.index, self.settings, w.port_min, w.port_max,
                              self.epoch_offset_s))
        self._keep(self._read(w, w.channel, w.process), self._readers)

    async def _read(self, w: _Worker, channel: c.Channel,
                    process: asyncio.subprocess.Process) -> None:
        """Every message of the worker as it arrives; then, when the channel closes, what
        its end means."""
        def receive(message: c.Message) -> None:
            try:
                self._handle(w, message)
            except Exception as exc:  # a bug here must not stop the other messages
                self.log.error("control_message_failed", worker=w.index,
                               type=type(message).__name__, exc_info=exc)

        channel.listen(receive)
        closed = await channel.wait_closed()
        channel.close()
        code = await process.wait()
        if w.state == "stopping" and w.idle.is_set():
            w.state = "dead"  # drained: it said Idle, its sessions are final
            return
        # Dead before it drained (killed, or past the shutdown wait): its sessions
        # are ended here, whether or not a shutdown is under way.
        self._lost(w, code, closed)
        w.idle.set()

    def _lost(self, w: _Worker, code: int, why: str) -> None:
        """A worker died: answer or end its sessions, repair their files, start it again."""
        w.state = "dead"
        w.ready.clear()
        self._publish()
        now = self.clock()
        sessions = list(w.sessions.values())
        self.log.error("media_worker_died", worker=w.index, pid=w.pid, exit_code=code,
                       sessions=len(sessions), reason=why)
        self.metrics.media_worker_restarted()
        unavailable = ServiceUnavailable("Service Unavailable: media worker restarted",
                                         retry_after_s=1)
        directories = []
        for s in sessions:
            if s.pending is not None:
                self._reply(self.core.reject(s.pending, unavailable, now))
            elif s.dialog_id is not None and not s.ending:
                self._by_dialog.pop(s.dialog_id, None)
                self._reply(self.core.hang_up(s.dialog_id, now, local=s.local))
            if s.directory is not None:
                directories.append(Path(s.directory))
            if s.started:
                self.metrics.session_lost()  # no Finished will come for it
            self._forget(s)
        for pending in w.updates.values():
            self._reply(self.core.fail(pending, now))
        w.updates.clear()
        self._keep(self._repair(w.index, directories), self._repairs)
        if not self.draining:
            self._keep(self._restart(w))

    async def _repair(self, index: int, directories: list[Path]) -> None:
        repaired = 0
        for directory in directories:
            outcome = await asyncio.to_thread(repair_session, directory)
            if outcome is None:
                continue  # already final: the worker finished it before it died
            repaired += outcome.repaired
            self.log.warning("session_repaired", dir=str(directory), worker=index,
                             repaired=outcome.repaired, problems=list(outcome.problems))
            if outcome.repaired and self.webhook is not None:
                await self.webhook.submit(directory)
        self.metrics.sessions_repaired(repaired)

    async def _watch(self) -> None:
        """Kill a ready worker silent for :data:`HUNG_KILL_S`."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now - last > 3.0:  # this process was stalled too (^Z, a paused VM)
                for w in self.workers:
                    w.heard_at = max(w.heard_at, now)
            last = now
            for w in self.workers:
                process = w.process
                if (w.state == "ready" and now - w.heard_at > HUNG_KILL_S
                        and process is not None and process.returncode is None):
                    self.log.error("media_worker_hung", worker=w.index, pid=w.pid,
                                   silent_s=round(now - w.heard_at, 1))
                    process.kill()

    async def _restart(self, w: _Worker) -> None:
        if time.monotonic() - w.started_at < STABLE_AFTER_S:
            w.restarts += 1
            await asyncio.sleep(min(2.0 ** (w.restarts - 1), MAX_RESTART_DELAY_S))
        else:
            w.restarts = 0
        if self.draining:
            return
        await self._spawn(w)
        self.log.info("media_worker_restarted", worker=w.index,
                      pid=w.process.pid if w.process else None)

    async def _kill_all(self, grace_s: float = 0.0) -> None:
        for w in self.workers:
            process = w.process
            if process is None or process.returncode is not None:
                continue
            w.state = "stopping"
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()

    # -- helpers ------------------------------------------------------------------------

    def _forget(self, s: _Session) -> None:
        s.worker.sessions.pop(s.token, None)
        if self._by_call_id.get(s.call_id) is s:
            del self._by_call_id[s.call_id]
        if s.dialog_id is not None and self._by_dialog.get(s.dialog_id) is s:
            del self._by_dialog[s.dialog_id]
        if s.dialog_id is not None and self._answered.get(s.dialog_id) is s:
            del self._answered[s.dialog_id]

    def _send(self, w: _Worker, message: c.Message) -> None:
        if w.channel is not None:
            w.channel.send(message)

    def _reply(self, outputs: list[SipOutput]) -> None:
        if outputs:
            self.transmit(outputs)

    def _publish(self) -> None:
        self.metrics.media_workers(self.ready_workers, len(self.workers))

    def _keep(self, coro: Any, group: set[asyncio.Task[None]] | None = None) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        if group is not None:
            group.add(task)
            task.add_done_callback(group.discard)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", exc_info=task.exception())


def _address(peer: PeerLike) -> Source:
    """The transport's peer as a plain value the channel carries."""
    return Source(peer.transport, peer.host, peer.port,
                  getattr(peer, "connection_id", None))
