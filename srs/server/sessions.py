"""The recording sessions of a running server (asyncio shell).

Turns the UAS core's session events into recordings: parses the body, binds one UDP socket
per accepted m-line, creates the session directory, answers, then once a second hands each
stream's placed payloads to a worker thread that decodes and writes them (DESIGN.md rule
10: the event loop only parses headers and places payloads).  Ends sessions on BYE, RTP
inactivity, maximum length, shutdown, or a bug (logged with its traceback; the session
is still finalised).  Every task is kept and awaited; none is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from srs.config import Settings
from srs.errors import CallDoesNotExist, PeerError, ServiceUnavailable
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.multipart import split_siprec_body
from srs.recording import sidecar as sc
from srs.recording.capture import CAPTURE_FILE, CaptureRecord, SessionCapture, collect, redact
from srs.recording.layout import create_session_dir, write_metadata
from srs.server.media import MediaPorts
from srs.recording.mix import MixResult, mix_stereo
from srs.recording.output import StreamOutput
from srs.recording.session import RecordingSession, call_info_from_invite
from srs.recording.wav import RecordingIOError
from srs.sdp.description import SessionDescription
from srs.ops.metrics import Metrics
from srs.ops.retention import StorageGuard, directory_bytes
from srs.sip.dialog import DialogId
from srs.ops.webhook import WebhookSender
from srs.sip.uas import Local, NewSession, SessionEnded, SessionUpdate, SipCore

__all__ = ["SessionManager", "TICK_S", "Blocking"]

# Runs blocking file work: asyncio.to_thread live (off the event loop), a plain call in
# a replay (which owns no event loop time worth protecting).
Blocking = Callable[..., Awaitable[Any]]

TICK_S = 1.0
# Audio is written up to this long before now.  Each tick first releases what the reorder
# buffer held longer than its hold time (0.1 s); a released packet is placed by its RTP
# timestamp, which may put it somewhat before its arrival.  So a recording in progress is
# on disk up to about WRITE_LAG_S + TICK_S before now.
WRITE_LAG_S = 0.4
# ... but no further than the audio that has arrived, unless that is more than this far
# behind (hold, silence suppression, a vanished sender: silence is written this late).  An
# overloaded server reads packets late; they are written when read instead of being cut.
# Audio that still lands behind the written part is cut and counted (trimmed_samples).
SILENCE_LAG_S = 3.0
# The sidecar is rewritten with the current counters this often while recording, so a
# crash leaves recent numbers (it is also rewritten on every signalling change).
SIDECAR_EVERY_TICKS = 5
# How long shutdown waits for sessions that are finishing on their own.
SHUTDOWN_WAIT_S = 30.0


@dataclass(eq=False)
class _Live:
    """A session being recorded, with the shell's resources for it."""

    session: RecordingSession
    dialog_id: DialogId | None
    local: Local
    ports: list[int] = field(default_factory=list)
    outputs: dict[str, StreamOutput] = field(default_factory=dict)  # by stream stem
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ticks: int = 0
    capture: SessionCapture | None = None
    ending: bool = False
    log: Any = None


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        core: SipCore,
        *,
        transmit: Callable[[list[Any]], None],
        local_for: Callable[[Any], Local],
        media_address_for: Callable[[Any], str],
        log: Any,
        media: MediaPorts,
        clock: Callable[[], float],
        epoch_offset_s: float,
        blocking: Blocking = asyncio.to_thread,
        autotick: bool = True,
        metrics: Metrics | None = None,
        storage: StorageGuard | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        """``clock`` is the session clock (monotonic seconds, microsecond-quantized);
        ``epoch_offset_s`` turns it into Unix time for the sidecar.  With ``autotick``
        each session writes once a second on its own; without, the caller calls
        :meth:`tick` (a replay, driven by packet time)."""
        self.settings = settings
        self.core = core
        self.transmit = transmit
        self.local_for = local_for
        self.media_address_for = media_address_for
        self.log = log
        self.media = media
        self.metrics = metrics
        self.storage = storage
        self.webhook = webhook
        self.clock = clock
        self.epoch_offset_s = epoch_offset_s
        self.blocking = blocking
        self.autotick = autotick
        self.sessions: dict[DialogId, _Live] = {}
        self.setting_up = 0
        self.setups: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.capturing: dict[str, _Live] = {}  # Call-ID -> captured session
        self._loop = asyncio.get_running_loop()

    def wall(self, now: float) -> datetime:
        """The Unix time of a session-clock reading, for the sidecar."""
        return datetime.fromtimestamp(now + self.epoch_offset_s, timezone.utc)

    # -- event dispatch -----------------------------------------------------------------

    def dispatch(self, event: Any) -> None:
        """Start the coroutine for a session event; the task is kept and its failure
        logged (DESIGN.md rule 7)."""
        if isinstance(event, NewSession):
            self.setups.add(self._keep(self._new_session(event)))
            return
        elif isinstance(event, SessionUpdate):
            coro = self._update(event)
        elif isinstance(event, SessionEnded):
            coro = self._ended(event)
        else:
            return
        self._keep(coro)

    def _keep(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.setups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", exc_info=task.exception())

    # -- a new session ------------------------------------------------------------------

    async def _new_session(self, event: NewSession) -> None:
        request, peer, pending = event.request, event.peer, event.pending
        now = event.received_at
        log = self.log.bind(call_id=request.call_id, src=f"{peer.host}:{peer.port}")
        if self.draining or len(self.sessions) + self.setting_up >= self.settings.server.max_sessions:
            reason = "shutting down" if self.draining else "session limit reached"
            log.warning("invite_rejected", status=503, reason=reason)
            if self.metrics is not None:
                self.metrics.session_rejected("draining" if self.draining else "limit")
            self.transmit(self.core.reject(
                pending, ServiceUnavailable(f"Service Unavailable: {reason}", retry_after_s=10), now))
            return
        if self.storage is not None:
            try:
                self.storage.admit()  # 503 with Retry-After while short of disk
            except ServiceUnavailable as exc:
                log.warning("invite_rejected", status=503, reason=exc.reason)
                if self.metrics is not None:
                    self.metrics.session_rejected("storage")
                self.transmit(self.core.reject(pending, exc, now))
                return
        self.setting_up += 1
        live: _Live | None = None
        try:
            body = split_siprec_body(request.body, request.headers.get("Content-Type"))
            offer = SessionDescription.parse(body.sdp or b"")
            metadata = RecordingMetadata.parse(body.metadata) if body.metadata else None
            info = call_info_from_invite(request, peer.host, peer.port, peer.transport,
                                         credential_header=self.settings.auth.header)
            started_at = self.wall(now)
            session_id = (metadata.sessions[0].session_id if metadata and metadata.sessions
                          else info.call_id)
            layout = await self.blocking(
                create_session_dir, self.settings.recordings.dir, started_at, session_id)
            session = RecordingSession(
                info=info, layout=layout, started_at=started_at, origin_s=now,
                media_address=self.media_address_for(peer),
                sdp_session_id=str(secrets.randbelow(2**62)),
                srtp_policy=self.settings.media.srtp,
            )
            live = _Live(session, None, self.local_for(peer), log=log)
            if self.settings.recordings.capture:
                live.capture = SessionCapture(layout.directory / CAPTURE_FILE, self.epoch_offset_s)
                self.capturing[info.call_id] = live
                self.capture_sip(info.call_id, now, peer.host, peer.port, live.local.host,
                                 live.local.port, peer.transport, self.redacted(request))
            if metadata is not None and body.metadata is not None:
                await self._metadata(live, body.metadata, metadata, "INVITE", now)
            answer = await self._negotiate(live, offer)
            await self._save_sidecar(live)
            outputs, dialog_id = self.core.answer(
                pending, 200, self.clock(), local=live.local, body=answer,
                content_type="application/sdp")
            self.transmit(outputs)
            if dialog_id is None:
                log.info("invite_gone_before_answer")  # cancelled while we prepared
                await self._discard(live)
                return
            live.dialog_id = dialog_id
            self.sessions[dialog_id] = live
            if self.metrics is not None:
                self.metrics.session_started()
            live.log = log = log.bind(session_id=session.session_id, dir=str(layout.directory))
            if self.autotick:
                live.task = self._keep(self._run(live))
            log.info("session_started", streams=[s.stem for s in session.streams],
                     ports=live.ports, transport=peer.transport)
        except PeerError as exc:
            log.warning("invite_rejected", status=exc.status, reason=exc.reason)
            if self.metrics is not None and exc.status == 503:
                self.metrics.session_rejected("ports")
            self.transmit(self.core.reject(pending, exc, self.clock()))
            if live is not None:
                await self._discard(live)
        except RecordingIOError as exc:
            log.error("session_storage_failed", error=str(exc))
            self.transmit(self.core.reject(pending, ServiceUnavailable(
                "Service Unavailable: recording storage failed", retry_after_s=30),
                self.clock()))
            if live is not None:
                await self._fail_files(live, str(exc))
        except Exception:
            # A bug: surface it, answer the INVITE (an unanswered one would hold its
            # transaction forever) and clean up what was made.
            log.exception("session_setup_failed")
            self.transmit(self.core.reject(pending, PeerError("Server Internal Error", status=500),
                                           self.clock()))
            if live is not None:
                if live.dialog_id is not None:
                    self.sessions.pop(live.dialog_id, None)
                await self._fail_files(live, "internal error")
        finally:
            self.setting_up -= 1

    async def _negotiate(self, live: _Live, offer: SessionDescription) -> bytes:
        """Answer an offer: bind sockets for new m-lines, start their files."""
        session = live.session
        acceptable = session.acceptable(offer)  # 488 when nothing can be taken
        known = {s.index for s in session.streams if s.receiving}
        wanted = [i for i, ok in enumerate(acceptable) if ok and i not in known]
        ports = await self.media.open(len(wanted), live.ports[-1] if live.ports else None)
        live.ports.extend(ports)
        try:
            answer, started, stopped = session.answer_offer(
                offer, dict(zip(wanted, ports)), self.clock())
        except PeerError:
            self._unbind(live, ports)
            raise
        used = {s.port for s in started}
        self._unbind(live, [p for p in ports if p not in used])
        for stream in started:
            if live.capture is not None:
                stream.capture = []
            self.media.attach(stream.port, stream)
            output = await self.blocking(
                StreamOutput, session.layout.stream_wav(stream.stem), stream.decoders,
                stream.timeline.clock_rate_hz, stream.timeline.clock_rate_hz)
            output.label = stream.stem
            live.outputs[stream.stem] = output
        for stream in stopped:
            self._unbind(live, [stream.port])
        return answer

    def _unbind(self, live: _Live, ports: list[int]) -> None:
        mine = [port for port in ports if port in live.ports]
        for port in mine:
            live.ports.remove(port)
        if mine:
            self.media.close(mine)

    async def _metadata(self, live: _Live, raw: bytes, parsed: RecordingMetadata,
                        method: str, received_at: float) -> None:
        n = live.session.apply_metadata(raw, parsed, self.wall(received_at), method)
        await self.blocking(write_metadata, live.session.layout, n, raw)

    # -- mid-call -----------------------------------------------------------------------

    async def _update(self, event: SessionUpdate) -> None:
        live = self.sessions.get(event.dialog_id)
        now = self.clock()
        if live is None or live.ending:
            self.transmit(self.core.reject(event.pending, _gone(), now))
            return
        request = event.request
        try:
            body = split_siprec_body(request.body, request.headers.get("Content-Type"),
                                     require_sdp=False) if request.body else None
            async with live.lock:
                if body is not None and body.metadata is not None:
                    await self._metadata(live, body.metadata, RecordingMetadata.parse(body.metadata),
                                         request.method, event.received_at)
                if body is not None and body.sdp is not None:
                    answer: bytes | None = await self._negotiate(
                        live, SessionDescription.parse(body.sdp))
                else:
                    # RFC 3311 §5.2 / RFC 3261 §14.2: no offer; a re-INVITE without one
                    # gets our current description as the offer.
                    answer = live.session.last_answer if request.method == "INVITE" else None
                await self._save_sidecar(live)
        except PeerError as exc:
            live.log.warning("update_rejected", method=request.method, status=exc.status,
                             reason=exc.reason)
            self.transmit(self.core.reject(event.pending, exc, self.clock()))
            return
        except Exception as exc:
            # Storage failed or a bug: answer (never leave the request hanging), then end
            # the session from our side and finalise what was recorded.
            storage = isinstance(exc, RecordingIOError)
            if storage:
                live.log.error("session_storage_failed", error=str(exc))
            else:
                live.log.exception("session_update_failed")
            self.transmit(self.core.reject(event.pending, PeerError("Server Internal Error",
                                                                    status=500), self.clock()))
            self._end_from_our_side(live, sc.EndReason.ERROR,
                                    error=str(exc) if storage else "internal error")
            return
        outputs, _ = self.core.answer(
            event.pending, 200, self.clock(), local=live.local, body=answer or b"",
            content_type="application/sdp" if answer else None)
        self.transmit(outputs)
        live.log.info("session_updated", method=request.method,
                      streams=[s.stem for s in live.session.streams if s.receiving])

    async def _ended(self, event: SessionEnded) -> None:
        if event.dialog_id is None:
            return  # a CANCEL before the answer: _new_session sees the transaction gone
        live = self.sessions.get(event.dialog_id)
        if live is None:
            return
        if event.reason == "timeout":
            # No ACK for our 2xx (RFC 3261 §13.3.1.4): end with a BYE.
            self.transmit(self.core.hang_up(event.dialog_id, event.at, local=live.local))
            await self.finish(live, sc.EndReason.TIMEOUT, at=event.at)
        else:
            await self.finish(live, sc.EndReason.BYE, at=event.at)

    # -- the running session ------------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        """Once a second: :meth:`tick`, until the session ends."""
        try:
            while not live.ending:
                try:
                    await asyncio.wait_for(live.stop.wait(), TICK_S)
                    return  # finish() asked us to stop: it writes the rest
                except TimeoutError:
                    pass
                if await self.tick(live, self.clock()):
                    return
        except RecordingIOError as exc:
            live.log.error("session_storage_failed", error=str(exc))
            self._end_from_our_side(live, sc.EndReason.ERROR, error=str(exc))
        except Exception:
            # A bug: surface it loudly, and still finalise what was recorded.
            live.log.exception("session_failed")
            self._end_from_our_side(live, sc.EndReason.ERROR, error="internal error")

    async def tick(self, live: _Live, now: float) -> bool:
        """Write what arrived up to ``now``; end the session when it expired (inactivity,
        maximum length).  Returns True when the session was ended."""
        live.ticks += 1
        async with live.lock:
            await self._write_batch(live, now, sidecar=live.ticks % SIDECAR_EVERY_TICKS == 0)
        media = self.settings.media
        reason = live.session.expired(now, media.rtp_timeout_s, media.max_session_s)
        if reason is None:
            return False
        live.log.info("session_expired", why=reason)
        self._end_from_our_side(live, sc.EndReason.TIMEOUT, at=now)
        return True

    def _end_from_our_side(self, live: _Live, reason: sc.EndReason, *, error: str | None = None,
                           at: float | None = None) -> None:
        """BYE to the recording client (RFC 3261 §15.1.1), then finalise."""
        now = self.clock() if at is None else at
        if live.dialog_id is not None:
            self.transmit(self.core.hang_up(live.dialog_id, now, local=live.local))
        self._keep(self.finish(live, reason, error=error, at=now))

    async def _write_batch(self, live: _Live, now: float, *, sidecar: bool = False) -> None:
        jobs = []
        for stream in live.session.streams:
            if stream.srtp is not None:
                stream.srtp.handle_timer(now)  # ends a rekey's grace period for the old key
            output = live.outputs.get(stream.stem)
            if output is None:
                continue
            batch = stream.take_pending(now)
            horizon = max(0, stream.timeline.wall_offset(now - WRITE_LAG_S))
            floor = max(0, stream.timeline.wall_offset(now - SILENCE_LAG_S))
            jobs.append((output, batch, horizon, floor))
        record = live.session.sidecar(live.outputs, sc.SessionStatus.RECORDING) if sidecar else None
        captured = self._take_capture(live)
        if jobs or record is not None or captured:
            await self.blocking(self._write_jobs, live, jobs, record, captured)

    @staticmethod
    def _write_jobs(live: _Live, jobs: list[tuple[StreamOutput, list[Any], int, int]],
                    record: sc.SessionSidecar | None, captured: list[CaptureRecord]) -> None:
        for output, batch, horizon, floor in jobs:
            output.write(batch, horizon, floor)
        if captured and live.capture is not None:
            live.capture.write(captured)
        if record is not None:
            sc.write_sidecar(live.session.layout.sidecar, record)

    # -- capture ------------------------------------------------------------------------

    def redacted(self, message: Any) -> bytes:
        return redact(message, self.settings.auth.header)

    def capture_sip(self, call_id: str, now: float, src: str, sport: int, dst: str, dport: int,
                    transport: str, data: bytes) -> None:
        """A SIP message to or from a captured session (event loop)."""
        live = self.capturing.get(call_id)
        if live is not None and live.capture is not None:
            live.capture.add(CaptureRecord(now, src, sport, dst, dport, data, transport != "udp"))

    def _take_capture(self, live: _Live) -> list[CaptureRecord]:
        return [] if live.capture is None else collect(live.capture, live.session)

    async def _save_sidecar(self, live: _Live) -> None:
        """Rewrite session.json: the record is built here, on the event loop that owns the
        track counters; only the file write goes to the worker thread."""
        record = live.session.sidecar(live.outputs, sc.SessionStatus.RECORDING)
        await self.blocking(sc.write_sidecar, live.session.layout.sidecar, record)

    # -- the end ------------------------------------------------------------------------

    async def finish(self, live: _Live, reason: sc.EndReason, *, error: str | None = None,
                     at: float | None = None) -> None:
        """Finalise a session: flush every track to the session's length, close the
        files, build the mix, write the final sidecar."""
        if live.ending:
            return
        live.ending = True
        if live.dialog_id is not None:
            self.sessions.pop(live.dialog_id, None)
        live.stop.set()
        task = live.task
        if task is not None and task is not asyncio.current_task():
            # Let a write in progress complete: the worker thread cannot be interrupted,
            # and the files must not be closed under it.
            await asyncio.wait([task])
        async with live.lock:
            now = self.clock() if at is None else at
            self._unbind(live, list(live.ports))
            jobs = []
            for stream in live.session.streams:
                output = live.outputs.get(stream.stem)
                if output is None:
                    continue
                batch = stream.take_pending(now) + stream.timeline.flush()
                jobs.append((output, batch, stream.timeline.finish(now)))
            captured = self._take_capture(live)
            self.capturing.pop(live.session.info.call_id, None)
            ended_at = self.wall(now)
            status = sc.SessionStatus.COMPLETE if reason is not sc.EndReason.ERROR else sc.SessionStatus.FAILED
            try:
                await self.blocking(self._finish_files, live, jobs, status, ended_at, reason, error,
                                    captured)
            except RecordingIOError as exc:
                live.log.error("session_storage_failed", error=str(exc))
                await self._fail_files(live, str(exc), reason=reason)
                status = sc.SessionStatus.FAILED
            except Exception:
                live.log.exception("session_finish_failed")
                await self._fail_files(live, "internal error", reason=reason)
                status = sc.SessionStatus.FAILED
        streams = {s.stem: s.timeline.stats() for s in live.session.streams}
        if self.metrics is not None and live.dialog_id is not None:
            written = await self.blocking(directory_bytes, live.session.layout.directory)
            self.metrics.session_finished(status.value, streams.values(), written)
        if self.webhook is not None:
            await self.webhook.submit(live.session.layout.directory)
        live.log.info(
            "session_finished", status=status.value, end_reason=reason.value,
            duration_s=round(now - live.session.origin_s, 3),
            packets={k: v.received for k, v in streams.items()},
            lost={k: v.lost for k, v in streams.items()},
        )

    def _finish_files(self, live: _Live, jobs: list[tuple[StreamOutput, list[Any], int]],
                      status: sc.SessionStatus, ended_at: datetime, reason: sc.EndReason,
                      error: str | None, captured: list[CaptureRecord]) -> None:
        for output, batch, total in jobs:
            output.finish(batch, total)
        if live.capture is not None:
            live.capture.write(captured)
            live.capture.close()
        mix, skipped = None, None
        order = live.session.mix_order()
        if order is not None and all(
            s.stem in live.outputs and live.outputs[s.stem].failed is None for s in order
        ):
            left, right = (live.outputs[s.stem].path for s in order)
            result = mix_stereo(left, right, live.session.layout.mix)
            if isinstance(result, MixResult):
                mix = sc.MixRecord(file=result.path.name, channels=(order[0].stem, order[1].stem),
                                   sha256=sc.sha256_file(result.path))
            else:
                skipped = result.reason
        # The sockets are closed: nothing touches the track counters any more.
        record = live.session.sidecar(live.outputs, status, ended_at=ended_at, end_reason=reason, mix=mix,
                               mix_skipped=skipped, error=error, final=True)
        sc.write_sidecar(live.session.layout.sidecar, record)

    async def _fail_files(self, live: _Live, error: str, *,
                          reason: sc.EndReason = sc.EndReason.ERROR) -> None:
        """Storage failed: close what can be closed and mark the session failed."""
        def work() -> None:
            for output in live.outputs.values():
                try:
                    output.writer.close()
                except (RecordingIOError, OSError):
                    continue  # the disk is the problem; the other files may still close
            if live.capture is not None:
                live.capture.close()
            try:
                sc.write_sidecar(live.session.layout.sidecar, record)
            except (RecordingIOError, OSError) as exc:
                live.log.error("sidecar_write_failed", error=str(exc))
        self.capturing.pop(live.session.info.call_id, None)
        self._unbind(live, list(live.ports))  # no packet reaches the counters after this
        record = live.session.sidecar(live.outputs, sc.SessionStatus.FAILED, ended_at=self.wall(self.clock()),
                               end_reason=reason, error=error)
        await self.blocking(work)

    async def _discard(self, live: _Live) -> None:
        """A session that never started (rejected or cancelled): remove its files."""
        self.capturing.pop(live.session.info.call_id, None)
        self._unbind(live, list(live.ports))
        def work() -> None:
            for output in live.outputs.values():
                output.writer.close()
            if live.capture is not None:
                live.capture.close()
            shutil.rmtree(live.session.layout.directory, ignore_errors=True)
        await self.blocking(work)

    async def shutdown(self) -> None:
        """Stop taking sessions; BYE and finalise every active one."""
        self.draining = True
        # INVITEs being set up finish first (answered, or refused with 503), so that no
        # half-made session directory is left behind.
        if self.setups:
            await asyncio.wait(list(self.setups))
        now = self.clock()
        for live in list(self.sessions.values()):
            if live.dialog_id is not None:
                self.transmit(self.core.hang_up(live.dialog_id, now, local=live.local))
        await asyncio.gather(*(self.finish(live, sc.EndReason.SHUTDOWN)
                               for live in list(self.sessions.values())))
        # Sessions that ended just before (BYE, timeout) may still be finishing: their
        # files and sidecars are completed, not cancelled half way.
        deadline = self._loop.time() + SHUTDOWN_WAIT_S
        while self.tasks and self._loop.time() < deadline:
            await asyncio.wait(list(self.tasks), timeout=deadline - self._loop.time())
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _gone() -> PeerError:
    return CallDoesNotExist("Call/Transaction Does Not Exist")

