"""Prometheus metrics of a running server, in a registry of its own.

The shell calls the small methods below where things happen; each is one or two counter
increments, cheap enough for every SIP message.  Nothing is counted per RTP packet: the
RTP counters (received, lost, dropped by reason, SRTP failures) and bytes written are
added once per session, when it finishes, from the counters the session already keeps
(``session_finished``).  A long call therefore shows up in them at its end; live traffic
is visible as ``srs_sessions_active``.

Free space of the recordings directory is measured at scrape time (a ``statvfs`` through
the ``free_bytes`` callable), and so are the SIP messages that could not be sent (the
``send_errors`` callable: the transports' own drop counters and the shell's); event-loop
lag is pushed by the shell's lag monitor.

Label values are bounded: SIP methods outside RFC 3261 and its extensions become
``other``, statuses are 100-699 (else ``other``), and at most :data:`MAX_DROP_REASONS`
distinct drop reasons get a label of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["Metrics", "StreamCounts", "CONTENT_TYPE", "MAX_DROP_REASONS", "SESSION_STATUSES"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MAX_DROP_REASONS: Final = 32
SESSION_STATUSES: Final = ("complete", "interrupted", "failed")
# RFC 3261 and the extensions a recording client may send (RFC 3262, 3311, 3428, 3515,
# 6086, 6665).
_METHODS: Final = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                             "UPDATE", "INFO", "MESSAGE", "REFER", "NOTIFY", "SUBSCRIBE",
                             "PUBLISH"})
_LAG_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StreamCounts(Protocol):
    """What ``session_finished`` reads of a stream: both ``TrackStats`` and the sidecar's
    ``PacketCounts`` fit."""

    @property
    def received(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...


class _FreeSpace(Collector):
    def __init__(self, free_bytes: Callable[[], float | None]) -> None:
        self._free_bytes = free_bytes

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "srs_recordings_free_bytes",
            "Free bytes (for unprivileged users) on the file system of recordings.dir.")

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names: give them without measuring (the directory
        # may not exist yet, and the measurement belongs to scrape time).
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        value = self._free_bytes()
        if value is not None:
            family.add_metric([], value)
        yield family


class _SendErrors(Collector):
    def __init__(self, send_errors: Callable[[], Mapping[str, int]]) -> None:
        self._send_errors = send_errors

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "srs_sip_send_errors", "SIP messages srs could not send and dropped, by reason.",
            labels=["reason"])

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for reason, count in sorted(self._send_errors().items()):
            family.add_metric([reason], count)
        yield family


class Metrics:
    def __init__(self, *, free_bytes: Callable[[], float | None] | None = None,
                 send_errors: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._active = Gauge("srs_sessions_active", "Recording sessions in progress.",
                             registry=r)
        self._finished = Counter("srs_sessions_finished", "Finished recording sessions by "
                                 "sidecar status.", ["status"], registry=r)
        self._rejected = Counter("srs_invites_rejected", "INVITEs answered 503 before a "
                                 "session started, by reason.", ["reason"], registry=r)
        self._requests = Counter("srs_sip_requests", "SIP requests received, by method.",
                                 ["method"], registry=r)
        self._responses = Counter("srs_sip_responses", "SIP responses sent (retransmissions "
                                  "included), by status code.", ["status"], registry=r)
        self._auth = Counter("srs_auth_failures", "Requests refused with 403: missing or "
                             "wrong credential, or a source outside auth.allow_cidrs.",
                             registry=r)
        self._rtp_received = Counter("srs_rtp_packets_received", "RTP packets received by "
                                     "finished sessions.", registry=r)
        self._rtp_lost = Counter("srs_rtp_packets_lost", "RTP packets lost (RFC 3550 §A.3) "
                                 "in finished sessions.", registry=r)
        self._rtp_dropped = Counter("srs_rtp_packets_dropped", "RTP packets received but "
                                    "not recorded, by reason, in finished sessions.",
                                    ["reason"], registry=r)
        self._srtp = Counter("srs_srtp_failures", "SRTP packets that failed to unprotect "
                             "(RFC 3711 §3.3), by reason, in finished sessions.", ["reason"],
                             registry=r)
        self._bytes = Counter("srs_recording_bytes_written", "Bytes of recordings written "
                              "by finished sessions.", registry=r)
        self._lag = Gauge("srs_event_loop_lag_seconds", "How late the last periodic "
                          "event-loop timer fired.", registry=r)
        self._lag_hist = Histogram("srs_event_loop_lag_observed_seconds", "Every event-loop "
                                   "lag measurement.", buckets=_LAG_BUCKETS_S, registry=r)
        self._webhook = Counter("srs_webhook_attempts", "Completion webhook attempts and "
                                "queueing, by result (delivered, retry, refused, failed, "
                                "dropped).", ["result"], registry=r)
        self._webhook_pending = Gauge("srs_webhook_pending", "Deliveries waiting in the "
                                      "webhook outbox.", registry=r)
        self._workers = Gauge("srs_media_workers", "Media worker processes, by state "
                              "(ready, down).", ["state"], registry=r)
        self._worker_restarts = Counter("srs_media_worker_restarts", "Media workers that "
                                        "died and were started again.", registry=r)
        for status in SESSION_STATUSES:
            self._finished.labels(status)  # present from the start, at 0, for alert rules
        if free_bytes is not None:
            r.register(_FreeSpace(free_bytes))
        if send_errors is not None:
            r.register(_SendErrors(send_errors))
        self._drop_reasons: set[str] = set()

    # -- sessions -------------------------------------------------------------------

    def session_started(self) -> None:
        self._active.inc()

    def session_rejected(self, reason: str) -> None:
        """A 503 before the session started: ``limit``, ``draining``, ``storage``, ``ports``,
        ``overload`` (every media worker busy or restarting)."""
        self._rejected.labels(reason if reason in ("limit", "draining", "storage", "ports",
                                                   "overload") else "other").inc()

    def session_finished(self, status: str, streams: Iterable[StreamCounts],
                         bytes_written: int = 0) -> None:
        """Once per started session, with its final status and per-stream counters."""
        self._active.dec()
        self._finished.labels(status if status in SESSION_STATUSES else "other").inc()
        received = lost = 0
        for stream in streams:
            received += stream.received
            lost += stream.lost
            for reason, count in stream.dropped.items():
                if count <= 0:
                    continue
                label = self._reason(reason)
                self._rtp_dropped.labels(label).inc(count)
                if reason.startswith("srtp_"):
                    self._srtp.labels(label).inc(count)
        self._rtp_received.inc(received)
        self._rtp_lost.inc(lost)
        if bytes_written > 0:
            self._bytes.inc(bytes_written)

    def session_lost(self) -> None:
        """A started session whose media worker died: no longer active.  Its final status
        is counted when its directory is repaired (:meth:`sessions_repaired`)."""
        self._active.dec()

    def media_workers(self, ready: int, total: int) -> None:
        self._workers.labels("ready").set(ready)
        self._workers.labels("down").set(total - ready)

    def media_worker_restarted(self) -> None:
        self._worker_restarts.inc()

    def sessions_repaired(self, count: int) -> None:
        """Sessions a crash left ``recording`` and start-up repair marked ``interrupted``
        (they were never active in this process)."""
        if count > 0:
            self._finished.labels("interrupted").inc(count)

    def _reason(self, reason: str) -> str:
        if reason in self._drop_reasons:
            return reason
        if len(self._drop_reasons) >= MAX_DROP_REASONS or not reason.isascii():
            return "other"
        self._drop_reasons.add(reason)
        return reason

    # -- SIP ------------------------------------------------------------------------

    def sip_request(self, method: str) -> None:
        self._requests.labels(method if method in _METHODS else "other").inc()

    def sip_response(self, status: int) -> None:
        self._responses.labels(str(status) if 100 <= status <= 699 else "other").inc()

    def sip_transmitted(self, data: bytes) -> None:
        """Count an outgoing datagram or stream message when it is a response: the status
        is read from the RFC 3261 §7.2 Status-Line, ``SIP/2.0 NNN``, without parsing."""
        if data[:8] == b"SIP/2.0 " and data[8:11].isdigit():
            self.sip_response(int(data[8:11]))

    def auth_failed(self) -> None:
        self._auth.inc()

    # -- the process ----------------------------------------------------------------

    def observe_loop_lag(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self._lag.set(lag_s)
        self._lag_hist.observe(lag_s)

    def webhook_result(self, result: str) -> None:
        self._webhook.labels(result).inc()

    def webhook_pending(self, count: int) -> None:
        self._webhook_pending.set(count)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
