"""The srs application: SIP transports, the UAS core and the recording sessions, wired.

Bytes arrive at :class:`~srs.sip.transport.SipTransports`, go through the pure
:class:`~srs.sip.uas.SipCore`, and its outputs are executed here: ``Transmit`` is sent, and
session events go to the recording core through :class:`~srs.server.sessions.LiveRecorder`.
The SIP core's timers are served by one ``call_at`` handle, re-armed after every input
(docs/architecture.md, "Pure core").
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, assert_never

from srs.config import Settings
from srs.errors import ConfigError, SipParseError
from srs.log import RateLimiter, get_logger
from srs.ops.management import ManagementServer, readiness_problem
from srs.ops.metrics import Metrics
from srs.ops.retention import StorageGuard, run_retention
from srs.ops.webhook import Outbox, WebhookConfig, WebhookSender, WebhookUrl, make_ssl_context
from srs.recording.capture import CaptureRecord, redact
from srs.recording.core import Recorder
from srs.recording.policy import RecorderConfig, answered_codecs, quantize_s
from srs.recording.repair import INDEX_FILE, repair_recordings
from srs.server.media import SocketMedia
from srs.server.pool import WorkerPool
from srs.server.sessions import CoreSignalling, LiveRecorder, SessionReports, live_streams
from srs.server.timer import CoreTimer
from srs.sip.auth import Authenticator
from srs.sip.client_transaction import TimedOut
from srs.sip.parser import SipMessageError
from srs.sip.routing import PeerLike
from srs.sip.transaction import TransactionLayer
from srs.sip.transport import Peer, SipTransports
from srs.sip.uas import Local, NewSession, Refused, SessionEnded, SessionUpdate, SipCore, Transmit
from srs.sip.uas import Output as SipOutput

__all__ = ["Application"]

# On shutdown, how long to wait for the answers to the BYEs srs sent.
BYE_WAIT_S = 2.0
# The reasons of srs_sip_send_errors_total, and the transport counters they read.
_SEND_ERROR_COUNTERS = {"no_connection": "send_no_connection", "stream_dropped": "send_dropped",
                        "slow_peer": "slow_peer_closed", "udp_dropped": "udp_send_dropped"}


class Application:
    def __init__(
        self, settings: Settings, *, tls_context: ssl.SSLContext | None, auth_enabled: bool = True
    ) -> None:
        self.settings = settings
        self.tls_context = tls_context
        self.log = get_logger()
        tokens = settings.auth.tokens if auth_enabled else ()
        self.core = SipCore(
            authenticator=Authenticator.from_strings(
                settings.auth.header, tokens, settings.auth.networks()
            ),
            max_dialogs=max(16, settings.server.max_sessions * 2),
            transactions=TransactionLayer(max_transactions=transaction_table_size(
                settings.server.max_sessions)),
            min_se_s=settings.sip.min_se_s,
        )
        self.transports = SipTransports(
            host=settings.sip.host,
            port=settings.sip.port,
            tls_port=settings.sip.tls_port,
            tls_context=tls_context,
            on_message=self._on_message,
            on_parse_error=self._on_parse_error,
            max_message_bytes=settings.sip.max_message_bytes,
            max_connections=settings.sip.max_connections,
            max_connections_per_ip=settings.sip.max_connections_per_ip,
            first_message_timeout_s=settings.sip.first_message_timeout_s,
            idle_timeout_s=settings.sip.idle_timeout_s,
            allow_networks=settings.auth.networks(),
            in_use=self.core.connection_in_use,
            ephemeral=settings.sip.ephemeral_ports,
        )
        self.sessions: LiveRecorder | WorkerPool | None = None
        self.storage = StorageGuard(settings.recordings.dir,
                                    settings.recordings.min_free_mb * 1024 * 1024)
        self.send_errors = {"raised": 0}
        self.metrics = Metrics(free_bytes=self.storage.free_bytes,
                               send_errors=self._send_error_counts)
        self.webhook: WebhookSender | None = None
        hook = settings.webhook
        if hook.url is not None and hook.secret is not None:
            self.webhook = WebhookSender(
                WebhookConfig(
                    url=WebhookUrl.parse(hook.url), secret=hook.secret,
                    timeout_s=hook.timeout_s, max_attempts=hook.max_attempts,
                    max_delay_s=hook.max_delay_s,
                    ssl_context=make_ssl_context(hook.ca) if hook.ca is not None else None),
                Outbox(settings.server.state_dir / "webhook"),
                recordings_dir=settings.recordings.dir, log=self.log, metrics=self.metrics)
        self.management: ManagementServer | None = None
        self._retention: asyncio.Task[None] | None = None
        self._storage_watch: asyncio.Task[None] | None = None
        self._timer = CoreTimer(self.core.next_timer, self._fire_timer)
        self._warnings = RateLimiter()
        self._local_cache: dict[str, str] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        started = time.time()
        # media.codecs is checked against what the installed FFmpeg decodes (each decoder
        # opened and given a frame, once per process) before anything listens.
        answered = await asyncio.to_thread(answered_codecs, self.settings.media.codecs)
        await asyncio.to_thread(_usable_directory, self.settings.recordings.dir, "recordings.dir")
        report = await asyncio.to_thread(
            repair_recordings, self.settings.recordings.dir, started_before=None,
            index=self.settings.server.state_dir / INDEX_FILE)
        if report.index_problem is not None:
            self.log.warning("repair_index_not_written", error=report.index_problem)
        for outcome in report.outcomes:
            self.log.warning("session_repaired", dir=str(outcome.directory),
                             repaired=outcome.repaired, problems=list(outcome.problems))
            if outcome.repaired and self.webhook is not None:
                await self.webhook.submit(outcome.directory)
        self.metrics.sessions_repaired(sum(o.repaired for o in report.outcomes))
        if self.webhook is not None:
            await self.webhook.start()
        # One fixed offset turns the session clock into Unix time for the sidecar, so
        # every time a session records comes from the same clock as its packets.
        self.epoch_offset_s = quantize_s(time.time() - self.now())
        workers = self.settings.media.worker_count()
        if workers == 1:
            self.sessions = self._single_process()
        else:
            self.sessions = WorkerPool(
                self.settings, workers, core=self.core, transmit=self._execute,
                reports=SessionReports(self.metrics, self.webhook), local_for=self._local_for,
                media_address_for=self._media_address_for, clock=self.now, log=self.log,
                metrics=self.metrics, epoch_offset_s=self.epoch_offset_s,
                storage_problem=self.storage.problem,
                storage_retry_after_s=self.storage.retry_after_s, webhook=self.webhook)
            await self.sessions.start()
        try:
            await self.transports.start()
        except OSError as exc:
            await self.transports.close()
            sip = self.settings.sip
            ports = "any" if sip.ephemeral_ports else f"{sip.port}/{sip.tls_port}"
            raise _listen_error("sip.port", sip.host, ports, exc) from None
        management = self.settings.management
        if management.port:
            self.management = ManagementServer(
                host=management.host, port=0 if management.ephemeral_port else management.port,
                metrics=self.metrics, readiness=self._readiness, log=self.log)
            try:
                await self.management.start()
            except OSError as exc:
                await self.transports.close()
                raise _listen_error("management.port", management.host,
                                    str(self.management.requested_port or "any"), exc) from None
        await asyncio.to_thread(self.storage.free_bytes)  # measured now, then by the watcher
        self._storage_watch = loop.create_task(self.storage.watch())
        if self.settings.recordings.retention_days:
            self._retention = loop.create_task(run_retention(
                self.settings.recordings.dir, self.settings.recordings.retention_days,
                self.log))
        self.log.info(
            "listening",
            udp=self.transports.udp_port or None,
            tcp=self.transports.tcp_port or None,
            tls=self.transports.bound_tls_port or None,
            management=self.management.port if self.management is not None else None,
            host=self.settings.sip.host,
            rtp=f"{self.settings.media.port_min}-{self.settings.media.port_max}",
            auth=self.core.authenticator.enabled,
            codecs=",".join(answered),
            repair_s=round(time.time() - started, 3),
        )

    def _single_process(self) -> LiveRecorder:
        """``media.workers = 1``: the recording core and the RTP sockets in this process."""
        media = SocketMedia(self.settings.media.host, self.settings.media.port_min,
                            self.settings.media.port_max, self.now)
        recorder = Recorder(
            RecorderConfig.from_settings(self.settings),
            epoch_offset_s=self.epoch_offset_s, storage_problem=self.storage.problem,
            storage_retry_after_s=self.storage.retry_after_s)
        return LiveRecorder(
            recorder, media=media, signalling=CoreSignalling(self.core, self._execute, self.now),
            reports=SessionReports(self.metrics, self.webhook), local_for=self._local_for,
            media_address_for=self._media_address_for, clock=self.now, log=self.log,
            live=live_streams(self.settings, self.now, self.log),
        )

    async def shutdown(self) -> None:
        self.log.info("shutting_down", active=self.sessions.active if self.sessions else 0)
        try:
            if self.sessions is not None:
                await self.sessions.shutdown()
        finally:
            await self._close()

    async def _close(self) -> None:
        # Our BYEs went out: give their answers (and UDP retransmissions) a moment.
        deadline = self.now() + BYE_WAIT_S
        while self.core.client.unanswered() and self.now() < deadline:
            await asyncio.sleep(0.05)
        for task in (self._retention, self._storage_watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.close()  # after the sessions: their deliveries are stored
        if self.management is not None:
            await self.management.close()
        self._timer.cancel()
        await self.transports.close()
        self.log.info("stopped")

    # -- inputs from the transports -----------------------------------------------------

    def now(self) -> float:
        """The session clock: the event loop's monotonic time in whole microseconds."""
        return quantize_s(self._loop.time())

    def _readiness(self) -> str | None:
        """For /readyz: the conditions under which an INVITE would get 503."""
        sessions = self.sessions
        if isinstance(sessions, WorkerPool) and not sessions.ready_workers:
            return "media workers: none ready"
        return readiness_problem(
            draining=sessions is None or sessions.draining,
            active=sessions.active if sessions else 0,
            max_sessions=self.settings.server.max_sessions,
            storage_problem=self.storage.problem())

    def _on_message(self, message: Any, peer: Peer) -> None:
        method = getattr(message, "method", None)
        if method is not None:
            self.metrics.sip_request(method)
        now = self.now()
        if self.sessions is not None and self.settings.recordings.capture:
            self._capture(message, peer, now)
        self._execute(self.core.receive(message, peer, now))

    def _capture(self, message: Any, peer: Peer, now: float) -> None:
        """An incoming SIP message of a captured session (``recordings.capture``)."""
        try:
            call_id = message.call_id
        except SipParseError:
            return
        if self.sessions is None:
            return  # capture is a recording feature: no recording layer, nothing captured
        recorder = self.sessions
        if recorder.capturing(call_id):
            local = self._local_for(peer)
            data = redact(message, self.settings.auth.header)
            recorder.capture_sip(call_id, CaptureRecord(now, peer.host, peer.port, local.host,
                                                        local.port, data, peer.transport != "udp"),
                                 remote_host=peer.host)

    def _on_parse_error(self, error: SipMessageError, peer: Peer) -> None:
        allowed, suppressed = self._warnings.allow(("parse", peer.host))
        if allowed:
            self.log.warning("sip_parse_error", src=f"{peer.host}:{peer.port}",
                             transport=peer.transport, reason=error.reason,
                             suppressed=suppressed)
        self._execute(self.core.parse_failed(error, peer, self.now()))

    # -- outputs of the core -----------------------------------------------------------

    def _execute(self, outputs: Iterable[SipOutput]) -> None:
        try:
            for output in outputs:
                if isinstance(output, Transmit):
                    self._send(output)
                elif isinstance(output, Refused):
                    self._refused(output)
                elif isinstance(output, TimedOut):
                    self.log.info("request_timed_out", method=output.method,
                                  call_id=output.call_id)
                elif isinstance(output, NewSession | SessionUpdate | SessionEnded):
                    if self.sessions is None:
                        continue  # no recording layer: the core answers what it can alone
                    if isinstance(output, SessionEnded) and output.dialog_id is None:
                        continue
                    self.sessions.dispatch(output)
                else:
                    assert_never(output)
        finally:
            self._timer.arm()  # the core's next deadline, whatever happened above

    def _send(self, output: Transmit) -> None:
        """Send one message; a send that fails is counted, logged and dropped, so the rest
        of the batch (other peers' answers, session events) still runs."""
        peer = output.peer if isinstance(output.peer, Peer) else None
        if peer is None:
            return
        if not peer.reliable:
            peer = Peer("udp", output.host, output.port)
        try:
            self.transports.send(peer, output.data)
        except Exception as exc:  # SipTransports.send never raises: whatever did is a bug
            self._send_failed(peer, exc)
            return
        self.metrics.sip_transmitted(output.data)
        if self.sessions is not None and self.sessions.capturing(output.call_id):
            local = self._local_for(peer)
            self.sessions.capture_sip(output.call_id, CaptureRecord(
                self.now(), local.host, local.port, output.host, output.port,
                output.data, peer.transport != "udp"), remote_host=output.host)

    def _send_failed(self, peer: Peer, exc: Exception) -> None:
        self.send_errors["raised"] += 1
        allowed, suppressed = self._warnings.allow(("send", peer.host))
        if allowed:
            # Logged with its traceback: the transport promises not to raise, so this
            # surfaces a fault of srs's own (docs/architecture.md, "Error model").
            self.log.error("sip_send_failed", dst=f"{peer.host}:{peer.port}",
                           transport=peer.transport, error=repr(exc), suppressed=suppressed,
                           exc_info=exc)

    def _send_error_counts(self) -> dict[str, int]:
        """For /metrics: every message srs dropped instead of sending, by reason."""
        counters = self.transports.counters
        return {reason: counters[key] for reason, key in _SEND_ERROR_COUNTERS.items()} | {
            "raised": self.send_errors["raised"]}

    def _refused(self, refused: Refused) -> None:
        if refused.status == 403:
            self.metrics.auth_failed()
        peer = refused.peer
        host = getattr(peer, "host", "?")
        allowed, suppressed = self._warnings.allow(("refused", host, refused.status))
        if allowed:
            log = self.log.warning if refused.status == 403 else self.log.info
            log("request_refused", method=refused.method, status=refused.status,
                reason=refused.reason, call_id=refused.call_id,
                src=f"{host}:{getattr(peer, 'port', '?')}", suppressed=suppressed)

    def _fire_timer(self) -> None:
        self._execute(self.core.handle_timer(self.now()))

    # -- addresses ---------------------------------------------------------------------

    def _local_for(self, peer: PeerLike) -> Local:
        port = {"udp": self.transports.udp_port, "tcp": self.transports.tcp_port,
                "tls": self.transports.bound_tls_port}[peer.transport]
        host = self.settings.media.advertised_address or self._route_address(
            self.settings.sip.host, peer.host)
        return Local(host, port, peer.transport)

    def _media_address_for(self, peer: PeerLike) -> str:
        return self.settings.media.advertised_address or self._route_address(
            self.settings.media.host, peer.host)

    def _route_address(self, bound: str, remote: str) -> str:
        """Our address as ``remote`` sees it: the bound address when specific, else the
        address of the interface that routes to ``remote`` (a connected UDP socket's
        local address: no packet is sent)."""
        if not ipaddress.ip_address(bound).is_unspecified:
            return bound
        cached = self._local_cache.get(remote)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in remote else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((remote, 9))
                address = str(probe.getsockname()[0])
            except OSError:
                address = "127.0.0.1" if family == socket.AF_INET else "::1"
        if len(self._local_cache) < 1024:
            self._local_cache[remote] = address
        return address


def transaction_table_size(max_sessions: int) -> int:
    """Server transactions the SIP core may hold.  An answered INVITE's lives 32 s
    (Timer L, RFC 6026) and one source host may hold half of the table, so one recording
    client can set up ``2 * max_sessions`` calls within any 32 s; never below 4,096."""
    return max(4096, 4 * max_sessions)


def _listen_error(key: str, host: str, ports: str, exc: OSError) -> ConfigError:
    return ConfigError(key, f"cannot listen on {host} port {ports}: {exc.strerror or exc}")


def _usable_directory(path: Path, key: str) -> None:
    """Create ``path`` if needed and prove it writable, or raise ConfigError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".srs-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(key, f"cannot use {str(path)!r}: {exc.strerror or exc}") from None
