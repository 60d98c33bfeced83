"""Real encoders that make RTP payloads, for the codec tests.

Each codec is encoded by a real, independent implementation and packetized here as its RTP
payload format says:

- G.722: FFmpeg's ``g722`` encoder (Debian's ``ffmpeg`` CLI, raw output). RFC 3551 §4.5.2:
  ``G722/8000`` although the audio is 16 kHz; 8 bits per 2 samples, so 160 bytes per 20 ms.
- G.729 (and Annex B): bcg729 (Debian ``libbcg729-0``, GPL: tests only) through ctypes.
  RFC 3551 §4.5.6: 10-byte frames of 10 ms, several per packet, then at most one 2-byte
  Annex B SID frame; nothing is sent for the frames VAD/DTX leaves untransmitted.
- Opus: libopus through the ``ffmpeg`` CLI into Ogg, demuxed with PyAV. RFC 7587: one Opus
  packet per RTP payload, ``opus/48000/2`` whatever the audio is (§4.1, §7).
- AMR-NB: opencore through PyAV's ``libopencore_amrnb``; AMR-WB: VisualOn's encoder
  (Debian ``libvo-amrwbenc0``) through ctypes. Both give RFC 4867 §5 storage-format frames
  (a ``P FT Q P P`` byte, then the speech bits) which are packed into RFC 4867 §4.3
  bandwidth-efficient or §4.4 octet-aligned payloads with a CMR and a ToC entry per frame.
- GSM: libgsm through the ``ffmpeg`` CLI (raw 33-byte frames). RFC 3551 §4.5.8.
- Speex: libspeex through the ``ffmpeg`` CLI into Ogg, demuxed with PyAV. RFC 5574 §3:
  frames of 20 ms back to back in one payload.
- L16: 16-bit PCM in network byte order, any rate. RFC 3551 §4.5.11.
- iLBC: no encoder is installable here (neither Debian nor PyPI ships one, and neither
  Debian's ffmpeg nor PyAV's wheel is built with ``libilbc``), so ``available`` says so.
"""

from __future__ import annotations

import ctypes
import functools
import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True)
class RtpAudio:
    encoding_name: str  # a=rtpmap encoding name as SDP writes it
    clock_rate_hz: int  # a=rtpmap clock rate
    channels: int | None  # a=rtpmap channels (opus: 2 per RFC 7587 §7; else None)
    sample_rate_hz: int  # rate of the audio the payloads carry (G722: 16000)
    fmtp: str | None  # a=fmtp parameters the payloads need
    payloads: list[bytes]  # one RTP payload per packet, in order
    timestamps: list[int]  # RTP timestamp of each payload, from 0, in clock units


def tone(freqs_hz: Sequence[float], seconds: float, rate_hz: int, amplitude: float = 0.4) -> Pcm:
    """int16 mono: the sum of sines at ``freqs_hz``, peak ``amplitude`` of full scale."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    x = sum((np.sin(2 * np.pi * f * t) for f in freqs_hz), start=np.zeros_like(t))
    x = x / max(len(freqs_hz), 1) * amplitude * 32767
    return np.round(x).astype(np.int16)


# RFC 4867 §3.6 / 3GPP TS 26.101 and 26.201: speech bits per frame type (FT); 8 (NB) and
# 9 (WB) are SID frames, 15 is NO_DATA.
AMR_NB_BITS = (95, 103, 118, 134, 148, 159, 204, 244, 39)
AMR_WB_BITS = (132, 177, 253, 285, 317, 365, 397, 461, 477, 40)

_FFMPEG_ENCODERS = {"G722": "g722", "GSM": "libgsm", "opus": "libopus", "speex": "libspeex"}
_ILBC = "iLBC: no encoder here (no Debian or PyPI package; ffmpeg and PyAV lack libilbc)"


@functools.cache
def _ffmpeg_encoders() -> str:
    if shutil.which("ffmpeg") is None:
        return ""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout


@functools.cache
def _library(soname: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(soname)
    except OSError:
        return None


def available(encoding_name: str, **options: Any) -> str | None:
    """None when that encoder runs here, else the reason (what tests skip with)."""
    if encoding_name in _FFMPEG_ENCODERS:
        encoder = _FFMPEG_ENCODERS[encoding_name]
        if f" {encoder} " not in _ffmpeg_encoders():
            return f"{encoding_name}: ffmpeg with the {encoder} encoder is not installed"
        if encoding_name == "opus" and options.get("dtx"):
            return (
                "opus dtx: neither Debian's ffmpeg 5.1 nor PyAV's FFmpeg has a libopus dtx option"
            )
        return None
    if encoding_name == "G729":
        return None if _library("libbcg729.so.0") else "G729: libbcg729-0 is not installed"
    if encoding_name == "AMR":
        if "libopencore_amrnb" in av.codecs_available:
            return None
        return "AMR: this PyAV wheel has no libopencore_amrnb encoder"
    if encoding_name == "AMR-WB":
        ok = _library("libvo-amrwbenc.so.0")
        return None if ok else "AMR-WB: libvo-amrwbenc0 is not installed"
    if encoding_name == "iLBC":
        return _ILBC
    if encoding_name == "L16":
        return None
    return f"{encoding_name}: no encoder known"


def resample(pcm: Pcm, rate_hz: int, to_hz: int) -> Pcm:
    """``pcm`` at ``to_hz``, through FFmpeg's resampler (PyAV's ``AudioResampler``)."""
    if rate_hz == to_hz:
        return pcm
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate_hz
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_hz)
    out = [
        f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]
    ]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


def encode(
    encoding_name: str, pcm: Pcm, rate_hz: int, *, ptime_ms: int = 20, **options: Any
) -> RtpAudio:
    """Encode mono int16 ``pcm`` (resampled to the encoder's rate) into RTP payloads."""
    reason = available(encoding_name, **options)
    if reason is not None:
        raise RuntimeError(reason)
    if ptime_ms <= 0 or ptime_ms % 10:
        raise ValueError(f"ptime {ptime_ms} ms is not a positive multiple of 10 ms")
    pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
    if encoding_name == "L16":
        return _l16(pcm, rate_hz, ptime_ms)
    if encoding_name == "G722":
        return _g722(resample(pcm, rate_hz, 16000), ptime_ms)
    if encoding_name == "GSM":
        return _gsm(resample(pcm, rate_hz, 8000), ptime_ms)
    if encoding_name == "opus":
        return _opus(resample(pcm, rate_hz, 48000), ptime_ms, **options)
    if encoding_name == "speex":
        # Narrowband for 8 kHz input, wideband for 16 kHz; the caller picks by rate_hz.
        if rate_hz not in (8000, 16000):
            raise ValueError(f"speex: rate_hz {rate_hz} must be 8000 or 16000")
        return _speex(pcm, rate_hz, ptime_ms)
    if encoding_name == "G729":
        return _g729(resample(pcm, rate_hz, 8000), ptime_ms, bool(options.get("annexb", False)))
    if encoding_name in ("AMR", "AMR-WB"):
        wide = encoding_name == "AMR-WB"
        rate = 16000 if wide else 8000
        per_packet = int(options.get("frames_per_packet", max(ptime_ms // 20, 1)))
        mode = int(options.get("mode", 8 if wide else 7))
        if not 0 <= mode < (9 if wide else 8):
            raise ValueError(f"{encoding_name} mode {mode} out of range")
        frames = (_amrwb_frames if wide else _amrnb_frames)(resample(pcm, rate_hz, rate), mode)
        return _amr_rtp(
            encoding_name, frames, rate, per_packet, bool(options.get("octet_align", False))
        )
    raise ValueError(f"{encoding_name}: no encoder known")


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def _ffmpeg(pcm: Pcm, rate_hz: int, args: Sequence[str]) -> bytes:
    """Run the ffmpeg CLI: raw s16le mono on stdin, the encoded stream on stdout."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "s16le", "-ar", str(rate_hz), "-ac", "1", "-i", "pipe:0",
        *args, "pipe:1",
    ]  # fmt: skip
    done = subprocess.run(
        command, input=pcm.astype("<i2").tobytes(), capture_output=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


def _ogg_packets(data: bytes) -> list[bytes]:
    """The codec packets of an Ogg stream (PyAV's demuxer keeps the headers as extradata)."""
    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        stream = container.streams.audio[0]
        return [bytes(p) for p in container.demux(stream) if p.size > 0]


def _l16(pcm: Pcm, rate_hz: int, ptime_ms: int) -> RtpAudio:
    per = rate_hz * ptime_ms // 1000
    payloads = _chunks(pcm.astype(">i2").tobytes(), per * 2)
    return RtpAudio("L16", rate_hz, None, rate_hz, None, payloads, _steps(len(payloads), per))


def _steps(count: int, per: int) -> list[int]:
    return [i * per for i in range(count)]


def _g722(pcm: Pcm, ptime_ms: int) -> RtpAudio:
    data = _ffmpeg(pcm, 16000, ["-c:a", "g722", "-f", "g722"])
    # RFC 3551 §4.5.2: the clock runs at 8000 Hz although 16,000 samples are sent a second.
    per_bytes = 8 * ptime_ms
    payloads = _chunks(data, per_bytes)
    return RtpAudio("G722", 8000, None, 16000, None, payloads, _steps(len(payloads), per_bytes))


def _gsm(pcm: Pcm, ptime_ms: int) -> RtpAudio:
    if ptime_ms % 20:
        raise ValueError("GSM frames are 20 ms: ptime must be a multiple of 20")
    data = _ffmpeg(pcm, 8000, ["-c:a", "libgsm", "-f", "gsm"])
    frames = ptime_ms // 20
    payloads = _chunks(data, 33 * frames)
    return RtpAudio("GSM", 8000, None, 8000, None, payloads, _steps(len(payloads), 160 * frames))


def _opus(
    pcm: Pcm, ptime_ms: int, *, fec: bool = False, bitrate: int | None = None, **_: Any
) -> RtpAudio:
    args = ["-c:a", "libopus", "-application", "voip", "-frame_duration", str(ptime_ms)]
    if fec:
        args += ["-fec", "1", "-packet_loss", "10"]
    if bitrate is not None:
        args += ["-b:a", str(bitrate)]
    packets = _ogg_packets(_ffmpeg(pcm, 48000, [*args, "-f", "ogg"]))
    fmtp = "useinbandfec=1" if fec else None
    return RtpAudio("opus", 48000, 2, 48000, fmtp, packets, _steps(len(packets), 48 * ptime_ms))


def _speex(pcm: Pcm, rate_hz: int, ptime_ms: int) -> RtpAudio:
    if ptime_ms % 20:
        raise ValueError("Speex frames are 20 ms: ptime must be a multiple of 20")
    frames = ptime_ms // 20
    args = ["-c:a", "libspeex", "-frames_per_packet", str(frames), "-f", "ogg"]
    packets = _ogg_packets(_ffmpeg(pcm, rate_hz, args))
    per = rate_hz * ptime_ms // 1000
    return RtpAudio("speex", rate_hz, None, rate_hz, None, packets, _steps(len(packets), per))


def _g729(pcm: Pcm, ptime_ms: int, annexb: bool) -> RtpAudio:
    lib = _library("libbcg729.so.0")
    if lib is None:
        raise RuntimeError("G729: libbcg729-0 is not installed")
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    lib.initBcg729EncoderChannel.argtypes = [ctypes.c_uint8]
    lib.bcg729Encoder.restype = None
    lib.bcg729Encoder.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.POINTER(ctypes.c_uint8),
        ctypes.POINTER(ctypes.c_uint8),
    ]  # fmt: skip
    lib.closeBcg729EncoderChannel.argtypes = [ctypes.c_void_p]
    lib.closeBcg729EncoderChannel.restype = None
    context = lib.initBcg729EncoderChannel(1 if annexb else 0)
    frames: list[bytes] = []
    try:
        out = (ctypes.c_uint8 * 10)()
        length = ctypes.c_uint8()
        samples = np.ascontiguousarray(pcm[: len(pcm) // 80 * 80])
        for i in range(0, len(samples), 80):
            block = np.ascontiguousarray(samples[i : i + 80])
            lib.bcg729Encoder(
                context, block.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), out,
                ctypes.byref(length),
            )  # fmt: skip
            frames.append(bytes(out[: length.value]))
    finally:
        lib.closeBcg729EncoderChannel(context)
    # RFC 3551 §4.5.6: up to ptime/10 frames a packet; a SID (2 bytes) ends a packet; a frame
    # DTX leaves untransmitted (0 bytes) ends it too, and the next packet's timestamp skips it.
    per_packet = ptime_ms // 10
    payloads: list[bytes] = []
    timestamps: list[int] = []
    current = b""
    start = 0
    for index, frame in enumerate(frames):
        if not frame:
            if current:
                payloads.append(current)
                timestamps.append(start)
                current = b""
            continue
        if not current:
            start = index * 80
        current += frame
        if len(frame) == 2 or len(current) // 10 == per_packet:
            payloads.append(current)
            timestamps.append(start)
            current = b""
    if current:
        payloads.append(current)
        timestamps.append(start)
    fmtp = "annexb=yes" if annexb else "annexb=no"
    return RtpAudio("G729", 8000, None, 8000, fmtp, payloads, timestamps)


_AMR_NB_BITRATES = (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200)


def _amrnb_frames(pcm: Pcm, mode: int) -> list[bytes]:
    """AMR-NB storage-format frames from opencore (PyAV's libopencore_amrnb)."""
    codec = av.CodecContext.create("libopencore_amrnb", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = 8000
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = _AMR_NB_BITRATES[mode]
    codec.open()
    out: list[bytes] = []
    whole = pcm[: len(pcm) // 160 * 160]
    for i in range(0, len(whole), 160):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(whole[i : i + 160]).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def _amrwb_frames(pcm: Pcm, mode: int) -> list[bytes]:
    """AMR-WB storage-format frames from VisualOn's encoder (``E_IF_encode``)."""
    lib = _library("libvo-amrwbenc.so.0")
    if lib is None:
        raise RuntimeError("AMR-WB: libvo-amrwbenc0 is not installed")
    lib.E_IF_init.restype = ctypes.c_void_p
    lib.E_IF_encode.restype = ctypes.c_int
    lib.E_IF_encode.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int16),
        ctypes.POINTER(ctypes.c_uint8), ctypes.c_int,
    ]  # fmt: skip
    lib.E_IF_exit.argtypes = [ctypes.c_void_p]
    lib.E_IF_exit.restype = None
    state = lib.E_IF_init()
    out: list[bytes] = []
    buffer = (ctypes.c_uint8 * 64)()
    try:
        whole = pcm[: len(pcm) // 320 * 320]
        for i in range(0, len(whole), 320):
            block = np.ascontiguousarray(whole[i : i + 320])
            n = lib.E_IF_encode(
                state, mode, block.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), buffer, 0
            )
            out.append(bytes(buffer[:n]))
    finally:
        lib.E_IF_exit(state)
    return out


def amr_bits(frame_type: int, wide: bool) -> int:
    """Speech bits of an AMR frame type (RFC 4867 §3.6); 0 for NO_DATA and the reserved."""
    table = AMR_WB_BITS if wide else AMR_NB_BITS
    return table[frame_type] if frame_type < len(table) else 0


def _amr_rtp(
    name: str, frames: list[bytes], rate_hz: int, per_packet: int, octet_align: bool
) -> RtpAudio:
    if per_packet < 1:
        raise ValueError("frames_per_packet must be at least 1")
    wide = name == "AMR-WB"
    payloads = [
        _amr_payload(frames[i : i + per_packet], wide, octet_align)
        for i in range(0, len(frames), per_packet)
    ]
    per = rate_hz // 50 * per_packet
    fmtp = "octet-align=1" if octet_align else None
    return RtpAudio(name, rate_hz, None, rate_hz, fmtp, payloads, _steps(len(payloads), per))


def _amr_payload(frames: Sequence[bytes], wide: bool, octet_align: bool) -> bytes:
    """One RFC 4867 payload: CMR 15 (no request), a ToC entry per frame, the speech bits."""
    cmr = 15
    if octet_align:
        # §4.4: CMR in the high nibble of a byte; each ToC entry a byte F FT(4) Q P P; each
        # frame's speech bits padded to a whole byte, which is the storage format's body.
        tocs = bytes(
            (f[0] & 0x7C) | (0x80 if i < len(frames) - 1 else 0) for i, f in enumerate(frames)
        )
        return bytes([cmr << 4]) + tocs + b"".join(f[1:] for f in frames)
    # §4.3: CMR 4 bits, ToC entries of 6 bits (F, FT, Q), then every frame's speech bits back
    # to back, in the order the storage format holds them (§4.3.2, §5.3), zero-padded at the end.
    bits: list[int] = [(cmr >> (3 - k)) & 1 for k in range(4)]
    for i, f in enumerate(frames):
        toc = ((1 if i < len(frames) - 1 else 0) << 5) | ((f[0] >> 3) & 0x0F) << 1 | (f[0] >> 2) & 1
        bits += [(toc >> (5 - k)) & 1 for k in range(6)]
    for f in frames:
        n = amr_bits((f[0] >> 3) & 0x0F, wide)
        body = np.unpackbits(np.frombuffer(f[1:], dtype=np.uint8))[:n]
        bits += body.tolist()
    bits += [0] * (-len(bits) % 8)
    return np.packbits(np.array(bits, dtype=np.uint8)).tobytes()


__all__ = [
    "AMR_NB_BITS",
    "AMR_WB_BITS",
    "RtpAudio",
    "amr_bits",
    "available",
    "encode",
    "resample",
    "tone",
]
