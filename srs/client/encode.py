"""The codecs ``srs call`` sends, and a track's audio turned into their RTP payloads.

Pure: no I/O.  G.711 uses srs's own tables and L16 needs no encoder; G.722, Opus and
AMR-NB go through the encoders of PyAV's FFmpeg build (``g722``, ``libopus``,
``libopencore_amrnb``), which the wheel may lack: :func:`available` names what encodes here.

A whole track is encoded once per codec, before the call, into one payload per 20 ms
(:class:`EncodedTrack`); every call of a run then sends those bytes, so a load run costs
no encoding per packet.  Payload formats:

- PCMU, PCMA: RFC 3551 §4.5.14, one byte per 8 kHz sample.
- G722: RFC 3551 §4.5.2, ``G722/8000`` although the audio is 16 kHz; 160 bytes per 20 ms.
- opus: RFC 7587, one Opus packet per payload, ``opus/48000/2`` whatever the audio (§7);
  srs call sends mono and says so (``sprop-stereo=0``, §6.1).
- AMR: RFC 4867 §4.4 octet-aligned (``octet-align=1``), one 12.2 kbit/s frame per payload:
  the CMR byte (15: no mode request), then the frame's ToC and speech bits.  FFmpeg's
  encoder gives RFC 4867 §5 storage frames, whose header byte ``P FT Q P P`` is the
  octet-aligned ToC with F = 0 (the last frame of the payload).
- L16: RFC 3551 §4.5.11, 16-bit samples in network byte order, here at 16 kHz.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from srs.codecs.g711 import pcma_encode, pcmu_encode
from srs.errors import UsageError

__all__ = ["PACKETS_PER_SECOND", "SEND_CODECS", "EncodedTrack", "SendCodec", "available",
           "encode_track", "send_codec"]

PACKETS_PER_SECOND = 50  # 20 ms packets, RFC 3551 §4.5 default packetisation
_AMR_NO_MODE_REQUEST = 0xF0  # RFC 4867 §4.4.1: CMR = 15, then four reserved zero bits
_SETTLE_FRAMES = 10
_BIT_RATES = {"libopus": 32_000, "libopencore_amrnb": 12_200}  # AMR: mode 7 (MR122)

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class SendCodec:
    """A codec srs call can offer and send: its SDP description and its encoder.

    ``payload_type`` is static (RFC 3551 §6) or the dynamic number srs call offers;
    ``sample_rate_hz`` is the audio's rate, which for G.722 is not the RTP clock's.
    """

    name: str
    payload_type: int
    clock_rate_hz: int
    sample_rate_hz: int
    channels: int | None = None
    fmtp: str | None = None
    encoder: str | None = None  # PyAV's encoder; None: srs's own (G.711, L16)

    @property
    def rtpmap(self) -> str:
        channels = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate_hz}{channels}"

    @property
    def samples_per_packet(self) -> int:
        return self.sample_rate_hz // PACKETS_PER_SECOND

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp units per packet (RFC 3550 §5.1: the RTP clock's, not the audio's)."""
        return self.clock_rate_hz // PACKETS_PER_SECOND


SEND_CODECS: Mapping[str, SendCodec] = {
    c.name: c for c in (
        SendCodec("PCMU", 0, 8000, 8000),
        SendCodec("PCMA", 8, 8000, 8000),
        SendCodec("G722", 9, 8000, 16000, encoder="g722"),
        SendCodec("opus", 111, 48000, 48000, channels=2,
                  fmtp="minptime=10;useinbandfec=1;sprop-stereo=0", encoder="libopus"),
        SendCodec("AMR", 96, 8000, 8000, fmtp="octet-align=1", encoder="libopencore_amrnb"),
        SendCodec("L16", 97, 16000, 16000),
    )
}
_TABLES: Mapping[str, Callable[[Pcm], bytes]] = {
    "PCMU": pcmu_encode,
    "PCMA": pcma_encode,
    "L16": lambda pcm: pcm.astype(">i2").tobytes(),
}


@functools.cache
def available() -> tuple[str, ...]:
    """The names of :data:`SEND_CODECS` that encode here (PyAV's build decides)."""
    return tuple(name for name, c in SEND_CODECS.items()
                 if c.encoder is None or c.encoder in av.codecs_available)


def send_codec(name: str) -> SendCodec:
    """The codec called ``name`` (SDP names are case-insensitive, RFC 4855 §3)."""
    for codec in SEND_CODECS.values():
        if codec.name.lower() == name.lower():
            if codec.name not in available():
                raise UsageError(f"{codec.name}: this PyAV build has no {codec.encoder} encoder")
            return codec
    raise UsageError(f"no encoder for {name!r}; srs call sends {', '.join(available())}")


@dataclass(frozen=True, slots=True)
class EncodedTrack:
    """One payload per 20 ms of a track, and the payload of 20 ms of silence."""

    payloads: tuple[bytes, ...]
    silence: bytes

    def at(self, index: int, *, loop: bool) -> bytes:
        """Packet ``index``'s payload: the track, then silence (or the track again)."""
        if index < len(self.payloads):
            return self.payloads[index]
        if loop and self.payloads:
            return self.payloads[index % len(self.payloads)]
        return self.silence


def _frames(pcm: Pcm, size: int) -> list[Pcm]:
    padded = np.concatenate([pcm, np.zeros(-len(pcm) % size, np.int16)])
    return [padded[i : i + size] for i in range(0, len(padded), size)]


def _ffmpeg(codec: SendCodec, frames: Sequence[Pcm]) -> list[bytes]:
    """Every frame through one FFmpeg encoder, in order; the encoder's delay (Opus 6.5 ms,
    AMR 5 ms) makes its last packet come out at the flush, so the flush is kept too."""
    if codec.encoder is None:
        raise RuntimeError(f"{codec.name} has no FFmpeg encoder")
    context = av.CodecContext.create(codec.encoder, "w")
    if not isinstance(context, av.AudioCodecContext):
        raise RuntimeError(f"{codec.encoder} is not an audio encoder")
    context.sample_rate = codec.sample_rate_hz
    context.layout = "mono"
    context.format = "s16"
    if codec.encoder in _BIT_RATES:
        context.bit_rate = _BIT_RATES[codec.encoder]
    context.open()
    packets: list[bytes] = []
    for index, samples in enumerate(frames):
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = codec.sample_rate_hz
        frame.pts = index * len(samples)
        packets.extend(bytes(p) for p in context.encode(frame))
    packets.extend(bytes(p) for p in context.encode(None))
    if codec.name == "AMR":
        return [bytes((_AMR_NO_MODE_REQUEST,)) + p for p in packets]
    return packets


def _encode(codec: SendCodec, frames: Sequence[Pcm]) -> list[bytes]:
    table = _TABLES.get(codec.name)
    if table is not None:
        return [table(f) for f in frames]
    return _ffmpeg(codec, frames)


def encode_track(codec: SendCodec, pcm: Pcm) -> EncodedTrack:
    """``pcm`` (mono int16 at ``codec.sample_rate_hz``) as one payload per 20 ms, the last
    frame padded with silence."""
    size = codec.samples_per_packet
    frames = _frames(np.ascontiguousarray(pcm, dtype=np.int16), size)
    payloads = _encode(codec, frames)[: len(frames)]
    if len(payloads) < len(frames):  # an encoder that swallowed frames: a bug to surface
        raise RuntimeError(f"{codec.name}: {len(frames)} frames gave {len(payloads)} packets")
    # A stateful encoder (G.722's ADPCM) settles on silence after a few frames; that
    # settled payload, repeated, decodes as silence where a first frame would not.
    silence = _encode(codec, [np.zeros(size, np.int16)] * _SETTLE_FRAMES)[_SETTLE_FRAMES - 1]
    return EncodedTrack(tuple(payloads), silence)
