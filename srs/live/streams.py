"""Every streamed session of this process: feeds, their consumers, and the pump.

:class:`LiveStreams` is driven by the recording core's outputs (``StartLive``,
``EndLive``, ``WaitLive``, see :mod:`srs.recording.outputs`) and by one pump task that,
every :data:`PUMP_S`, takes each feed's new chunks, encodes each once for the format and
hands it to every connection of the session.  It runs in the process that owns the
session's RTP (a media worker, or the one process), on its event loop, so a feed reads
the streams' placed payloads without a copy crossing processes.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import secrets
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from srs import __version__
from srs.config import StreamSettings
from srs.live.feed import Chunk, SessionFeed
from srs.live.formats import Digit, LiveFormat, Media, encode_payload
from srs.live.push import CONNECT_TIMEOUT_S, Connection
from srs.live.urls import LiveUrl
from srs.recording.session import RecordingSession

__all__ = ["END_GRACE_S", "LiveStreams", "PUMP_S"]

# How often new audio is cut into chunks and queued: a chunk waits half this on average.
PUMP_S = 0.02
# How long a session's end waits for its consumers to take the rest and ``stop``.
END_GRACE_S = 2.0


@dataclass(eq=False)
class _Live:
    session: RecordingSession  # held: its id() keys _live and is not reused meanwhile
    feed: SessionFeed
    connections: list[Connection]
    failed: bool = False  # the feed hit a fault: logged once, nothing more is cut
    closing: asyncio.Future[Any] | None = None  # the end being sent (see LiveStreams.end)


class LiveStreams:
    def __init__(self, settings: StreamSettings, *, clock: Callable[[], float], log: Any,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.format: LiveFormat = settings.format
        self.tracks: Sequence[str] = settings.tracks
        self.urls = [LiveUrl.parse(url) for url in settings.url]
        self.headers = {"User-Agent": f"srs/{__version__}",
                        **dict(_header(h) for h in settings.headers)}
        self.max_queued_per_track = max(1, settings.queue_ms // 20)
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(UTC))
        self.log = log
        self._tls: ssl.SSLContext | None = None
        if any(url.tls for url in self.urls):
            self._tls = ssl.create_default_context(
                cafile=str(settings.ca) if settings.ca is not None else None)
        self._live: dict[int, _Live] = {}  # id(session) -> its streams
        self._http: aiohttp.ClientSession | None = None
        self._pump: asyncio.Task[None] | None = None

    def start(self, session: RecordingSession) -> None:
        feed = SessionFeed(session, self.format, self.tracks, "MZ" + secrets.token_hex(16))
        if not feed.tracks:
            self.log.info("stream_no_tracks", wanted=list(self.tracks),
                          streams=[s.stem for s in session.streams])
            return
        if self._http is None:
            # One WebSocket per session and URL, held for the call: no pool limit (the
            # sessions are bounded by server.max_sessions); no cookies kept or shared.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S,
                                              sock_connect=CONNECT_TIMEOUT_S))
        connections = [
            Connection(url, self.format, feed.start, http=self._http, headers=self.headers,
                       tls=self._tls if url.tls else None,
                       max_queued=self.max_queued_per_track * len(feed.tracks),
                       wall=self.wall, log=self.log)
            for url in self.urls]
        self._live[id(session)] = _Live(session, feed, connections)
        session.streams_out = lambda: tuple(c.report() for c in connections)
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run())
            self._pump.add_done_callback(self._pump_done)

    def end(self, session: RecordingSession, at: float) -> None:
        """The session's media is over: its last audio out, then ``stop``; the session is
        forgotten once every consumer took it, or after :data:`END_GRACE_S`."""
        live = self._live.get(id(session))
        if live is None or live.closing is not None:
            return
        if not live.failed:
            self._cut(live, functools.partial(live.feed.finish, at))
        live.closing = asyncio.get_running_loop().create_task(self._close(session, live))

    async def wait(self, session: RecordingSession) -> None:
        """Until the session's end reached its consumers (see :meth:`end`)."""
        self.end(session, self.clock())
        live = self._live.get(id(session))
        if live is not None and live.closing is not None:
            await asyncio.shield(live.closing)

    async def _close(self, session: RecordingSession, live: _Live) -> None:
        try:
            await asyncio.gather(*(c.close(END_GRACE_S) for c in live.connections))
        finally:
            if self._live.get(id(session)) is live:
                del self._live[id(session)]

    async def close(self) -> None:
        """Shutdown: every session still streamed is cut now."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        lives = list(self._live.values())
        for live in lives:
            if live.closing is None:
                live.closing = asyncio.gather(*(c.close(0) for c in live.connections))
        await asyncio.gather(*(live.closing for live in lives if live.closing is not None),
                             return_exceptions=True)
        self._live.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_s = loop.time()
        while True:
            next_s = max(next_s + PUMP_S, loop.time())
            await asyncio.sleep(next_s - loop.time())
            now = self.clock()
            for live in list(self._live.values()):
                if live.closing is None and not live.failed:
                    self._cut(live, functools.partial(live.feed.pump, now))

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        """The pump ends only when cancelled; if a bug ended it, the next session's start
        runs a new one."""
        self._pump = None
        if not task.cancelled() and task.exception() is not None:
            self.log.error("stream_pump_failed", exc_info=task.exception())

    def _cut(self, live: _Live, take: Callable[[], tuple[list[Chunk], list[Digit]]]) -> None:
        """Queue what ``take`` gives; a fault of the live path is logged once and stops
        this session's feed, never the recording or the other sessions."""
        try:
            self._send(live, *take())
            error = live.feed.error
        except Exception as exc:
            error = exc
        if error is not None:
            live.failed = True
            self.log.error("stream_feed_failed", exc_info=error,
                           stream_sid=live.feed.start.stream_sid)

    def _send(self, live: _Live, chunks: list[Chunk], digits: list[Digit]) -> None:
        connections = live.connections
        for chunk in chunks:
            pcm = chunk.pcm
            payload = (base64.b64encode(pcm).decode("ascii") if isinstance(pcm, bytes)
                       else encode_payload(self.format, pcm))
            media = Media(chunk.track, chunk.timestamp_ms, payload, chunk.ms)
            for connection in connections:
                connection.put(media)
        for digit in digits:
            for connection in connections:
                connection.put(digit)


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()
