"""A live-audio consumer for the tests: a real WebSocket server (the ``websockets``
library, not srs's client stack) in its own thread and event loop, that keeps every
message of every connection, checks Twilio Media Streams events against the shapes
Twilio documents, and rebuilds each track's audio from the chunks' timestamps.

Behaviours a consumer can have: refuse connections (HTTP 503) for a while from the first
attempt, stop reading
for a while after the ``start`` event (a stall), close the first connection after some
media messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

L16_HEADER = struct.Struct(">BxxxI")
TWILIO_RATE = 8000


@dataclass
class Connection:
    path: str
    headers: dict[str, str]
    messages: list[str | bytes] = field(default_factory=list)
    closed: bool = False


class Consumer:
    def __init__(self, *, refuse_for_s: float = 0.0, stall_s: float = 0.0,
                 close_after_media: int | None = None, recv_buffer: int | None = None,
                 close_on_start: bool = False) -> None:
        self.close_on_start = close_on_start
        self.refuse_for_s = refuse_for_s
        self.stall_s = stall_s
        self.close_after_media = close_after_media
        self.recv_buffer = recv_buffer
        self.connections: list[Connection] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._first_request = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="test-consumer", daemon=True)
        self.port = 0

    def url(self, path: str = "/media?token=query-secret") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Consumer:
        self._thread.start()
        assert self._ready.wait(10), "consumer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "consumer did not stop"

    def wait_closed(self, count: int = 1, timeout: float = 15.0) -> list[Connection]:
        """Until ``count`` connections have ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [c for c in self.connections if c.closed]
            if len(done) >= count:
                return done
            time.sleep(0.05)
        raise AssertionError(f"{len(done)} of {count} consumer connections ended")

    # -- the server thread --------------------------------------------------------------

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.recv_buffer is not None:  # inherited by accepted sockets: a stall backs up
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        async with serve(self._handle, sock=sock, process_request=self._process,
                         max_queue=4):
            self._ready.set()
            await self._stop.wait()

    def _process(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._first_request:
            self._first_request = time.monotonic()  # refusals run from the first attempt
        if time.monotonic() - self._first_request < self.refuse_for_s:
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not yet\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        record = Connection(request.path, {k.lower(): v for k, v in request.headers.raw_items()})
        with self._lock:
            first = not self.connections
            self.connections.append(record)
        media = 0
        try:
            async for message in ws:
                record.messages.append(message)
                event = _event(message)
                if event == "start" and self.close_on_start:
                    await ws.close(1008, "not you")
                    break
                if event == "start" and self.stall_s and first:
                    await asyncio.sleep(self.stall_s)  # read nothing meanwhile
                if event == "media":
                    media += 1
                    if first and self.close_after_media is not None \
                            and media >= self.close_after_media:
                        await ws.close(1001, "going away")
                        break
        except Exception:  # noqa: S110 - the connection's end is what the test checks
            pass
        finally:
            record.closed = True


def _event(message: str | bytes) -> str:
    if isinstance(message, bytes):
        return "media"
    return str(json.loads(message).get("event"))


# -- Twilio Media Streams, as Twilio documents its messages ------------------------------

def _digits(value: Any, what: str) -> int:
    assert isinstance(value, str) and value.isdigit(), f"{what} is not a numeric string: {value!r}"
    return int(value)


@dataclass
class TwilioStream:
    start: dict[str, Any]
    # track -> [(timestamp ms, mu-law bytes)]
    media: dict[str, list[tuple[int, bytes]]]
    dtmf: list[dict[str, Any]]
    stop: dict[str, Any] | None

    def media_ms(self) -> int:
        return sum(len(b) * 1000 // TWILIO_RATE for chunks in self.media.values()
                   for _, b in chunks)


def check_twilio(messages: list[str | bytes]) -> TwilioStream:
    """Every message checked for Twilio's documented shape and order."""
    assert messages, "no message"
    docs = []
    for message in messages:
        assert isinstance(message, str), "a Media Streams message is text"
        docs.append(json.loads(message))
    assert docs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = docs[1]
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    body = start["start"]
    sid = start["streamSid"]
    assert body["streamSid"] == sid and sid.startswith("MZ") and len(sid) == 34
    assert set(body["tracks"]) <= {"inbound", "outbound"} and body["tracks"]
    assert isinstance(body["customParameters"], dict)
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                   "channels": 1}
    media: dict[str, list[tuple[int, bytes]]] = {t: [] for t in body["tracks"]}
    chunks = dict.fromkeys(body["tracks"], 0)
    dtmf: list[dict[str, Any]] = []
    stop = None
    for n, doc in enumerate(docs[2:], start=2):
        assert _digits(doc["sequenceNumber"], "sequenceNumber") == n, doc
        assert doc["streamSid"] == sid
        assert stop is None, "a message after stop"
        if doc["event"] == "media":
            m = doc["media"]
            assert set(m) == {"track", "chunk", "timestamp", "payload"}, m
            chunks[m["track"]] += 1
            assert _digits(m["chunk"], "chunk") == chunks[m["track"]]
            payload = base64.b64decode(m["payload"], validate=True)
            assert 0 < len(payload) <= 160
            media[m["track"]].append((_digits(m["timestamp"], "timestamp"), payload))
        elif doc["event"] == "dtmf":
            assert set(doc["dtmf"]) == {"track", "digit"}
            assert doc["dtmf"]["track"] == "inbound_track" or doc["dtmf"]["track"].endswith(
                "_track")
            dtmf.append(doc["dtmf"])
        elif doc["event"] == "stop":
            stop = doc["stop"]
            ids = {k: body[k] for k in ("accountSid", "callSid") if k in body}
            assert stop == ids
        else:
            raise AssertionError(f"unknown event {doc['event']!r}")
    for chunk_list in media.values():
        stamps = [t for t, _ in chunk_list]
        assert stamps == sorted(stamps), "timestamps go back"
    return TwilioStream(body, media, dtmf, stop)


def rebuild(chunks: list[tuple[int, bytes]], rate: int = TWILIO_RATE, width: int = 1
            ) -> tuple[npt.NDArray[np.uint8] | bytes, npt.NDArray[np.bool_]]:
    """The track's bytes laid out by timestamp, and which samples were received."""
    end = max((t * rate // 1000 + len(b) // width for t, b in chunks), default=0)
    out = bytearray(end * width)
    have = np.zeros(end, dtype=bool)
    for t, b in chunks:
        at = t * rate // 1000
        out[at * width: at * width + len(b)] = b
        have[at: at + len(b) // width] = True
    return bytes(out), have


@dataclass
class L16Stream:
    start: dict[str, Any]
    media: dict[int, list[tuple[int, bytes]]]
    dtmf: list[dict[str, Any]]
    stopped: bool


def check_l16(messages: list[str | bytes]) -> L16Stream:
    assert isinstance(messages[0], str)
    start = json.loads(messages[0])
    assert start["event"] == "start" and start["format"] == "l16"
    tracks = {t["index"]: t for t in start["tracks"]}
    media: dict[int, list[tuple[int, bytes]]] = {i: [] for i in tracks}
    dtmf: list[dict[str, Any]] = []
    stopped = False
    for message in messages[1:]:
        assert not stopped, "a message after stop"
        if isinstance(message, bytes):
            index, stamp = L16_HEADER.unpack_from(message)
            pcm = message[L16_HEADER.size:]
            assert index in tracks and len(pcm) % 2 == 0
            media[index].append((stamp, pcm))
        else:
            doc = json.loads(message)
            if doc["event"] == "dtmf":
                dtmf.append(doc)
            else:
                assert doc == {"event": "stop", "streamSid": start["streamSid"]}
                stopped = True
    return L16Stream(start, media, dtmf, stopped)
