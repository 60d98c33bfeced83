"""The management HTTP listener: ``/healthz``, ``/readyz`` and ``/metrics``.

A deliberately small HTTP/1.1 server on asyncio streams (RFC 9112): one GET per
connection, closed after the response.  Bounded: the request head must fit in
``max_head_bytes`` (else 431, RFC 6585 §5) and arrive within ``request_timeout_s`` (else
408), and a request body is never read.  At most ``max_connections`` are open at once and
``max_connections_per_ip`` from one source address, but connections that have not sent
their request head cannot shut a probe out: a new connection over either limit closes the
oldest such connection (of its source, or of all) instead of being refused; it is refused
only when every connection counted against it is already being answered.  It binds to
127.0.0.1 by default: the metrics say how busy the server is, and nothing here is
authenticated.

* ``/healthz`` -- 200 whenever the event loop runs the handler at all (a blocked loop
  makes the probe time out), with the last measured loop lag;
* ``/readyz`` -- 200 when new sessions are accepted; 503 and the reason (draining, session
  limit, storage) otherwise, from the ``readiness`` callable the shell passes;
* ``/metrics`` -- the Prometheus text exposition of :class:`~srs.ops.metrics.Metrics`.

It also runs the event-loop lag monitor: every ``lag_interval_s`` a ``call_at`` timer is
armed and how late it fires goes to ``Metrics.observe_loop_lag``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Final

from srs.errors import UsageError
from srs.log import Logger, RateLimiter
from srs.ops.metrics import CONTENT_TYPE, Metrics

__all__ = ["ManagementServer", "readiness_problem", "watch_loop_lag"]

_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found",
                   405: "Method Not Allowed", 408: "Request Timeout",
                   431: "Request Header Fields Too Large", 503: "Service Unavailable"}
_TEXT: Final = "text/plain; charset=utf-8"


def readiness_problem(*, draining: bool, active: int, max_sessions: int,
                      storage_problem: str | None) -> str | None:
    """Why new sessions would be refused right now, or None when they are accepted.

    The same conditions under which an INVITE gets 503, so that a load balancer stops
    sending calls exactly when they would be refused."""
    if draining:
        return "draining: shutting down"
    if active >= max_sessions:
        return f"session limit reached ({active} of {max_sessions})"
    return storage_problem


async def watch_loop_lag(observe: Callable[[float], None], *, interval_s: float = 1.0) -> None:
    """Until cancelled: arm a timer ``interval_s`` ahead and report how late it fired."""
    loop = asyncio.get_running_loop()
    while True:
        fired: asyncio.Future[None] = loop.create_future()
        due = loop.time() + interval_s
        handle = loop.call_at(due, fired.set_result, None)
        try:
            await fired
        finally:
            handle.cancel()
        observe(loop.time() - due)


class ManagementServer:
    def __init__(self, *, host: str, port: int, metrics: Metrics,
                 readiness: Callable[[], str | None], log: Logger, max_connections: int = 256,
                 max_connections_per_ip: int = 8, request_timeout_s: float = 2.0,
                 max_head_bytes: int = 8192, lag_interval_s: float | None = 1.0) -> None:
        if (max_connections < 1 or max_connections_per_ip < 1 or request_timeout_s <= 0
                or max_head_bytes < 256):
            raise UsageError("management server bounds out of range")
        self.host = host
        self.requested_port = port
        self.metrics = metrics
        self.readiness = readiness
        self.log = log
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.request_timeout_s = request_timeout_s
        self.max_head_bytes = max_head_bytes
        self.lag_interval_s = lag_interval_s
        self.last_lag_s: float | None = None
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[object], asyncio.StreamWriter] = {}
        # Open connections by handler, with their source; those still waiting for their
        # request head, oldest first (the order they are evicted in).
        self._sources: dict[asyncio.Task[object], str] = {}
        self._per_source: dict[str, int] = {}
        self._waiting: dict[asyncio.Task[object], str] = {}
        self.counters = {"evicted": 0, "refused": 0}
        self._warnings = RateLimiter(period_s=60.0, burst=1)
        self._lag_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one the system chose for 0)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind (OSError when the port is taken) and start the lag monitor."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.requested_port, limit=self.max_head_bytes)
        if self.lag_interval_s is not None:
            self._lag_task = asyncio.get_running_loop().create_task(
                watch_loop_lag(self._observe_lag, interval_s=self.lag_interval_s))
            self._lag_task.add_done_callback(self._lag_done)
        self.log.info("management_listening", host=self.host, port=self.port)

    def _observe_lag(self, lag_s: float) -> None:
        self.last_lag_s = max(0.0, lag_s)
        self.metrics.observe_loop_lag(lag_s)

    def _lag_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("loop_lag_monitor_failed", exc_info=task.exception())

    async def close(self) -> None:
        """Stop listening and the lag monitor; connections in progress are closed, and
        their handlers (tasks asyncio's server started for us) are awaited."""
        if self._server is not None:
            self._server.close()
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)
            self._lag_task = None
        for writer in self._handlers.values():
            writer.close()  # a handler waiting for the request sees EOF and ends
        handlers = list(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=self.request_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        if task is None or not self._make_room(source):
            self.counters["refused"] += 1
            writer.close()
            return
        self._handlers[task] = writer
        self._sources[task] = source
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._waiting[task] = source
        try:
            status, content_type, body = await self._respond(reader)
            self._waiting.pop(task, None)
            if writer.is_closing():
                return  # evicted while it waited
            allow = "Allow: GET\r\n" if status == 405 else ""  # RFC 9110 §15.5.6
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                    f"Content-Type: {content_type}\r\n{allow}Content-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("ascii") + body)
            async with asyncio.timeout(self.request_timeout_s):
                await writer.drain()
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing more to do for it
        except Exception:
            self.log.exception("management_request_failed")  # a bug: loud, then close
        finally:
            self._handlers.pop(task, None)
            self._release(task)
            writer.close()

    def _make_room(self, source: str) -> bool:
        """Whether a new connection from ``source`` may be served, after closing the
        oldest connection still waiting for its request head where a limit needs it."""
        if self._per_source.get(source, 0) >= self.max_connections_per_ip:
            victim = next((t for t, s in self._waiting.items() if s == source), None)
            if victim is None:
                return False
            self._evict(victim)
        if len(self._sources) >= self.max_connections:
            if not self._waiting:
                return False
            self._evict(next(iter(self._waiting)))
        return True

    def _evict(self, task: asyncio.Task[object]) -> None:
        source = self._waiting.pop(task, "")
        self.counters["evicted"] += 1
        self._release(task)
        writer = self._handlers.get(task)
        if writer is not None:
            writer.transport.abort()  # its handler sees EOF, answers nothing and ends
        log_it, suppressed = self._warnings.allow("evicted")
        if log_it:
            self.log.warning("management_connection_evicted", source=source,
                             evicted=self.counters["evicted"], suppressed=suppressed)

    def _release(self, task: asyncio.Task[object]) -> None:
        self._waiting.pop(task, None)
        source = self._sources.pop(task, None)
        if source is None:
            return
        left = self._per_source.get(source, 1) - 1
        if left > 0:
            self._per_source[source] = left
        else:
            self._per_source.pop(source, None)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        try:
            async with asyncio.timeout(self.request_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 431, _TEXT, b"request head too large\n"
        except TimeoutError:
            return 408, _TEXT, b"request not received in time\n"
        except asyncio.IncompleteReadError:
            return 400, _TEXT, b"incomplete request\n"
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        # RFC 9112 §3: method SP request-target SP HTTP-version
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, _TEXT, b"malformed request line\n"
        method, target = parts[0], parts[1]
        if method != "GET":
            return 405, _TEXT, b"only GET\n"
        path = target.split("?", 1)[0]
        if path == "/healthz":
            doc = {"status": "ok", "loop_lag_s": self.last_lag_s}
            return 200, "application/json", json.dumps(doc).encode() + b"\n"
        if path == "/readyz":
            problem = self.readiness()
            if problem is None:
                return 200, _TEXT, b"ready\n"
            return 503, _TEXT, f"not ready: {problem}\n".encode()
        if path == "/metrics":
            # Off the loop: collectors may touch the disk (free space at scrape time).
            return 200, CONTENT_TYPE, await asyncio.to_thread(self.metrics.exposition)
        return 404, _TEXT, b"not found: /healthz /readyz /metrics\n"
