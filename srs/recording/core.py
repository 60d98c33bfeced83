"""The recording core: SIPREC session events in, recordings out, sans-IO.

:class:`Recorder` turns the UAS core's session events (:class:`NewSession`,
:class:`SessionUpdate`, :class:`SessionEnded`) into recording sessions and drives each
through its lifecycle (:class:`~srs.recording.policy.Lifecycle`): admission, the offer and
answer, metadata, the once-a-tick writes, expiry, the end, and the one classification of
failures.  It imports no asyncio, reads no clock (``now`` is passed in) and logs nothing:
it returns outputs, as the SIP core does (docs/architecture.md, "Pure core"):

* :class:`Request` -- work for the driver: binding ports (:class:`OpenPorts`), reading
  what is queued on them (:class:`Drain`), answering a SIP request (:class:`Answer`) or a
  file job (:mod:`srs.recording.jobs`); the driver answers with :meth:`Recorder.complete`;
* :class:`Reject`, :class:`Fail`, :class:`HangUp` -- for the SIP core, which the recorder
  never holds (in a media worker it is in another process);
* :class:`Attach` / :class:`Release` -- route a port's datagrams to a stream, or stop;
* :class:`Log`, :class:`Rejected`, :class:`Started`, :class:`Finished` -- for the
  driver's log, metrics and completion webhook.

Each session runs one operation at a time (set-up, update, tick, finish …), written as a
generator that yields its requests; a session's operations queue behind each other, so
its files are never touched by two jobs at once.  The live server
(:mod:`srs.server.sessions`) and ``srs replay`` (:mod:`srs.replay.offline`) are the two
drivers: one runs requests on asyncio and threads, the other inline on packet time.
"""

from __future__ import annotations

import functools
import itertools
import secrets
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any

from srs.errors import PeerError, ServiceUnavailable, UsageError
from srs.recording import jobs
from srs.recording import sidecar as sc
from srs.recording.capture import CaptureRecord, SessionCapture, redact
from srs.recording.entry import Operation, SessionEntry, bind, gone, is_recording
from srs.recording.layout import stream_wav_name
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
from srs.recording.policy import (
    SIDECAR_EVERY_TICKS,
    TICK_S,
    Lifecycle,
    RecorderConfig,
    check_transition,
    final_status,
    write_window,
)
from srs.recording.session import RecordingSession, call_info_from_invite
from srs.recording.stream import OutputReport, StreamState
from srs.recording.wav import RecordingIOError
from srs.sdp.description import SessionDescription
from srs.sip.dialog import DialogId
from srs.sip.events import Local, NewSession, SessionEnded, SessionUpdate
from srs.sip.timers import TimerHeap
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.multipart import split_siprec_body

__all__ = ["Recorder"]


class Recorder:
    """Every recording session of one server (see the module docstring)."""

    def __init__(self, config: RecorderConfig, *, epoch_offset_s: float,
                 storage_problem: Callable[[], str | None] = lambda: None,
                 storage_retry_after_s: int = 60) -> None:
        """``epoch_offset_s`` turns the session clock into Unix time for the sidecar;
        ``storage_problem`` says why new sessions cannot be stored (low disk), or None."""
        self.config = config
        self.epoch_offset_s = epoch_offset_s
        self.storage_problem = storage_problem
        self.storage_retry_after_s = storage_retry_after_s
        self.draining = False
        self.now = 0.0  # the reading of the call being served
        self._sessions: set[SessionEntry] = set()  # every session not yet finished
        self._by_dialog: dict[DialogId, SessionEntry] = {}
        self._capturing: dict[str, SessionEntry] = {}  # Call-ID -> captured session
        self._waiting: dict[int, SessionEntry] = {}  # request id -> its session
        self._ids = itertools.count(1)
        self._out: list[Output] = []
        # Every recording session's next tick (one heap, as for SIP transactions).
        self._ticks: TimerHeap[SessionEntry] = TimerHeap(lambda s, at: s.next_tick_s == at)

    # -- inputs -------------------------------------------------------------------------

    def receive(self, event: NewSession | SessionUpdate | SessionEnded, now: float, *,
                local: Local | None = None, media_address: str = "") -> list[Output]:
        """A session event of the SIP core.  A :class:`NewSession` needs ``local`` (how we
        name ourselves to that peer) and ``media_address`` (our RTP address for it)."""
        self.now = now
        if isinstance(event, NewSession):
            if local is None:
                raise UsageError("a new session needs its local address")
            self._new_session(event, local, media_address)
        elif isinstance(event, SessionUpdate):
            s = self._by_dialog.get(event.dialog_id)
            if s is None or s.state is not Lifecycle.RECORDING:
                self._out.append(Reject(event.pending, gone()))
            else:
                self._queue(s, functools.partial(self._update, s, event))
        elif event.dialog_id is not None:  # a CANCEL before the answer: the set-up sees it
            s = self._by_dialog.get(event.dialog_id)
            if s is not None and s.state is Lifecycle.RECORDING:
                if event.reason == "timeout":
                    # No ACK for our 2xx (RFC 3261 §13.3.1.4): end with a BYE.
                    self._end(s, sc.EndReason.TIMEOUT, at=event.at, bye=True)
                elif event.reason == "expired":
                    # No session refresh (RFC 4028 §10): the SIP core sent the BYE.
                    self._end(s, sc.EndReason.TIMEOUT, at=event.at, bye=False)
                else:
                    self._end(s, sc.EndReason.BYE, at=event.at, bye=False)
        return self._take()

    def complete(self, request_id: int, result: Any, error: BaseException | None,
                 now: float) -> list[Output]:
        """The driver finished a :class:`Request`: its result, or the exception it raised."""
        self.now = now
        s = self._waiting.pop(request_id, None)
        if s is None:
            raise UsageError(f"no request {request_id} is outstanding")
        self._step(s, result, error)
        return self._take()

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due: the earliest tick of any session."""
        return self._ticks.next_timer()

    def handle_timer(self, now: float) -> list[Output]:
        """Queue a write for every session whose tick is due."""
        self.now = now
        for s, _ in list(self._ticks.pop_due(now)):
            self._schedule_tick(s)  # a late loop skips ticks rather than bunching them
            if not s.tick_queued:
                s.tick_queued = True
                self._queue(s, bind(self._tick, s))
        return self._take()

    def shutdown(self, now: float, *,
                 reason: sc.EndReason = sc.EndReason.SHUTDOWN) -> list[Output]:
        """Stop taking sessions; BYE and finalise every active one.  Sessions being set up
        finish their set-up first (answered, then ended; or refused with 503).

        ``reason`` CRASH: the signalling side is gone (a media worker whose signalling
        process died), so no BYE can be sent; the files are finalised all the same and
        the sessions say ``interrupted``."""
        self.now = now
        self.draining = True
        for s in list(self._sessions):
            if s.state is Lifecycle.RECORDING:
                self._end(s, reason, at=now, bye=reason is sc.EndReason.SHUTDOWN)
            elif s.state is Lifecycle.SETTING_UP:
                s.end_after_setup = reason
        return self._take()

    # -- what drivers may read ----------------------------------------------------------

    @property
    def active(self) -> int:
        """Sessions being set up or recording (what ``server.max_sessions`` bounds)."""
        return sum(s.state in (Lifecycle.SETTING_UP, Lifecycle.RECORDING) for s in self._sessions)

    @property
    def idle(self) -> bool:
        """No session left that is not finished, failed or discarded."""
        return not self._sessions

    def capturing(self, call_id: str) -> bool:
        return call_id in self._capturing

    def capture_sip(self, call_id: str, record: CaptureRecord, *, remote_host: str) -> None:
        """A SIP message to or from a captured session (``recordings.capture``): kept when
        its other end is the session's signalling peer, so a host that only knows the
        Call-ID writes nothing into the capture."""
        s = self._capturing.get(call_id)
        if (s is not None and s.capture is not None and s.session is not None
                and remote_host == s.session.info.source.address):
            s.capture.add(record)

    def wall(self, now: float) -> datetime:
        """The Unix time of a session-clock reading, for the sidecar."""
        return datetime.fromtimestamp(now + self.epoch_offset_s, UTC)

    def streams(self) -> Iterator[tuple[str, StreamState]]:
        """(Call-ID, stream) of every stream of every recording session (for a replay,
        which routes captured RTP itself)."""
        for s in self._sessions:
            if s.session is not None and s.state is Lifecycle.RECORDING:
                for stream in s.session.streams:
                    yield s.session.info.call_id, stream

    def local_tag(self, call_id: str) -> str | None:
        """Our To tag in the dialog of ``call_id``, if one is recording."""
        for dialog_id, s in self._by_dialog.items():
            if dialog_id.call_id == call_id and s.state is Lifecycle.RECORDING:
                return dialog_id.local_tag
        return None

    # -- operations ---------------------------------------------------------------------

    def _new_session(self, event: NewSession, local: Local, media_address: str) -> None:
        request, peer = event.request, event.peer
        context = {"call_id": request.call_id, "src": f"{peer.host}:{peer.port}"}
        problem, label, retry = None, "", 10
        if self.draining:
            problem, label = "shutting down", "draining"
        elif self.active >= self.config.max_sessions:
            problem, label = "session limit reached", "limit"
        else:
            storage = self.storage_problem()
            if storage is not None:
                problem, label = storage.split(":")[0], "storage"
                retry = self.storage_retry_after_s
        if problem is not None:
            self._log("warning", "invite_rejected", context, status=503, reason=problem)
            self._out.append(Rejected(label))
            error = ServiceUnavailable(f"Service Unavailable: {problem}", retry_after_s=retry)
            self._out.append(Reject(event.pending, error))
            return
        s = SessionEntry(local=local, context=context)
        self._sessions.add(s)
        self._queue(s, lambda: self._setup(s, event, media_address))

    def _setup(self, s: SessionEntry, event: NewSession, media_address: str) -> Operation:
        request, peer = event.request, event.peer
        s.answering = event.pending
        origin_s = event.received_at
        body = split_siprec_body(request.body, request.headers.get("Content-Type"))
        offer = SessionDescription.parse(body.sdp or b"")
        metadata = RecordingMetadata.parse(body.metadata) if body.metadata else None
        info = call_info_from_invite(request, peer.host, peer.port, peer.transport,
                                     credential_header=self.config.credential_header)
        started_at = self.wall(origin_s)
        session_id = (metadata.sessions[0].session_id if metadata and metadata.sessions
                      else info.call_id)
        session = s.session = RecordingSession(
            info=info, started_at=started_at, origin_s=origin_s,
            media_address=media_address, sdp_session_id=str(secrets.randbelow(2**62)),
            srtp_policy=self.config.srtp, source_policy=self.config.media_sources,
            codec_names=self.config.codecs, sample_rate_hz=self.config.sample_rate_hz,
        )
        if self.config.capture:
            s.capture = SessionCapture(None, self.epoch_offset_s)  # placed with the directory
            self._capturing[info.call_id] = s
            s.capture.add(CaptureRecord(
                origin_s, peer.host, peer.port, s.local.host, s.local.port,
                redact(request, self.config.credential_header), peer.transport != "udp"))
        written: tuple[tuple[int, bytes], ...] = ()
        if metadata is not None and body.metadata is not None:
            n = session.apply_metadata(body.metadata, metadata, self.wall(origin_s), "INVITE")
            written = ((n, body.metadata),)
        # The ports first (on the loop), then every file in one job: one trip to the file
        # threads and back before the answer (docs/architecture.md, "Capacity").
        answer, specs = yield from self._negotiate(s, offer)
        reports = {x.stem: OutputReport(stream_wav_name(x.stem)) for x in specs}
        record = session.sidecar(reports, sc.SessionStatus.RECORDING)
        made: jobs.SessionFiles = yield jobs.SetUpFiles(
            self.config.recordings_dir, started_at, session_id, written, specs, record)
        s.place(made)
        if made.error is not None:
            raise made.error
        layout = s.layout
        dialog_id: DialogId | None = yield Answer(event.pending, 200, s.local, answer,
                                                  "application/sdp", str(layout.directory))
        s.answering = None
        if dialog_id is None:
            self._log("info", "invite_gone_before_answer", s.context)  # cancelled meanwhile
            yield from self._discard(s)
            return
        self._move(s, Lifecycle.RECORDING)
        s.dialog_id = dialog_id
        self._by_dialog[dialog_id] = s
        s.context.update(session_id=session.session_id, dir=str(layout.directory))
        self._schedule_tick(s)
        self._out.append(Started(str(layout.directory), dialog_id))
        if self.config.live:
            self._out.append(StartLive(session))
        self._log("info", "session_started", s.context, streams=[x.stem for x in session.streams],
                  ports=list(s.ports), transport=peer.transport)
        if s.end_after_setup is not None:
            self._end(s, s.end_after_setup, at=self.now,
                      bye=s.end_after_setup is not sc.EndReason.CRASH)

    def _negotiate(self, s: SessionEntry, offer: SessionDescription
                   ) -> Generator[Any, Any, tuple[bytes, tuple[jobs.OutputSpec, ...]]]:
        """Answer an offer: ports for new m-lines; streams the answer declines stop.
        Returns the answer and the files its new streams need (the caller opens them)."""
        session = s.recording
        acceptable = session.acceptable(offer)  # 488 when nothing can be taken
        known = {x.index for x in session.streams if x.receiving}
        wanted = [i for i, ok in enumerate(acceptable) if ok and i not in known]
        ports: list[int] = []
        if wanted:
            ports = yield OpenPorts(len(wanted), s.ports[-1] if s.ports else None)
            s.ports.extend(ports)
        try:
            answer, started, stopped = session.answer_offer(
                offer, dict(zip(wanted, ports, strict=True)), self.now)
        except PeerError:
            self._unbind(s, ports)
            raise
        used = {x.port for x in started}
        self._unbind(s, [p for p in ports if p not in used])
        for stream in started:
            if s.capture is not None and stream.capture is None:
                stream.capture = []
            self._out.append(Attach(stream.port, stream))
        for stream in stopped:
            self._unbind(s, [stream.port])
        fresh = [x for x in started if x.stem not in s.outputs]  # not a resumed m-line
        specs = tuple(jobs.OutputSpec(x.stem, x.decoders, x.timeline.clock_rate_hz,
                                      x.sample_rate_hz, x.timeline.payload_clock_rates_hz)
                      for x in fresh)
        return answer, specs

    def _open(self, s: SessionEntry, specs: tuple[jobs.OutputSpec, ...]
              ) -> Generator[Any, Any, None]:
        """Open the files of a re-INVITE's or UPDATE's new streams."""
        if specs:
            s.add_outputs((yield jobs.OpenOutputs(s.layout, specs)))

    def _metadata(self, s: SessionEntry, raw: bytes, parsed: RecordingMetadata, method: str,
                  received_at: float) -> Generator[Any, Any, None]:
        session = s.recording
        n = session.apply_metadata(raw, parsed, self.wall(received_at), method)
        yield jobs.WriteMetadata(s.layout, n, raw)

    def _update(self, s: SessionEntry, event: SessionUpdate) -> Operation:
        """A re-INVITE or UPDATE: new metadata, a new offer, or neither."""
        if s.state is not Lifecycle.RECORDING:
            self._out.append(Reject(event.pending, gone()))
            return
        request = event.request
        s.answering = event.pending
        body = split_siprec_body(request.body, request.headers.get("Content-Type"),
                                 require_sdp=False) if request.body else None
        if body is not None and body.metadata is not None:
            yield from self._metadata(s, body.metadata, RecordingMetadata.parse(body.metadata),
                                      request.method, event.received_at)
        answer: bytes | None
        if body is not None and body.sdp is not None:
            answer, specs = yield from self._negotiate(s, SessionDescription.parse(body.sdp))
            yield from self._open(s, specs)
        else:
            # RFC 3311 §5.2 / RFC 3261 §14.2: no offer; a re-INVITE without one gets our
            # current description as the offer.
            answer = s.session.last_answer if request.method == "INVITE" and s.session else None
        yield self._sidecar_job(s)
        yield Answer(event.pending, 200, s.local, answer or b"",
                     "application/sdp" if answer else None)
        s.answering = None
        self._log("info", "session_updated", s.context, method=request.method,
                  streams=[x.stem for x in s.recording.streams if x.receiving])

    def _tick(self, s: SessionEntry) -> Operation:
        """Write what arrived up to now; end the session when it expired."""
        s.tick_queued = False
        if s.state is not Lifecycle.RECORDING or s.session is None:
            return
        now = self.now
        s.ticks += 1
        writes = []
        for stream in s.session.streams:
            if stream.srtp is not None:
                stream.srtp.handle_timer(now)  # ends a rekey's grace period for the old key
            output = s.outputs.get(stream.stem)
            if output is not None:
                horizon, floor = write_window(stream.timeline, now)
                writes.append((output, stream.take_switches(), stream.take_pending(now),
                               horizon, floor))
        sidecar = (self._sidecar_job(s, durable=False)
                   if s.ticks % SIDECAR_EVERY_TICKS == 0 else None)
        captured = s.take_capture()
        if writes or sidecar is not None or captured:
            reports = yield jobs.WriteBatch(tuple(writes), s.capture, captured, sidecar)
            s.reports.update(reports)
        if not is_recording(s):  # a BYE or a failure may have moved it while the write ran
            return
        reason = s.session.expired(now, self.config.rtp_timeout_s, self.config.max_session_s)
        if reason is not None:
            self._log("info", "session_expired", s.context, why=reason)
            self._end(s, sc.EndReason.TIMEOUT, at=now, bye=True)

    def _end(self, s: SessionEntry, reason: sc.EndReason, *, at: float, bye: bool,
             error: str | None = None) -> None:
        """End a recording session: our BYE when the end is ours (RFC 3261 §15.1.1), then
        finish its files after whatever operation is running."""
        self._move(s, Lifecycle.ENDING)
        s.end_reason = reason
        s.next_tick_s = None
        if s.dialog_id is not None:
            self._by_dialog.pop(s.dialog_id, None)
            if bye:
                self._out.append(HangUp(s.dialog_id, at, s.local))
        self._queue(s, lambda: self._finish(s, reason, at, error))

    def _finish(self, s: SessionEntry, reason: sc.EndReason, at: float,
                error: str | None) -> Operation:
        """Flush every track to the session's length, close the files, build the mix,
        write the final sidecar."""
        session = s.recording
        if s.ports:
            yield Drain(tuple(s.ports))  # the packet in flight at the BYE is recorded
        self._unbind(s, list(s.ports))
        finishes = []
        for stream in session.streams:
            output = s.outputs.get(stream.stem)
            if output is not None:
                batch = stream.take_pending(at, last=True)
                finishes.append((output, stream.take_switches(), batch,
                                 stream.timeline.finish(at)))
        if self.config.live:
            self._out.append(EndLive(session, at))  # beside the files: they do not wait
        captured = s.take_capture()
        self._uncapture(s, session.info.call_id)
        order = session.mix_order()
        mix = None
        if order is not None and all(x.stem in s.outputs for x in order):
            mix = (s.outputs[order[0].stem], s.outputs[order[1].stem], s.layout.mix)
        done: jobs.FinishedFiles = yield jobs.FinishFiles(tuple(finishes), s.capture, captured, mix)
        s.reports.update(done.reports)
        if self.config.live:
            yield WaitLive(session)  # the counters of what reached each consumer, final
        failed = reason is sc.EndReason.ERROR
        status = final_status(reason)
        record = session.sidecar(s.reports, status, ended_at=self.wall(at), end_reason=reason,
                                 mix=done.mix, mix_skipped=done.mix_skipped, error=error)
        yield jobs.WriteSidecar(s.layout.sidecar, record)
        self._finished(s, Lifecycle.FAILED if failed else Lifecycle.FINISHED, reason, at)

    def _finished(self, s: SessionEntry, state: Lifecycle, reason: sc.EndReason, at: float) -> None:
        self._move(s, state)
        session = s.recording
        status = sc.SessionStatus.FAILED if state is Lifecycle.FAILED else final_status(reason)
        stats = {x.stem: x.timeline.stats() for x in session.streams}
        if s.dialog_id is not None:
            self._out.append(Finished(status, str(s.layout.directory),
                                      tuple(stats.values()), s.dialog_id))
        self._log("info", "session_finished", s.context, status=status.value,
                  end_reason=reason.value, duration_s=round(at - session.origin_s, 3),
                  packets={k: v.received for k, v in stats.items()},
                  lost={k: v.lost for k, v in stats.items()})

    def _fail(self, s: SessionEntry, error: str, reason: sc.EndReason) -> Operation:
        """Storage failed or a bug: close what can be closed, mark the session failed."""
        self._unbind(s, list(s.ports))  # no packet reaches the counters after this
        if s.session is not None:
            self._uncapture(s, s.session.info.call_id)
            if self.config.live:
                self._out.append(EndLive(s.session, self.now))
        if s.session is None or s.session_dir is None:  # no directory: no file was made
            self._move(s, Lifecycle.FAILED)
            return
        record = s.session.sidecar(s.reports, sc.SessionStatus.FAILED,
                                   ended_at=self.wall(self.now), end_reason=reason, error=error)
        problem = yield jobs.FailFiles(tuple(s.outputs.values()), s.capture,
                                       jobs.WriteSidecar(s.layout.sidecar, record))
        if problem is not None:
            self._log("error", "sidecar_write_failed", s.context, error=problem)
        if s.state is Lifecycle.ENDING:
            self._finished(s, Lifecycle.FAILED, reason, self.now)
        else:
            self._move(s, Lifecycle.FAILED)

    def _uncapture(self, s: SessionEntry, call_id: str) -> None:
        if self._capturing.get(call_id) is s:  # not another dialog of the same Call-ID
            del self._capturing[call_id]

    def _discard(self, s: SessionEntry) -> Generator[Any, Any, None]:
        """A session that never started (rejected or cancelled): remove its files."""
        self._unbind(s, list(s.ports))
        if s.session is not None:
            self._uncapture(s, s.session.info.call_id)
            directory = s.session_dir.directory if s.session_dir is not None else None
            yield jobs.DiscardFiles(tuple(s.outputs.values()), s.capture, directory)
        self._move(s, Lifecycle.DISCARDED)
        self._log("info", "session_discarded", s.context)

    # -- failures: the one classification ----------------------------------------------

    def _failed(self, s: SessionEntry, exc: BaseException) -> None:
        """An operation raised.  A peer error answers the request being handled with its
        status; storage failing fails the session; anything else is a bug, logged with its
        traceback.  Whatever it was, a recorded session is still finalised."""
        pending, s.answering = s.answering, None
        if isinstance(exc, PeerError) and pending is not None:
            setup = s.state is Lifecycle.SETTING_UP
            fields: dict[str, Any] = {} if setup else {"method": pending.request.method}
            self._log("warning", "invite_rejected" if setup else "update_rejected", s.context,
                      status=exc.status, reason=exc.reason, **fields)
            if setup and exc.status == 503:
                self._out.append(Rejected("ports"))
            self._out.append(Reject(pending, exc))
            if setup:
                self._queue_first(s, lambda: self._discard(s))
            return
        storage = isinstance(exc, RecordingIOError)
        error = str(exc) if storage else "internal error"
        if storage:
            self._log("error", "session_storage_failed", s.context, error=str(exc))
        else:
            event = {Lifecycle.SETTING_UP: "session_setup_failed",
                     Lifecycle.ENDING: "session_finish_failed"}.get(s.state, "session_failed")
            self._log("error", event, s.context, exc=exc)
        if pending is not None:
            # Never leave the request unanswered: an INVITE would hold its transaction.
            if s.state is Lifecycle.SETTING_UP and storage:
                self._out.append(Reject(pending, ServiceUnavailable(
                    "Service Unavailable: recording storage failed", retry_after_s=30)))
            else:
                self._out.append(Fail(pending))
        if s.state is Lifecycle.RECORDING:
            self._end(s, sc.EndReason.ERROR, at=self.now, bye=True, error=error)
        else:
            reason = s.end_reason if s.end_reason is not None else sc.EndReason.ERROR
            s.ops.clear()
            self._queue_first(s, lambda: self._fail(s, error, reason))

    # -- running operations -------------------------------------------------------------

    def _queue(self, s: SessionEntry, op: Callable[[], Operation]) -> None:
        s.ops.append(op)
        if s.current is None and not s.stepping:
            self._step(s, None, None)

    def _queue_first(self, s: SessionEntry, op: Callable[[], Operation]) -> None:
        s.ops.appendleft(op)

    def _step(self, s: SessionEntry, value: Any, error: BaseException | None) -> None:
        """Run ``s``'s operations until one waits for the driver or none is left."""
        s.stepping = True
        try:
            self._run(s, value, error)
        finally:
            s.stepping = False

    def _run(self, s: SessionEntry, value: Any, error: BaseException | None) -> None:
        while True:
            if s.current is None:
                if not s.ops:
                    if s.state in (Lifecycle.FINISHED, Lifecycle.FAILED, Lifecycle.DISCARDED):
                        self._sessions.discard(s)
                    return
                s.current = s.ops.popleft()()
                value, error = None, None
            try:
                work = s.current.throw(error) if error is not None else s.current.send(value)
            except StopIteration:
                s.current = None
                continue
            except Exception as exc:
                s.current = None
                self._failed(s, exc)
                continue
            request = Request(next(self._ids), work)
            self._waiting[request.id] = s
            self._out.append(request)
            return

    # -- helpers ------------------------------------------------------------------------

    def _move(self, s: SessionEntry, target: Lifecycle) -> None:
        check_transition(s.state, target)
        s.state = target

    def _unbind(self, s: SessionEntry, ports: list[int]) -> None:
        mine = tuple(port for port in ports if port in s.ports)
        for port in mine:
            s.ports.remove(port)
        if mine:
            self._out.append(Release(mine))

    def _schedule_tick(self, s: SessionEntry) -> None:
        """The session's next tick: the first point of its grid after now."""
        session = s.recording
        while True:
            s.tick_index += 1
            s.next_tick_s = session.origin_s + s.tick_index * TICK_S
            if s.next_tick_s > self.now:
                self._ticks.push(s, s.next_tick_s)
                return

    def _sidecar_job(self, s: SessionEntry, *, durable: bool = True) -> jobs.WriteSidecar:
        session = s.recording
        record = session.sidecar(s.reports, sc.SessionStatus.RECORDING)
        return jobs.WriteSidecar(s.layout.sidecar, record, durable)

    def _log(self, level: str, event: str, context: dict[str, str], *,
             exc: BaseException | None = None, **fields: Any) -> None:
        self._out.append(Log(level, event, dict(context), fields, exc))

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out
