"""Decoders for the codecs beyond G.711, from FFmpeg through PyAV (``av``).

One :class:`FrameDecoder` per stream and payload type keeps the codec's state (G.722's
ADPCM predictor, G.729's and AMR's filter memories, Opus's overlap) across the stream's
packets; it is fed one RTP payload at a time, in the timeline's order, on the file
thread of its stream.  :func:`decodable` says, once per process, which of them the
installed FFmpeg really decodes: each decoder is opened and given one frame.

What each FFmpeg decoder takes (checked on av 18.1):

- ``g722``: any number of bytes, two 16 kHz samples per byte (RFC 3551 §4.5.2).
- ``g729``: whole 10-byte frames; a 2-byte Annex B SID is refused, so it is cut off first.
- ``gsm``, ``ilbc``: whole frames; iLBC's mode is told through the bit rate.
- ``amrnb`` / ``amrwb``: one storage-format frame per packet (RFC 4867 §5.3).
- ``opus``: one Opus packet (RFC 7587 §4.2), 48 kHz output whatever the audio was.
- ``speex``: the frames of one payload (RFC 5574 §3), at a rate set before opening.

Output arrives as ``s16``, ``s16p``, ``flt`` or ``fltp`` and is turned into int16 mono.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from srs.codecs import formats

__all__ = ["FrameDecoder", "FFMPEG_DECODERS", "decodable", "new_decoder"]

Pcm = npt.NDArray[np.int16]
_NO_PCM: Final = np.zeros(0, dtype=np.int16)
# Samples one payload may decode to: 120 ms at 48 kHz (the longest Opus packet, RFC 6716
# §3.2.5) with room for stereo; a decoder that claims more is refusing its input.
MAX_SAMPLES_PER_PAYLOAD = 2 * 5760
# The largest payload handed to a decoder at all: refused before any decoding, so a
# hostile sender cannot buy a decode of 64 KiB per packet.  Per codec where frames fix
# the samples per byte (G.722 two per byte, G.729 80 per 10 bytes, GSM 160 per 33, iLBC
# 160 per 38), else a bound far above any real packet (an Ethernet MTU).
MAX_PAYLOAD_BYTES = 6000
_MAX_BYTES = {
    "g722": MAX_SAMPLES_PER_PAYLOAD // 2,
    "g729": MAX_SAMPLES_PER_PAYLOAD // 80 * 10 + 2,
    "gsm": MAX_SAMPLES_PER_PAYLOAD // 160 * 33,
    "ilbc": MAX_SAMPLES_PER_PAYLOAD // 160 * 38,
}


class FrameDecoder:
    """One stream's decoder of one codec.  :meth:`decode` takes one RTP payload and
    returns its audio at the codec's sample rate (empty for comfort noise); it raises
    :class:`~srs.codecs.formats.PayloadError` for a payload that cannot be decoded."""

    __slots__ = ("name", "max_bytes", "_context", "_split", "_av", "_options")

    def __init__(self, name: str, split: Callable[[bytes], list[bytes | int]],
                 options: Mapping[str, Any]) -> None:
        import av  # imported where it is used: G.711-only processes never load FFmpeg

        self._av = av
        self.name = name
        self.max_bytes = _MAX_BYTES.get(name, MAX_PAYLOAD_BYTES)  # refused above this
        self._split = split
        self._options = dict(options)
        self._context = self._open(options)

    def _open(self, options: Mapping[str, Any]) -> Any:
        context = self._av.CodecContext.create(self.name, "r")
        for key, value in options.items():
            setattr(context, key, value)
        context.open()
        return context

    def reopen(self, **options: Any) -> None:
        """A fresh context with other options (an iLBC sender that changed its mode)."""
        merged = self._options | options
        if merged != self._options:
            self._options = merged
            self._context = self._open(merged)

    def decode(self, payload: bytes) -> Pcm:
        if len(payload) > self.max_bytes:
            raise formats.PayloadError(f"{self.name} payload of {len(payload)} bytes")
        pieces: list[Pcm] = []
        for part in self._split(payload):
            if isinstance(part, int):  # silence standing for a frame (SID, NO_DATA)
                pieces.append(np.zeros(part, dtype=np.int16))
                continue
            try:
                frames = self._context.decode(self._av.Packet(part))
            except (self._av.error.FFmpegError, ValueError) as exc:
                raise formats.PayloadError(f"{self.name} refused a payload: {exc}") from None
            pieces.extend(_mono_int16(frame.to_ndarray(), frame.format.name,
                                      len(frame.layout.channels)) for frame in frames)
        if not pieces:
            return _NO_PCM
        pcm = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        if len(pcm) > MAX_SAMPLES_PER_PAYLOAD:
            raise formats.PayloadError(f"{self.name} payload decoded to {len(pcm)} samples")
        return pcm


def _mono_int16(array: npt.NDArray[Any], sample_format: str, channels: int) -> Pcm:
    planar = sample_format.endswith("p")
    if planar:
        mono = array[0] if channels == 1 else array.mean(axis=0)
    else:
        flat = array.reshape(-1)
        mono = flat if channels <= 1 else flat.reshape(-1, channels).mean(axis=1)
    if sample_format.startswith(("flt", "dbl")):
        scaled: npt.NDArray[np.float64] = np.round(mono * 32767.0)
        return np.clip(scaled, -32768, 32767).astype(np.int16)
    if sample_format.startswith("s16") and channels <= 1:
        same: Pcm = np.ascontiguousarray(mono, dtype=np.int16)
        return same
    rounded: npt.NDArray[np.float64] = np.round(mono)
    return np.clip(rounded, -32768, 32767).astype(np.int16)


def _whole(payload: bytes) -> list[bytes | int]:
    return [payload] if payload else []


def _g729(payload: bytes) -> list[bytes | int]:
    speech = formats.g729_speech(payload)
    return [speech] if speech else []


def _gsm(payload: bytes) -> list[bytes | int]:
    return [formats.gsm_frames(payload)]


def _amr(kind: formats.AmrKind, octet_aligned: bool) -> Callable[[bytes], list[bytes | int]]:
    def split(payload: bytes) -> list[bytes | int]:
        return [frame.storage if frame.storage is not None else kind.samples
                for frame in formats.amr_frames(payload, kind, octet_aligned=octet_aligned)]
    return split


# RFC 3952 §5: the bit rate tells FFmpeg's iLBC decoder its mode.
_ILBC_BIT_RATE = {20: 15200, 30: 13330}


class _IlbcDecoder(FrameDecoder):
    """FFmpeg's iLBC decoder takes one frame per packet: a payload is split into frames."""

    __slots__ = ("mode_ms",)

    def __init__(self, mode_ms: int) -> None:
        self.mode_ms = mode_ms
        super().__init__("ilbc", self._frames, {"bit_rate": _ILBC_BIT_RATE[mode_ms]})

    def _frames(self, payload: bytes) -> list[bytes | int]:
        size = formats.ILBC_FRAME_BYTES[self.mode_ms]
        return [payload[i:i + size] for i in range(0, len(payload), size)]

    def decode(self, payload: bytes) -> Pcm:
        mode = formats.ilbc_frames(payload, self.mode_ms)
        if mode != self.mode_ms:
            self.mode_ms = mode
            self.reopen(bit_rate=_ILBC_BIT_RATE[mode])
        return super().decode(payload)


def _fmtp_flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "0").strip() == "1"


def new_decoder(name: str, sample_rate_hz: int, params: Mapping[str, str]) -> FrameDecoder:
    """A decoder for FFmpeg codec ``name`` (a key of :data:`FFMPEG_DECODERS`) with the
    m-line's ``a=fmtp`` parameters (RFC 4867 §8.1 ``octet-align``, RFC 3952 ``mode``)."""
    mono = {"sample_rate": sample_rate_hz, "layout": "mono"}
    if name == "g722":
        return FrameDecoder("g722", _whole, mono)
    if name == "g729":
        return FrameDecoder("g729", _g729, mono)
    if name == "gsm":
        return FrameDecoder("gsm", _gsm, mono)
    if name == "ilbc":
        mode = params.get("mode", "30").strip()  # RFC 3952 §5: 30 unless both say 20
        return _IlbcDecoder(20 if mode == "20" else 30)
    if name in ("amrnb", "amrwb"):
        kind = formats.AMR_NB if name == "amrnb" else formats.AMR_WB
        return FrameDecoder(name, _amr(kind, _fmtp_flag(params, "octet-align")), mono)
    if name == "opus":
        return FrameDecoder("opus", _whole, {"sample_rate": 48000})
    if name == "speex":
        return FrameDecoder("speex", _whole, mono)
    raise KeyError(name)


# FFmpeg decoder -> (sample rate, one valid payload to try it with).
FFMPEG_DECODERS: Final[Mapping[str, tuple[int, bytes]]] = {
    "g722": (16000, bytes(160)),
    "g729": (8000, bytes(10)),
    "gsm": (8000, bytes([0xD0]) + bytes(32)),
    "ilbc": (8000, bytes(50)),
    "amrnb": (8000, bytes([0xF0, 0x3C]) + bytes(31)),  # CMR, ToC FT 7 (12.2 kbit/s), frame
    "amrwb": (16000, bytes([0xF0, 0x44]) + bytes(60)),  # CMR, ToC FT 8 (23.85 kbit/s)
    "opus": (48000, bytes([0xF8, 0xFF, 0xFE])),  # RFC 6716: a 20 ms CELT silence frame
    "speex": (8000, bytes(38)),
}


@functools.cache
def decodable() -> frozenset[str]:
    """The FFmpeg decoders of :data:`FFMPEG_DECODERS` that open and decode a frame here."""
    try:
        import av  # noqa: F401
    except ImportError:
        return frozenset()
    found = set()
    for name, (rate, probe) in FFMPEG_DECODERS.items():
        params = {"octet-align": "1"} if name.startswith("amr") else {}
        try:
            pcm = new_decoder(name, rate, params).decode(probe)
        except Exception:  # noqa: S112 - any failure means: not decodable here
            continue
        if len(pcm):
            found.add(name)
    return frozenset(found)
