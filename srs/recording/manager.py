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
import errno
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from srs.config import Settings
from srs.errors import MetadataError, PeerError, ServiceUnavailable, SipParseError
from srs.metadata import RecordingMetadata
from srs.multipart import split_siprec_body
from srs.recording import sidecar as sc
from srs.recording.layout import create_session_dir, write_metadata
from srs.recording.mix import MixResult, mix_stereo
from srs.recording.session import (
    RecordingSession,
    StreamOutput,
    StreamState,
    call_info_from_invite,
)
from srs.recording.wav import RecordingIOError
from srs.rtp.ports import PortPool
from srs.sdp import SessionDescription
from srs.sip.dialog import DialogId
from srs.sip.uas import Local, NewSession, SessionEnded, SessionUpdate, SipCore

__all__ = ["SessionManager", "TICK_S"]

TICK_S = 1.0
# Audio is written up to this long before now.  Each tick first releases what the reorder
# buffer held longer than its hold time (0.1 s); a released packet is placed by its RTP
# timestamp, which may put it somewhat before its arrival.  Audio placed more than the
# remaining 0.3 s before its arrival, behind what is already written, is cut (counted by
# the assembler) rather than rewinding the file.  So a recording in progress is on disk
# up to about WRITE_LAG_S + TICK_S before now.
WRITE_LAG_S = 0.4
# The sidecar is rewritten with the current counters this often while recording, so a
# crash leaves recent numbers (it is also rewritten on every signalling change).
SIDECAR_EVERY_TICKS = 5
# Ports of the range another process holds are skipped; this many in a row give 503.
_BIND_ATTEMPTS = 32
_RTP_RCVBUF_BYTES = 256 * 1024


class _RtpProtocol(asyncio.DatagramProtocol):
    """The per-packet path: one call into the stream, nothing else."""

    __slots__ = ("stream", "clock")

    def __init__(self, stream: StreamState, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.clock = clock

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stream.receive(data, (addr[0], addr[1]), self.clock())

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP for a datagram we never sent: nothing to do


@dataclass(eq=False)
class _Live:
    """A session being recorded, with the shell's resources for it."""

    session: RecordingSession
    dialog_id: DialogId | None
    local: Local
    ports: list[int] = field(default_factory=list)
    transports: dict[int, asyncio.DatagramTransport] = field(default_factory=dict)
    outputs: dict[int, StreamOutput] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
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
    ) -> None:
        self.settings = settings
        self.core = core
        self.transmit = transmit
        self.local_for = local_for
        self.media_address_for = media_address_for
        self.log = log
        self.ports = PortPool(settings.media.port_min, settings.media.port_max)
        self.sessions: dict[DialogId, _Live] = {}
        self.setting_up = 0
        self.setups: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finished: dict[str, int] = {}
        self._loop = asyncio.get_running_loop()

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
        now = self._loop.time()
        log = self.log.bind(call_id=request.call_id, src=f"{peer.host}:{peer.port}")
        if self.draining or len(self.sessions) + self.setting_up >= self.settings.server.max_sessions:
            reason = "shutting down" if self.draining else "session limit reached"
            log.warning("invite_rejected", status=503, reason=reason)
            self.transmit(self.core.reject(
                pending, ServiceUnavailable(f"Service Unavailable: {reason}", retry_after_s=10), now))
            return
        self.setting_up += 1
        live: _Live | None = None
        try:
            body = split_siprec_body(request.body, request.headers.get("Content-Type"))
            offer = SessionDescription.parse(body.sdp or b"")
            metadata = RecordingMetadata.parse(body.metadata) if body.metadata else None
            info = call_info_from_invite(request, peer.host, peer.port, peer.transport,
                                         credential_header=self.settings.auth.header)
            started_at = datetime.now(timezone.utc)
            session_id = (metadata.sessions[0].session_id if metadata and metadata.sessions
                          else info.call_id)
            layout = await asyncio.to_thread(
                create_session_dir, self.settings.recordings.dir, started_at, session_id)
            session = RecordingSession(
                info=info, layout=layout, started_at=started_at, origin_s=now,
                media_address=self.media_address_for(peer),
                sdp_session_id=str(secrets.randbelow(2**62)),
                srtp_policy=self.settings.media.srtp,
            )
            live = _Live(session, None, self.local_for(peer), log=log)
            if metadata is not None and body.metadata is not None:
                await self._metadata(live, body.metadata, metadata, "INVITE")
            answer = await self._negotiate(live, offer)
            await self._save_sidecar(live)
            outputs, dialog_id = self.core.answer(
                pending, 200, self._loop.time(), local=live.local, body=answer,
                content_type="application/sdp")
            self.transmit(outputs)
            if dialog_id is None:
                log.info("invite_gone_before_answer")  # cancelled while we prepared
                await self._discard(live)
                return
            live.dialog_id = dialog_id
            self.sessions[dialog_id] = live
            live.log = log = log.bind(session_id=session.session_id, dir=str(layout.directory))
            live.task = self._keep(self._run(live))
            log.info("session_started", streams=[s.stem for s in session.streams],
                     ports=live.ports, transport=peer.transport)
        except PeerError as exc:
            log.warning("invite_rejected", status=exc.status, reason=exc.reason)
            self.transmit(self.core.reject(pending, exc, self._loop.time()))
            if live is not None:
                await self._discard(live)
        except RecordingIOError as exc:
            log.error("session_storage_failed", error=str(exc))
            self.transmit(self.core.reject(pending, ServiceUnavailable(
                "Service Unavailable: recording storage failed", retry_after_s=30),
                self._loop.time()))
            if live is not None:
                await self._fail_files(live, str(exc))
        finally:
            self.setting_up -= 1

    async def _negotiate(self, live: _Live, offer: SessionDescription) -> bytes:
        """Answer an offer: bind sockets for new m-lines, start their files."""
        session = live.session
        acceptable = session.acceptable(offer)  # 488 when nothing can be taken
        known = {s.index for s in session.streams if s.receiving}
        wanted = [i for i, ok in enumerate(acceptable) if ok and i not in known]
        ports = await self._bind(live, len(wanted))
        try:
            answer, started, stopped = session.answer_offer(
                offer, dict(zip(wanted, ports)), self._loop.time())
        except PeerError:
            self._unbind(live, ports)
            raise
        used = {s.port for s in started}
        self._unbind(live, [p for p in ports if p not in used])
        for stream in started:
            transport = live.transports[stream.port]
            transport.set_protocol(_RtpProtocol(stream, self._loop.time))
            output = await asyncio.to_thread(
                StreamOutput, session.layout.stream_wav(stream.stem), stream.decoders,
                stream.timeline.clock_rate_hz, stream.timeline.clock_rate_hz)
            output.label = stream.stem
            live.outputs[stream.index] = output
        for stream in stopped:
            self._unbind(live, [stream.port])
        return answer

    async def _bind(self, live: _Live, count: int) -> list[int]:
        """Take ``count`` ports from the pool and bind a UDP socket on each."""
        if count == 0:
            return []
        skip: set[int] = set()
        for _ in range(_BIND_ATTEMPTS):
            now = self._loop.time()
            if live.ports:
                ports = [self.ports.allocate_near(live.ports[-1], now, skip=frozenset(skip))]
                while len(ports) < count:
                    ports.append(self.ports.allocate_near(ports[-1], now, skip=frozenset(skip)))
            else:
                ports = self.ports.allocate(count, now, skip=frozenset(skip))
            bound: dict[int, asyncio.DatagramTransport] = {}
            failed = None
            for port in ports:
                try:
                    bound[port] = await self._open_rtp(port)
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    failed = port
                    break
            if failed is None:
                live.ports.extend(ports)
                live.transports.update(bound)
                return ports
            for transport in bound.values():
                transport.close()
            self.ports.release(ports, self._loop.time() - self.ports.cooldown_s)
            skip.add(failed)
        raise ServiceUnavailable("Service Unavailable: RTP ports busy", retry_after_s=10)

    async def _open_rtp(self, port: int) -> asyncio.DatagramTransport:
        host = self.settings.media.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RTP_RCVBUF_BYTES)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        # A placeholder protocol until the stream exists (the client learns the port only
        # from our answer, so nothing of value arrives before set_protocol).
        transport, _ = await self._loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=sock)
        return transport

    def _unbind(self, live: _Live, ports: list[int]) -> None:
        released = []
        for port in ports:
            transport = live.transports.pop(port, None)
            if transport is not None:
                transport.close()
            if port in live.ports:
                live.ports.remove(port)
                released.append(port)
        if released:
            self.ports.release(released, self._loop.time())

    async def _metadata(self, live: _Live, raw: bytes, parsed: RecordingMetadata,
                        method: str) -> None:
        n = live.session.apply_metadata(raw, parsed, datetime.now(timezone.utc), method)
        await asyncio.to_thread(write_metadata, live.session.layout, n, raw)

    # -- mid-call -----------------------------------------------------------------------

    async def _update(self, event: SessionUpdate) -> None:
        live = self.sessions.get(event.dialog_id)
        now = self._loop.time()
        if live is None or live.ending:
            self.transmit(self.core.reject(event.pending, _gone(), now))
            return
        request = event.request
        try:
            body = split_siprec_body(request.body, request.headers.get("Content-Type"),
                                     require_sdp=False) if request.body else None
            async with live.lock:
                if body is not None and body.metadata is not None:
                    await self._metadata(live, body.metadata,
                                         RecordingMetadata.parse(body.metadata), request.method)
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
            self.transmit(self.core.reject(event.pending, exc, self._loop.time()))
            return
        outputs, _ = self.core.answer(
            event.pending, 200, self._loop.time(), local=live.local, body=answer or b"",
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
            self.transmit(self.core.hang_up(event.dialog_id, self._loop.time(), local=live.local))
            await self.finish(live, sc.EndReason.TIMEOUT)
        else:
            await self.finish(live, sc.EndReason.BYE)

    # -- the running session ------------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        """Once a second: write what arrived; end the session on inactivity or length."""
        media = self.settings.media
        ticks = 0
        try:
            while not live.ending:
                try:
                    await asyncio.wait_for(live.stop.wait(), TICK_S)
                    return  # finish() asked us to stop: it writes the rest
                except TimeoutError:
                    pass
                now = self._loop.time()
                ticks += 1
                async with live.lock:
                    await self._write_batch(live, now, sidecar=ticks % SIDECAR_EVERY_TICKS == 0)
                reason = self._expired(live, now, media.rtp_timeout_s, media.max_session_s)
                if reason is not None:
                    live.log.info("session_expired", why=reason)
                    self.transmit(self.core.hang_up(live.dialog_id, now, local=live.local))  # type: ignore[arg-type]
                    self._keep(self.finish(live, sc.EndReason.TIMEOUT))
                    return
        except RecordingIOError as exc:
            live.log.error("session_storage_failed", error=str(exc))
            self.transmit(self.core.hang_up(live.dialog_id, self._loop.time(), local=live.local))  # type: ignore[arg-type]
            self._keep(self.finish(live, sc.EndReason.ERROR, error=str(exc)))
        except Exception:
            # A bug: surface it loudly, and still finalise what was recorded.
            live.log.exception("session_failed")
            self.transmit(self.core.hang_up(live.dialog_id, self._loop.time(), local=live.local))  # type: ignore[arg-type]
            self._keep(self.finish(live, sc.EndReason.ERROR, error="internal error"))

    async def _write_batch(self, live: _Live, now: float, *, sidecar: bool = False) -> None:
        jobs = []
        for stream in live.session.streams:
            if stream.srtp is not None:
                stream.srtp.handle_timer(now)  # ends a rekey's grace period for the old key
            output = live.outputs.get(stream.index)
            if output is None:
                continue
            batch = stream.take_pending(now)
            jobs.append((output, batch, max(0, stream.timeline.wall_offset(now - WRITE_LAG_S))))
        record = self._sidecar(live, sc.SessionStatus.RECORDING) if sidecar else None
        if jobs or record is not None:
            await asyncio.to_thread(self._write_jobs, live, jobs, record)

    @staticmethod
    def _write_jobs(live: _Live, jobs: list[tuple[StreamOutput, list[Any], int]],
                    record: sc.SessionSidecar | None) -> None:
        for output, batch, settled in jobs:
            output.write(batch, settled)
        if record is not None:
            sc.write_sidecar(live.session.layout.sidecar, record)

    async def _save_sidecar(self, live: _Live) -> None:
        """Rewrite session.json: the record is built here, on the event loop that owns the
        track counters; only the file write goes to the worker thread."""
        record = self._sidecar(live, sc.SessionStatus.RECORDING)
        await asyncio.to_thread(sc.write_sidecar, live.session.layout.sidecar, record)

    @staticmethod
    def _expired(live: _Live, now: float, rtp_timeout_s: float, max_session_s: float) -> str | None:
        session = live.session
        if now - session.origin_s >= max_session_s:
            return "max_session_s"
        if not any(s.expects_media and s.receiving for s in session.streams):
            return None  # on hold: no media is expected
        last = max((s.last_packet_s or 0.0 for s in session.streams), default=0.0)
        if now - max(last, session.origin_s) >= rtp_timeout_s:
            return "rtp_timeout_s"
        return None

    # -- the end ------------------------------------------------------------------------

    async def finish(self, live: _Live, reason: sc.EndReason, *, error: str | None = None) -> None:
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
            now = self._loop.time()
            self._unbind(live, list(live.ports))
            jobs = []
            for stream in live.session.streams:
                output = live.outputs.get(stream.index)
                if output is None:
                    continue
                batch = stream.take_pending(now) + stream.timeline.flush()
                jobs.append((output, batch, stream.timeline.finish(now)))
            ended_at = datetime.now(timezone.utc)
            status = sc.SessionStatus.COMPLETE if reason is not sc.EndReason.ERROR else sc.SessionStatus.FAILED
            try:
                await asyncio.to_thread(self._finish_files, live, jobs, status, ended_at, reason, error)
            except RecordingIOError as exc:
                live.log.error("session_storage_failed", error=str(exc))
                await self._fail_files(live, str(exc), reason=reason)
                status = sc.SessionStatus.FAILED
        self.finished[status.value] = self.finished.get(status.value, 0) + 1
        streams = {s.stem: s.timeline.stats() for s in live.session.streams}
        live.log.info(
            "session_finished", status=status.value, end_reason=reason.value,
            duration_s=round(now - live.session.origin_s, 3),
            packets={k: v.received for k, v in streams.items()},
            lost={k: v.lost for k, v in streams.items()},
        )

    def _finish_files(self, live: _Live, jobs: list[tuple[StreamOutput, list[Any], int]],
                      status: sc.SessionStatus, ended_at: datetime, reason: sc.EndReason,
                      error: str | None) -> None:
        for output, batch, total in jobs:
            output.finish(batch, total)
        mix, skipped = None, None
        order = live.session.mix_order()
        if order is not None and all(s.index in live.outputs for s in order):
            left, right = (live.outputs[s.index].path for s in order)
            result = mix_stereo(left, right, live.session.layout.mix)
            if isinstance(result, MixResult):
                mix = sc.MixRecord(file=result.path.name, channels=(order[0].stem, order[1].stem),
                                   sha256=sc.sha256_file(result.path))
            else:
                skipped = result.reason
        # The sockets are closed: nothing touches the track counters any more.
        record = self._sidecar(live, status, ended_at=ended_at, end_reason=reason, mix=mix,
                               mix_skipped=skipped, error=error, final=True)
        sc.write_sidecar(live.session.layout.sidecar, record)

    def _sidecar(self, live: _Live, status: sc.SessionStatus, *,
                 ended_at: datetime | None = None, end_reason: sc.EndReason | None = None,
                 mix: sc.MixRecord | None = None, mix_skipped: str | None = None,
                 error: str | None = None, final: bool = False) -> sc.SessionSidecar:
        session = live.session
        streams = []
        dtmf: list[sc.DtmfEvent] = []
        for stream in session.streams:
            output = live.outputs.get(stream.index)
            if output is None:
                continue
            stats = stream.timeline.stats()
            dropped = dict(stats.dropped)
            if stream.other_source_packets:
                dropped["other_source"] = stream.other_source_packets
            jitter = max(stats.jitter_ms.values(), default=0.0)
            streams.append(sc.StreamRecord(
                label=stream.stem, file=output.path.name,
                codec=stream.answered.encoding_name or "unknown",
                clock_rate=stream.timeline.clock_rate_hz,
                srtp=stream.crypto.suite.name if stream.crypto is not None else None,
                participant=session.stream_participant(stream),
                ssrcs=stats.ssrcs,
                packets=sc.PacketCounts(received=stats.received, lost=stats.lost,
                                        duplicated=stats.duplicated, reordered=stats.reordered,
                                        late=stats.late, dropped=dropped,
                                        rtcp=stats.rtcp_packets),
                jitter_ms=round(jitter, 3),
                duration_s=round(output.writer.duration_s, 3),
                sha256=sc.sha256_file(output.path) if final else None,
            ))
            dtmf.extend(output.dtmf_events)
        record = sc.SessionSidecar(
            status=status, call_id=session.info.call_id, from_=session.info.from_,
            to=session.info.to, request_uri=session.info.request_uri,
            source=session.info.source, user_agent=session.info.user_agent,
            siprec=session.siprec_ids(), twilio=session.info.twilio,
            custom_parameters=session.custom_parameters(),
            participants=session.participants(), streams=tuple(streams), mix=mix,
            mix_skipped_reason=mix_skipped, started_at=session.started_at, ended_at=ended_at,
            end_reason=end_reason, metadata_updates=tuple(session.metadata_updates),
            dtmf=tuple(sorted(dtmf, key=lambda d: d.at_s)), error=error,
        )
        return record

    async def _fail_files(self, live: _Live, error: str, *,
                          reason: sc.EndReason = sc.EndReason.ERROR) -> None:
        """Storage failed: close what can be closed and mark the session failed."""
        def work() -> None:
            for output in live.outputs.values():
                try:
                    output.writer.close()
                except (RecordingIOError, OSError):
                    continue  # the disk is the problem; the other files may still close
            try:
                sc.write_sidecar(live.session.layout.sidecar, record)
            except (RecordingIOError, OSError) as exc:
                live.log.error("sidecar_write_failed", error=str(exc))
        self._unbind(live, list(live.ports))  # no packet reaches the counters after this
        record = self._sidecar(live, sc.SessionStatus.FAILED, ended_at=datetime.now(timezone.utc),
                               end_reason=reason, error=error)
        await asyncio.to_thread(work)

    async def _discard(self, live: _Live) -> None:
        """A session that never started (rejected or cancelled): remove its files."""
        self._unbind(live, list(live.ports))
        def work() -> None:
            for output in live.outputs.values():
                output.writer.close()
            shutil.rmtree(live.session.layout.directory, ignore_errors=True)
        await asyncio.to_thread(work)

    async def shutdown(self) -> None:
        """Stop taking sessions; BYE and finalise every active one."""
        self.draining = True
        # INVITEs being set up finish first (answered, or refused with 503), so that no
        # half-made session directory is left behind.
        if self.setups:
            await asyncio.wait(list(self.setups))
        now = self._loop.time()
        for live in list(self.sessions.values()):
            if live.dialog_id is not None:
                self.transmit(self.core.hang_up(live.dialog_id, now, local=live.local))
        await asyncio.gather(*(self.finish(live, sc.EndReason.SHUTDOWN)
                               for live in list(self.sessions.values())))
        pending = [t for t in self.tasks if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _gone() -> PeerError:
    from srs.errors import CallDoesNotExist

    return CallDoesNotExist("Call/Transaction Does Not Exist")


# Peer errors while parsing bodies map to their statuses; listed so readers see them.
_BODY_ERRORS = (SipParseError, MetadataError)
