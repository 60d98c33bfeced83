"""The completion webhook's sender (asyncio shell): outbox in, signed POSTs out.

``submit()`` is what the session layer calls when a session has ended: it reads the
final ``session.json``, wraps it, and stores the delivery in the outbox in a worker
thread, then wakes the sender and returns.  It never waits for the network and never
raises, so a slow or dead receiver cannot delay or endanger a recording.

One task (``run``, kept by :meth:`start` and stopped by :meth:`close`) owns a TaskGroup
with at most ``concurrency`` attempts in flight; pending deliveries wait in a heap keyed
by their due time.  Outcomes (:func:`~srs.ops.webhook.signing.classify_status`):

* 2xx: delivered, removed from the outbox;
* 408, 429, 5xx, timeouts, connection and TLS errors: retried after an exponential,
  jittered delay (``Retry-After`` honoured up to ``max_delay_s``), at most
  ``max_attempts`` attempts in all, counted across restarts; then moved to ``failed/``;
* other statuses (4xx, 3xx: redirects are not followed): refused for good, moved to
  ``failed/`` at once, where an operator can inspect it and move it back to redeliver.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, ParamSpec, Protocol, assert_never

from srs.errors import UsageError
from srs.log import Logger
from srs.ops.webhook.http import HttpTransportError, post
from srs.ops.webhook.outbox import DeliveryRecord, Outbox, OutboxError, OutboxFull, new_delivery_id
from srs.ops.webhook.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    Outcome,
    WebhookUrl,
    backoff_delay_s,
    classify_status,
    parse_retry_after,
    signature_headers,
)

__all__ = ["WebhookConfig", "WebhookSender", "WebhookMetrics", "completion_body",
           "EVENT_SESSION_FINISHED", "make_ssl_context"]

EVENT_SESSION_FINISHED: Final = "session.finished"
_P = ParamSpec("_P")
_SIDECAR: Final = "session.json"
_MAX_SIDECAR_BYTES: Final = 4 * 1024 * 1024


class WebhookMetrics(Protocol):
    def webhook_result(self, result: str) -> None: ...
    def webhook_pending(self, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: WebhookUrl
    secret: str = field(repr=False)  # never in a repr, a log line or an error message
    timeout_s: float = 10.0
    max_attempts: int = 10
    backoff_base_s: float = 5.0
    max_delay_s: float = 900.0
    concurrency: int = 4
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if not self.secret:
            raise UsageError("the webhook needs a secret")
        if self.max_attempts < 1 or self.concurrency < 1 or self.timeout_s <= 0:
            raise UsageError("max_attempts, concurrency and timeout_s must be positive")
        if not 0 < self.backoff_base_s <= self.max_delay_s:
            raise UsageError("backoff_base_s must be positive and at most max_delay_s")


def make_ssl_context(ca: Path | None) -> ssl.SSLContext:
    """The system trust store, or only ``ca`` (a PEM bundle) when given; hostnames checked."""
    return ssl.create_default_context(cafile=str(ca) if ca is not None else None)


def completion_body(delivery_id: str, directory: str, sidecar: bytes) -> bytes:
    """The request body: an envelope around the session's ``session.json`` document.

    ``directory`` is the session directory relative to ``recordings.dir`` (``/``-separated).
    Raises ValueError when ``sidecar`` is not a JSON object.
    """
    session = json.loads(sidecar)
    if not isinstance(session, dict):
        raise ValueError("session.json is not a JSON object")
    envelope = {"event": EVENT_SESSION_FINISHED, "delivery_id": delivery_id,
                "directory": directory, "session": session}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _read_body(directory: Path, recordings_dir: Path, delivery_id: str) -> bytes:
    with open(directory / _SIDECAR, "rb") as f:
        sidecar = f.read(_MAX_SIDECAR_BYTES + 1)
    if len(sidecar) > _MAX_SIDECAR_BYTES:
        raise ValueError(f"session.json is larger than {_MAX_SIDECAR_BYTES} bytes")
    try:
        relative = directory.resolve().relative_to(recordings_dir.resolve()).as_posix()
    except ValueError:
        relative = directory.name  # outside recordings.dir: a caller's mistake, name only
    return completion_body(delivery_id, relative, sidecar)


class WebhookSender:
    def __init__(self, config: WebhookConfig, outbox: Outbox, *, recordings_dir: Path,
                 log: Logger, metrics: WebhookMetrics | None = None,
                 clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random) -> None:
        self.config = config
        self.outbox = outbox
        self.recordings_dir = recordings_dir
        self.log = log.bind(webhook=str(config.url))
        self.metrics = metrics
        self.clock = clock
        self.jitter = jitter
        self._due: list[tuple[float, str]] = []
        self._scheduled: set[str] = set()  # the ids in _due: one entry per delivery
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._due) + len(self._inflight)

    async def start(self) -> None:
        """Resume the deliveries a previous run left in the outbox, then start sending.
        ``submit()`` may be called before (e.g. for sessions repaired at start-up)."""
        if self._task is not None:
            raise UsageError("WebhookSender.start() called twice")
        try:
            records, broken = await asyncio.to_thread(self.outbox.load)
        except OSError as exc:
            self.log.error("webhook_outbox_unusable", dir=str(self.outbox.directory),
                           error=str(exc))
            records, broken = [], []
        for name, problem in broken:
            self.log.error("webhook_outbox_file_broken", file=name, problem=problem)
        for record in records:
            self._schedule(record.next_attempt_at, record.id)
        if records:
            self.log.info("webhook_resumed", pending=len(records))
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("webhook_sender_failed", exc_info=task.exception())

    async def close(self) -> None:
        """Stop; attempts in flight are abandoned and stay in the outbox for next time."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def submit(self, session_dir: Path) -> str | None:
        """Queue the completion of the session in ``session_dir``; the delivery id, or None
        when it could not be stored (logged).  Never raises on I/O or a full outbox."""
        delivery_id = new_delivery_id()
        try:
            record = await asyncio.to_thread(self._store, session_dir, delivery_id)
        except OutboxFull as exc:
            self.log.error("webhook_outbox_full", dir=str(session_dir), problem=str(exc))
            self._result("dropped")
            return None
        except (OSError, ValueError, OutboxError) as exc:
            self.log.error("webhook_enqueue_failed", dir=str(session_dir), error=str(exc))
            self._result("dropped")
            return None
        self._schedule(record.next_attempt_at, record.id)
        self.log.debug("webhook_queued", delivery_id=record.id, dir=str(session_dir))
        return record.id

    def _store(self, session_dir: Path, delivery_id: str) -> DeliveryRecord:
        body = _read_body(session_dir, self.recordings_dir, delivery_id)
        return self.outbox.put(body, event=EVENT_SESSION_FINISHED, now=self.clock(),
                               delivery_id=delivery_id)

    def _schedule(self, due: float, delivery_id: str) -> None:
        # submit() before start() stores a file that start() then finds: keep one entry.
        if delivery_id in self._scheduled or delivery_id in self._inflight:
            return
        self._scheduled.add(delivery_id)
        heapq.heappush(self._due, (due, delivery_id))
        self._wake.set()
        if self.metrics is not None:
            self.metrics.webhook_pending(self.pending)

    def _result(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_result(result)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                now = self.clock()
                while (self._due and self._due[0][0] <= now
                       and len(self._inflight) < self.config.concurrency):
                    _, delivery_id = heapq.heappop(self._due)
                    self._scheduled.discard(delivery_id)
                    self._inflight.add(delivery_id)
                    group.create_task(self._attempt(delivery_id))
                wait_s: float | None = None
                if self._due and len(self._inflight) < self.config.concurrency:
                    wait_s = max(0.0, self._due[0][0] - now)
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _attempt(self, delivery_id: str) -> None:
        try:
            await self._deliver(delivery_id)
        except Exception:
            # A bug, not a network failure: loud, with its traceback; the delivery stays
            # in the outbox and is tried again after the longest delay.
            self.log.exception("webhook_attempt_bug", delivery_id=delivery_id)
            self._inflight.discard(delivery_id)
            self._schedule(self.clock() + self.config.max_delay_s, delivery_id)
        finally:
            self._inflight.discard(delivery_id)
            self._wake.set()
            if self.metrics is not None:
                self.metrics.webhook_pending(self.pending)

    async def _deliver(self, delivery_id: str) -> None:
        log = self.log.bind(delivery_id=delivery_id)
        try:
            record, body = await asyncio.to_thread(self.outbox.read, delivery_id)
        except FileNotFoundError:
            log.warning("webhook_delivery_vanished")  # removed by hand: nothing to send
            self._result("dropped")
            return
        except (OSError, OutboxError) as exc:
            log.error("webhook_outbox_read_failed", error=str(exc))
            await self._give_up(delivery_id, log)
            return
        verdict, detail, retry_after_s = await self._send(record, body)
        attempt = record.attempts + 1
        if verdict == "delivered":
            await self._outbox_call(log, self.outbox.remove, delivery_id)
            log.info("webhook_delivered", attempts=attempt, status=detail)
            self._result("delivered")
        elif verdict == "permanent":
            log.error("webhook_refused", attempts=attempt, response=detail)
            await self._give_up(delivery_id, log)
            self._result("refused")
        elif verdict == "retry":
            if attempt >= self.config.max_attempts:
                log.error("webhook_gave_up", attempts=attempt, error=detail)
                await self._give_up(delivery_id, log)
                self._result("failed")
                return
            delay_s = backoff_delay_s(attempt, base_s=self.config.backoff_base_s,
                                      max_s=self.config.max_delay_s, jitter=self.jitter())
            if retry_after_s is not None:
                delay_s = max(delay_s, min(retry_after_s, self.config.max_delay_s))
            due = self.clock() + delay_s
            updated = record.after_failure(detail, due)
            await self._outbox_call(log, self.outbox.update, updated, body)
            log.warning("webhook_retry", attempts=attempt, error=detail,
                        retry_in_s=round(delay_s, 3))
            self._result("retry")
            self._inflight.discard(delivery_id)
            self._schedule(due, delivery_id)
        else:
            assert_never(verdict)

    async def _send(
        self, record: DeliveryRecord, body: bytes
    ) -> tuple[Outcome, str, float | None]:
        """One attempt: (verdict, detail for the log, Retry-After seconds)."""
        headers = {DELIVERY_HEADER: record.id, EVENT_HEADER: record.event,
                   **signature_headers(self.config.secret, int(self.clock()), body)}
        try:
            response = await post(self.config.url, body, headers,
                                  timeout_s=self.config.timeout_s,
                                  ssl_context=self.config.ssl_context)
        except TimeoutError:
            return "retry", f"no response within {self.config.timeout_s} s", None
        except HttpTransportError as exc:
            return "retry", str(exc), None
        verdict = classify_status(response.status)
        detail = f"{response.status} {response.reason}"[:100]
        if verdict == "permanent" and response.body:
            detail += ": " + response.body[:200].decode("utf-8", "replace")
        return verdict, detail, parse_retry_after(response.headers.get("retry-after"))

    async def _give_up(self, delivery_id: str, log: Logger) -> None:
        await self._outbox_call(log, self.outbox.fail, delivery_id)

    async def _outbox_call(self, log: Logger, fn: Callable[_P, None],
                           *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            await asyncio.to_thread(fn, *args, **kwargs)
        except OSError as exc:
            # The state directory refused: the delivery's file keeps its last good version.
            log.error("webhook_outbox_write_failed", op=fn.__name__, error=str(exc))
