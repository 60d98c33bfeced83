"""One WebSocket consumer of one session's live audio (RFC 6455, over aiohttp).

:class:`Connection` owns a bounded queue and one task.  The task connects, sends the
format's opening frames, then whatever is queued, and at the end ``stop`` and a close
(RFC 6455 §7).  Nothing waits for it: :meth:`Connection.put` only appends, and drops the
oldest audio beyond the bound (a consumer that reads slower than real time, or not at
all, costs memory up to the bound and then only counters).

A connection that fails or is closed by the consumer is opened again after a backoff
(doubling from :data:`RETRY_FIRST_S` to :data:`RETRY_MAX_S`, with jitter).  It resumes
live: what was queued when it broke and what arrives while it is down are dropped and
counted, and the new connection's ``start`` says how much was missed; timestamps run on,
so the gap shows where it was.  Until the first connection is up the queue fills as
usual, so a consumer that answers at once hears the session from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from srs.live.formats import Digit, Frame, LiveFormat, Media, Messages, Resumed, StreamStart
from srs.live.formats import messages as messages_for
from srs.live.urls import LiveUrl
from srs.recording import sidecar as sc

__all__ = ["Connection", "RETRY_FIRST_S", "RETRY_MAX_S"]

RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# Pings to a consumer that sends nothing: one that stops answering (gone without a close)
# is dropped after 1.5x this, and reconnected.
HEARTBEAT_S = 30.0
# Key presses queued beyond the audio bound: a flood of RFC 4733 events is dropped.
MAX_QUEUED_DIGITS = 32
# What a consumer may send us (srs reads nothing it sends): small, and dropped.
MAX_INCOMING_BYTES = 64 * 1024
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class Connection:
    """Streams one session to one URL; see the module docstring."""

    def __init__(self, url: LiveUrl, live_format: LiveFormat, start: StreamStart, *,
                 http: aiohttp.ClientSession, headers: Mapping[str, str],
                 tls: ssl.SSLContext | None, max_queued: int, wall: Callable[[], datetime],
                 log: Any) -> None:
        self.url = url
        self.format: LiveFormat = live_format
        self.start = start
        self._http = http
        self._headers = dict(headers)
        self._tls = tls
        self._max_queued = max_queued  # media frames
        self._wall = wall
        self._log = log.bind(stream_url=str(url), stream_sid=start.stream_sid,
                             call_id=start.call_id, session_id=start.session_id)
        self._queue: deque[Media | Digit] = deque()
        self._queued_media = 0
        self._wake = asyncio.Event()
        self._up = False  # a connection is open
        self._down = False  # the last attempt failed or the connection broke
        self._ending = False
        self._ended = asyncio.Event()  # set with _ending: cuts a backoff short
        self.connected_at: datetime | None = None
        self.sent_ms = 0
        self.dropped_ms = 0
        self.reconnects = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def report(self) -> sc.StreamOut:
        return sc.StreamOut(str(self.url), self.format, self.connected_at, self.sent_ms,
                            self.dropped_ms, self.reconnects)

    def put(self, item: Media | Digit) -> None:
        """Queue a chunk or a key press; never waits."""
        if self._ending or (self._down and not self._up):
            if isinstance(item, Media):
                self.dropped_ms += item.ms
            return
        if isinstance(item, Media):
            self._queued_media += 1
            self._queue.append(item)
            if self._queued_media > self._max_queued:
                self._drop_oldest_media()
        elif len(self._queue) - self._queued_media < MAX_QUEUED_DIGITS:
            self._queue.append(item)
        self._wake.set()

    def end(self) -> None:
        """The session is over: send what is queued, then ``stop``, then close."""
        self._ending = True
        self._ended.set()
        self._wake.set()

    async def close(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the end to be sent, then cut the connection; what
        never left is counted as dropped."""
        self.end()
        done, _ = await asyncio.wait({self._task}, timeout=grace_s)
        if not done:
            self._log.warning("stream_end_not_sent", waited_s=grace_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        elif not self._task.cancelled() and self._task.exception() is not None:
            self._log.error("stream_failed", exc_info=self._task.exception())
        self._drop_queue()

    # -- the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        failures = 0  # attempts in a row that did not stream: one warning per outage
        while not self._ending:
            if failures:
                self._down = True
                self._drop_queue()
                await self._sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                delay = min(RETRY_MAX_S, delay * 2)
                if self._ended.is_set():  # the session ended during the backoff
                    return
            try:
                # The whole handshake bounded (a peer that accepts TCP and never answers
                # the upgrade must not hold the connection or the session's end).
                ws = await asyncio.wait_for(self._http.ws_connect(
                    self.url.url, headers=self._headers, ssl=self._tls if self._tls else True,
                    autoping=True, heartbeat=HEARTBEAT_S, max_msg_size=MAX_INCOMING_BYTES,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0)), CONNECT_TIMEOUT_S)
            except _NETWORK_ERRORS as exc:
                failures += 1
                if failures == 1:
                    self._log.warning("stream_connect_failed", error=_describe(exc))
                continue
            if ws._response.history:  # aiohttp keeps the redirects followed there
                # A redirect is refused: the configured consumer is the only peer.
                await ws.close()
                failures += 1
                if failures == 1:
                    self._log.warning("stream_connect_failed", error="redirected (refused)")
                continue
            resumed = None
            if self.connected_at is None:
                self.connected_at = self._wall()
            else:
                self.reconnects += 1
                resumed = Resumed(self.reconnects, self.dropped_ms)
            self._log.info("stream_connected", reconnects=self.reconnects)
            self._up, self._down = True, False
            sent_before = self.sent_ms
            try:
                if await self._serve(ws, messages_for(self.format, self.start), resumed):
                    return
            except _NETWORK_ERRORS as exc:
                self._log.warning("stream_lost", error=_describe(exc))
            except Exception as exc:  # a bug here: logged, and the stream is retried
                self._log.error("stream_failed", exc_info=exc)
            finally:
                self._up = False
                await ws.close()
            # A connection that carried audio starts the backoff again; one that the
            # consumer closed at once (it refused the start) keeps backing off.
            if self.sent_ms > sent_before:
                delay, failures = RETRY_FIRST_S, 0
            failures += 1

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, messages: Messages,
                     resumed: Resumed | None) -> bool:
        """Send until the session ends (True) or the consumer goes away (False)."""
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        try:
            for frame in messages.opening(resumed):
                await _send(ws, frame)
            while True:
                while self._queue:
                    item = self._queue.popleft()
                    if isinstance(item, Digit):
                        await _send(ws, messages.dtmf(item))
                        continue
                    self._queued_media -= 1
                    try:
                        await _send(ws, messages.media(item))
                    except BaseException:
                        self.dropped_ms += item.ms  # in flight when it broke
                        raise
                    self.sent_ms += item.ms
                if reader.done():
                    self._log.info("stream_closed_by_consumer", code=ws.close_code)
                    return False
                if self._ending:
                    await _send(ws, messages.stop())
                    return True
                self._wake.clear()
                await self._wake.wait()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer pings and notice the close; what the consumer sends is dropped."""
        try:
            async for _ in ws:
                pass
        finally:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """A backoff that ends early when the session does."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), seconds)

    def _drop_oldest_media(self) -> None:
        queue = self._queue
        for i, item in enumerate(queue):
            if isinstance(item, Media):
                del queue[i]
                self._queued_media -= 1
                self.dropped_ms += item.ms
                return

    def _drop_queue(self) -> None:
        self.dropped_ms += sum(item.ms for item in self._queue if isinstance(item, Media))
        self._queue.clear()
        self._queued_media = 0


async def _send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if ws.closed:
        raise ConnectionResetError("the consumer closed the connection")
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)


def _describe(exc: BaseException) -> str:
    """An error for the log: its type and message, never the request's headers or URL (a
    refused handshake's message names the URL, query and all: only its status is kept)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: HTTP {exc.status}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
