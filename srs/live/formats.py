"""What goes on the wire to a live consumer: Twilio Media Streams events or L16 frames.

``twilio`` is the message set Twilio's Media Streams sends to a ``<Stream url=...>``
consumer: a ``connected`` event, one ``start`` (``streamSid``, ``accountSid`` and
``callSid`` when the session came from Twilio, ``tracks``, ``customParameters``,
``mediaFormat``), ``media`` every 20 ms per track (base64 mu-law at 8 kHz, with the
track, a per-track ``chunk`` counter from 1 and the ``timestamp`` in ms since the stream
began), ``dtmf`` for each key press, and ``stop``; every message but ``connected``
carries a ``sequenceNumber`` from 1.  Numbers are strings, as Twilio sends them.  The
``start`` event's ``srs`` object is srs's own: the SIPREC session, the SIP Call-ID, and
after a reconnection how much audio the consumer missed.

``l16`` is srs's own: a JSON text ``start`` naming the session, the tracks and their
rates; then binary frames, each an 8-byte header (track index, three zero bytes, the
timestamp in ms as a big-endian u32) and 16-bit little-endian PCM at the track's rate;
``dtmf`` and ``stop`` as JSON text.

A :class:`Messages` value renders one connection's frames: sequence numbers and chunk
counters start again on each connection (a new WebSocket is a new stream to its
consumer); timestamps do not, so a gap shows as a jump.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import abc
import base64
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from srs.codecs.g711 import pcmu_encode

__all__ = ["CHUNK_MS", "Digit", "Frame", "LiveFormat", "Media", "Messages", "Resumed",
           "StreamStart", "TrackInfo", "TWILIO_RATE_HZ", "encode_payload", "messages",
           "track_rate"]

CHUNK_MS = 20  # Twilio's chunk: 20 ms, 160 mu-law bytes at 8 kHz
TWILIO_RATE_HZ = 8000
_L16_HEADER = struct.Struct(">BxxxI")  # track index, reserved, timestamp ms

LiveFormat = Literal["twilio", "l16"]
Frame = str | bytes  # a WebSocket text or binary message (RFC 6455 §5.6)


@dataclass(frozen=True, slots=True)
class TrackInfo:
    name: str  # "inbound", "outbound", or the stream's label beyond two tracks
    label: str  # the stream's name in the session directory
    rate_hz: int  # the rate its audio is sent at


@dataclass(frozen=True, slots=True)
class StreamStart:
    """What the ``start`` event says of the session."""

    stream_sid: str
    session_id: str
    call_id: str
    tracks: tuple[TrackInfo, ...]
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    call_sid: str | None = None
    account_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Resumed:
    """A connection after the first: what the consumer missed."""

    reconnects: int
    dropped_ms: int


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of one track, encoded for the format (base64 text or PCM bytes)."""

    track: int
    timestamp_ms: int
    payload: str | bytes
    ms: int = CHUNK_MS


@dataclass(frozen=True, slots=True)
class Digit:
    track: int
    digit: str
    timestamp_ms: int


def track_rate(live_format: LiveFormat, stream_rate_hz: int) -> int:
    """The rate a track is sent at: 8 kHz for Twilio, the recording's own for L16."""
    return TWILIO_RATE_HZ if live_format == "twilio" else stream_rate_hz


def encode_payload(live_format: LiveFormat, pcm: npt.NDArray[np.int16]) -> str | bytes:
    """A chunk's audio as the format carries it (computed once, sent to every consumer)."""
    if live_format == "twilio":
        return base64.b64encode(pcmu_encode(pcm)).decode("ascii")
    return pcm.astype("<i2", copy=False).tobytes()


def messages(live_format: LiveFormat, start: StreamStart) -> Messages:
    return TwilioMessages(start) if live_format == "twilio" else L16Messages(start)


class Messages(abc.ABC):
    """One connection's frames (see module docstring)."""

    def __init__(self, start: StreamStart) -> None:
        self.start = start

    @abc.abstractmethod
    def opening(self, resumed: Resumed | None) -> list[Frame]: ...

    @abc.abstractmethod
    def media(self, media: Media) -> Frame: ...

    @abc.abstractmethod
    def dtmf(self, digit: Digit) -> Frame: ...

    @abc.abstractmethod
    def stop(self) -> Frame: ...

    def _srs(self, resumed: Resumed | None) -> dict[str, object]:
        start = self.start
        out: dict[str, object] = {"sessionId": start.session_id, "callId": start.call_id,
                                  "labels": {t.name: t.label for t in start.tracks}}
        if resumed is not None:
            out["resumed"] = {"reconnects": resumed.reconnects, "droppedMs": resumed.dropped_ms}
        return out


def _dumps(doc: object) -> str:
    # ASCII: a header value srs kept undecodable (surrogate escapes) still encodes.
    return json.dumps(doc, separators=(",", ":"))


class TwilioMessages(Messages):
    def __init__(self, start: StreamStart) -> None:
        super().__init__(start)
        self._sequence = 0
        self._chunks = [0] * len(start.tracks)
        # Everything but the counters, once: a media message is built by concatenation.
        self._sid = _dumps(start.stream_sid)
        self._names = [_dumps(t.name) for t in start.tracks]

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _ids(self) -> dict[str, str]:
        start = self.start
        ids: dict[str, str] = {}
        if start.account_sid is not None:
            ids["accountSid"] = start.account_sid
        if start.call_sid is not None:
            ids["callSid"] = start.call_sid
        return ids

    def opening(self, resumed: Resumed | None) -> list[Frame]:
        start = self.start
        connected = _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        body = {
            **self._ids(),
            "streamSid": start.stream_sid,
            "tracks": sorted({t.name for t in start.tracks}, key=_track_order),
            "customParameters": dict(start.custom_parameters),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE_HZ,
                            "channels": 1},
            "srs": self._srs(resumed),
        }
        return [connected, _dumps({"event": "start", "sequenceNumber": str(self._next()),
                                   "start": body, "streamSid": start.stream_sid})]

    def media(self, media: Media) -> Frame:
        self._chunks[media.track] += 1
        # The payload is base64 and the numbers digits: nothing to escape.
        return (f'{{"event":"media","sequenceNumber":"{self._next()}","media":{{"track":'
                f'{self._names[media.track]},"chunk":"{self._chunks[media.track]}",'
                f'"timestamp":"{media.timestamp_ms}","payload":"{media.payload!s}"}},'
                f'"streamSid":{self._sid}}}')

    def dtmf(self, digit: Digit) -> Frame:
        track = self.start.tracks[digit.track].name
        return _dumps({"event": "dtmf", "streamSid": self.start.stream_sid,
                       "sequenceNumber": str(self._next()),
                       "dtmf": {"track": f"{track}_track", "digit": digit.digit}})

    def stop(self) -> Frame:
        return _dumps({"event": "stop", "sequenceNumber": str(self._next()),
                       "streamSid": self.start.stream_sid, "stop": self._ids()})


def _track_order(name: str) -> tuple[int, str]:
    return (0 if name == "inbound" else 1 if name == "outbound" else 2, name)


class L16Messages(Messages):
    def opening(self, resumed: Resumed | None) -> list[Frame]:
        start = self.start
        doc: dict[str, object] = {
            "event": "start", "format": "l16", "streamSid": start.stream_sid,
            "tracks": [{"index": i, "name": t.name, "label": t.label, "sampleRate": t.rate_hz,
                        "encoding": "s16le", "channels": 1}
                       for i, t in enumerate(start.tracks)],
            "customParameters": dict(start.custom_parameters), "srs": self._srs(resumed),
        }
        if start.call_sid is not None:
            doc["callSid"] = start.call_sid
        if start.account_sid is not None:
            doc["accountSid"] = start.account_sid
        return [_dumps(doc)]

    def media(self, media: Media) -> Frame:
        payload = media.payload
        if isinstance(payload, str):
            payload = payload.encode()
        return _L16_HEADER.pack(media.track, media.timestamp_ms & 0xFFFF_FFFF) + payload

    def dtmf(self, digit: Digit) -> Frame:
        return _dumps({"event": "dtmf", "track": self.start.tracks[digit.track].name,
                       "digit": digit.digit, "timestamp": digit.timestamp_ms})

    def stop(self) -> Frame:
        return _dumps({"event": "stop", "streamSid": self.start.stream_sid})
