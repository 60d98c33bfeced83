"""A Connection against a real WebSocket consumer that stops reading: the queue stays
within its bound, the oldest audio goes first, and sent + dropped is everything put."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from datetime import UTC, datetime

import pytest
import structlog

from srs.live.formats import Digit, Media, StreamStart, TrackInfo
from srs.live.push import Connection
from srs.live.urls import LiveUrl
from tests.live.consumer import Consumer, check_twilio

START = StreamStart("MZ" + "0" * 32, "sess-1", "call-1",
                    (TrackInfo("inbound", "inbound", 8000),), {"k": "v"}, "CA1", "AC1")
LOG = io.StringIO()
PAYLOAD = base64.b64encode(bytes(range(160))).decode()


async def put_and_end(url: str, count: int, *, max_queued: int, pause_after: int = 0
                      ) -> Connection:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        connection = Connection(LiveUrl.parse(url), "twilio", START, http=http, headers={},
                                tls=None, max_queued=max_queued,
                                wall=lambda: datetime.now(UTC),
                                log=structlog.wrap_logger(structlog.PrintLogger(LOG)))
        for i in range(count):
            connection.put(Media(0, i * 20, PAYLOAD))
            if i == count // 2:
                connection.put(Digit(0, "7", i * 20))
            if pause_after and i == pause_after:
                await asyncio.sleep(0.5)  # connected and streaming by now
            elif i % 50 == 0:
                await asyncio.sleep(0)
        await connection.close(grace_s=10.0)
        return connection


def test_a_consumer_that_stops_reading_loses_the_oldest_audio_and_the_counts_add_up() -> None:
    count = 20_000  # 400 s of one track: more than the socket buffers hold
    with Consumer(stall_s=3.0, recv_buffer=4096) as consumer:
        connection = asyncio.run(put_and_end(consumer.url(), count, max_queued=50,
                                             pause_after=10))
        [received] = consumer.wait_closed(1, timeout=30)
    stream = check_twilio(received.messages)
    assert stream.stop == {"accountSid": "AC1", "callSid": "CA1"}
    assert "stream_failed" not in LOG.getvalue() and "stream_end_not_sent" not in LOG.getvalue()
    report = connection.report()
    assert report.media_ms_dropped > 0, "the queue never overflowed: the test proves nothing"
    assert report.media_ms_sent == stream.media_ms()
    assert report.media_ms_sent + report.media_ms_dropped == count * 20
    stamps = [t for t, _ in stream.media["inbound"]]
    # Oldest first: what arrived is the start (sent before the stall filled the buffers)
    # and the newest (the bounded queue's last), with one hole between.
    assert stamps[-1] == (count - 1) * 20
    holes = sum(1 for a, b in itertools.pairwise(stamps) if b - a != 20)
    assert holes >= 1
    assert len(stamps) - stamps.index(stamps[-1] - 49 * 20) == 50  # the queue's 50, whole


@pytest.mark.parametrize("url", ["http://x/", "ws://user:pw@x/", "ws:///nohost", "ws://x/#f",
                                 "ws://x y/"])
def test_bad_urls_are_refused_naming_the_key(url: str) -> None:
    from srs.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stream\.url"):
        LiveUrl.parse(url)


def test_the_url_shown_has_no_query_or_credentials() -> None:
    url = LiveUrl.parse("wss://[::1]/media/x?token=secret")
    assert str(url) == "wss://[::1]:443/media/x" and url.tls
    assert json.dumps(str(LiveUrl.parse("ws://h:81")))  == '"ws://h:81/"'


def test_a_consumer_that_closes_every_connection_at_once_is_retried_with_backoff() -> None:
    async def run() -> Connection:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            connection = Connection(LiveUrl.parse(consumer.url()), "twilio", START, http=http,
                                    headers={}, tls=None, max_queued=50,
                                    wall=lambda: datetime.now(UTC),
                                    log=structlog.wrap_logger(structlog.PrintLogger(LOG)))
            for i in range(150):  # 3 s of live audio
                connection.put(Media(0, i * 20, PAYLOAD))
                await asyncio.sleep(0.02)
            await connection.close(grace_s=1.0)
            return connection

    with Consumer(close_on_start=True) as consumer:
        connection = asyncio.run(run())
    report = connection.report()
    # Backoff 0.25, 0.5, 1, 2 s (with jitter): a handful of attempts, not a hot loop.
    assert 2 <= len(consumer.connections) <= 6
    assert report.reconnects == len(consumer.connections) - 1
    assert report.media_ms_sent + report.media_ms_dropped == 150 * 20


def test_start_events_stay_ascii_json_whatever_the_header_bytes() -> None:
    from srs.live.formats import TwilioMessages

    odd = StreamStart("MZ" + "1" * 32, "s", "c", START.tracks,
                      {"X-Name": "caf\udce9 \u00e9"})  # a surrogate escape, as SIP keeps Latin-1
    _, start = TwilioMessages(odd).opening(None)
    assert isinstance(start, str)
    start.encode("ascii")
    assert json.loads(start)["start"]["customParameters"]["X-Name"] == "caf\udce9 \u00e9"


def test_a_refused_handshake_is_logged_without_its_url() -> None:
    from srs.live.push import _describe

    async def refused() -> BaseException:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(consumer.url())
            except aiohttp.ClientError as exc:
                return exc
        raise AssertionError("connected")

    with Consumer(refuse_for_s=60) as consumer:
        error = asyncio.run(refused())
    assert "query-secret" in str(error)  # what aiohttp's message would have logged
    assert _describe(error) == "WSServerHandshakeError: HTTP 503"
