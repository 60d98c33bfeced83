"""The test-side encoders: their payloads decode back, with FFmpeg's decoders, to the tone.

The depacketizing here (AMR payloads back to storage-format frames) is written from RFC 4867
again, independently of ``encoders.py``'s packetizer, so a packing error fails the round trip.

What FFmpeg's decoders (PyAV) want, one ``av.Packet`` per call, with ``sample_rate`` set:
g722 a 160-byte payload -> s16 320 samples at 16 kHz; g729 any multiple of 10 bytes -> one
s16p frame of 80 samples per 10 bytes, and a 2-byte SID is refused (InvalidDataError); gsm
33 bytes a frame, several per packet fine -> s16 160 each; opus -> fltp; speex needs
``sample_rate`` (8000 or 16000; no Ogg header to read it from) -> flt; amrnb/amrwb take ONE
storage-format frame per packet (a second one is read as a second channel and refused) ->
fltp 160 / 320 samples.
"""

from __future__ import annotations

import ctypes
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from tests.codecs import encoders
from tests.codecs.encoders import AMR_NB_BITS, AMR_WB_BITS, available, encode, tone
from tests.e2e.audio import band_energy_ratio, dominant_frequency


def _decode(codec: str, packets: list[bytes], rate_hz: int | None = None) -> npt.NDArray[Any]:
    """Mono float samples from an FFmpeg decoder fed one av.Packet per payload."""
    ctx = av.CodecContext.create(codec, "r")
    assert isinstance(ctx, av.AudioCodecContext)
    if rate_hz is not None:
        ctx.sample_rate = rate_hz
    ctx.layout = "mono"
    out: list[npt.NDArray[Any]] = []
    for payload in packets:
        for frame in ctx.decode(av.Packet(payload)):
            x = frame.to_ndarray()
            out.append(x[0] if x.ndim == 2 else x)
    return np.concatenate(out).astype(np.float64)


def _skip(name: str, **options: Any) -> None:
    reason = available(name, **options)
    if reason is not None:
        pytest.skip(reason)


def _steady(x: npt.NDArray[Any], rate_hz: int) -> npt.NDArray[Any]:
    """The middle of the decoded signal: past codec start-up and the end."""
    return x[rate_hz // 10 : len(x) - rate_hz // 10]


def _check_timestamps(audio: encoders.RtpAudio, per_packet: int) -> None:
    assert audio.timestamps == [i * per_packet for i in range(len(audio.payloads))]


def test_l16_is_big_endian_pcm_at_any_rate() -> None:
    pcm = tone([1000], 0.5, 22050)
    audio = encode("L16", pcm, 22050, ptime_ms=10)
    assert (audio.encoding_name, audio.clock_rate_hz, audio.sample_rate_hz) == ("L16", 22050, 22050)
    assert {len(p) for p in audio.payloads} == {2 * 220}
    _check_timestamps(audio, 220)
    back = np.frombuffer(b"".join(audio.payloads), dtype=">i2")
    assert np.array_equal(back, pcm[: len(back)])


def test_g722_carries_16k_audio_at_an_8k_clock() -> None:
    _skip("G722")
    pcm = tone([1000, 6000], 1.0, 16000)
    audio = encode("G722", pcm, 16000)
    assert (audio.clock_rate_hz, audio.sample_rate_hz) == (8000, 16000)
    assert {len(p) for p in audio.payloads} == {160}
    _check_timestamps(audio, 160)
    x = _decode("g722", audio.payloads, 16000)
    assert len(x) == 320 * len(audio.payloads)
    x = _steady(x, 16000)
    assert abs(dominant_frequency(x, 16000) - 1000) < 20
    assert band_energy_ratio(x, 16000, 6000, 3000) > 10  # the tone above 4 kHz survives


def test_gsm_33_byte_frames() -> None:
    _skip("GSM")
    audio = encode("GSM", tone([700], 1.0, 8000), 8000, ptime_ms=40)
    assert {len(p) for p in audio.payloads} == {66}
    _check_timestamps(audio, 320)
    frames = [p[i : i + 33] for p in audio.payloads for i in (0, 33)]
    assert all(f[0] >> 4 == 0xD for f in frames)  # RFC 3551 §4.5.8.1: the 0xD signature
    x = _decode("gsm", frames, 8000)
    assert len(x) == 160 * len(frames)
    assert abs(dominant_frequency(_steady(x, 8000), 8000) - 700) < 20


@pytest.mark.parametrize("fec", [False, True])
def test_opus_48k_clock_two_channels(fec: bool) -> None:
    _skip("opus", fec=fec)
    audio = encode("opus", tone([500, 7000], 1.0, 16000), 16000, fec=fec, bitrate=48000)
    assert (audio.clock_rate_hz, audio.channels) == (48000, 2)
    assert audio.fmtp == ("useinbandfec=1" if fec else None)
    _check_timestamps(audio, 960)
    assert all(p[0] & 0x03 == 0 for p in audio.payloads)  # RFC 6716 §3.1: code 0, one frame
    x = _decode("opus", audio.payloads, 48000)
    assert len(x) == 960 * len(audio.payloads)
    x = _steady(x, 48000)
    assert abs(dominant_frequency(x, 48000) - 500) < 20
    assert band_energy_ratio(x, 48000, 7000, 3000) > 10


@pytest.mark.parametrize("rate_hz", [8000, 16000])
def test_speex_narrow_and_wide(rate_hz: int) -> None:
    _skip("speex")
    freqs = [600] if rate_hz == 8000 else [600, 5000]
    audio = encode("speex", tone(freqs, 1.0, rate_hz), rate_hz)
    assert audio.clock_rate_hz == rate_hz
    _check_timestamps(audio, rate_hz // 50)
    x = _decode("speex", audio.payloads, rate_hz)
    assert len(x) == rate_hz // 50 * len(audio.payloads)
    x = _steady(x, rate_hz)
    assert abs(dominant_frequency(x, rate_hz) - 600) < 20
    if rate_hz == 16000:
        assert band_energy_ratio(x, rate_hz, 5000, 3000) > 10
    with pytest.raises(ValueError, match="8000 or 16000"):
        encode("speex", tone([600], 0.1, 11025), 11025)


def test_g729_twenty_bytes_per_20_ms() -> None:
    _skip("G729")
    audio = encode("G729", tone([800], 1.0, 8000), 8000)
    assert audio.fmtp == "annexb=no"
    assert {len(p) for p in audio.payloads} == {20}
    _check_timestamps(audio, 160)
    frames = [p[i : i + 10] for p in audio.payloads for i in (0, 10)]
    x = _decode("g729", frames, 8000)
    assert len(x) == 80 * len(frames)
    assert abs(dominant_frequency(_steady(x, 8000), 8000) - 800) < 20


def test_g729_annexb_sends_sids_in_silence_and_leaves_gaps() -> None:
    _skip("G729", annexb=True)
    pcm = np.concatenate([tone([800], 0.5, 8000), np.zeros(8000, np.int16), tone([800], 0.5, 8000)])
    audio = encode("G729", pcm, 8000, annexb=True)
    assert audio.fmtp == "annexb=yes"
    sizes = [len(p) for p in audio.payloads]
    assert set(sizes) <= {2, 10, 12, 20}
    assert 2 in sizes  # a SID alone during the silence
    assert all(len(p) % 10 in (0, 2) for p in audio.payloads)  # the SID, if any, is last
    gaps = np.diff(audio.timestamps)
    assert gaps.min() >= 80 and gaps.max() > 160  # DTX sent nothing for a while
    assert audio.timestamps[-1] + 160 >= len(pcm) - 160
    speech = [p for p in audio.payloads[:20] if len(p) == 20]
    frames = [p[i : i + 10] for p in speech for i in (0, 10)]
    x = _decode("g729", frames, 8000)
    assert abs(dominant_frequency(x[800:], 8000) - 800) < 20


def _bcg729_decode(audio: encoders.RtpAudio, samples: int) -> npt.NDArray[np.int16]:
    """The G.729 payloads decoded by bcg729 (which, unlike FFmpeg's, takes SID frames) onto
    their timestamps; what DTX left unsent stays zero."""
    lib = ctypes.CDLL("libbcg729.so.0")
    lib.initBcg729DecoderChannel.restype = ctypes.c_void_p
    lib.bcg729Decoder.restype = None
    lib.bcg729Decoder.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_uint8,
        ctypes.c_uint8,
        ctypes.c_uint8,
        ctypes.c_uint8,
        ctypes.POINTER(ctypes.c_int16),
    ]
    lib.closeBcg729DecoderChannel.argtypes = [ctypes.c_void_p]
    lib.closeBcg729DecoderChannel.restype = None
    context = lib.initBcg729DecoderChannel()
    out = np.zeros(samples, np.int16)
    block = (ctypes.c_int16 * 80)()
    try:
        for payload, timestamp in zip(audio.payloads, audio.timestamps, strict=True):
            frames = [payload[i : i + 10] for i in range(0, len(payload) // 10 * 10, 10)]
            frames += [payload[-2:]] if len(payload) % 10 == 2 else []
            for k, frame in enumerate(frames):
                sid = 1 if len(frame) == 2 else 0
                lib.bcg729Decoder(context, frame, len(frame), 0, sid, 0, block)
                at = timestamp + 80 * k
                out[at : at + 80] = np.frombuffer(bytes(block), np.int16)[: max(samples - at, 0)]
    finally:
        lib.closeBcg729DecoderChannel(context)
    return out


def test_g729_annexb_decodes_to_the_tone_and_quiet_between() -> None:
    _skip("G729", annexb=True)
    pcm = np.concatenate([tone([800], 0.5, 8000), np.zeros(8000, np.int16), tone([800], 0.5, 8000)])
    audio = encode("G729", pcm, 8000, annexb=True)
    x = _bcg729_decode(audio, len(pcm)).astype(np.float64)

    def rms(a: npt.NDArray[np.float64]) -> float:
        return float(np.sqrt((a**2).mean()))

    first, silence, second = x[800:4000], x[5000:11000], x[12800:]
    assert abs(dominant_frequency(first, 8000) - 800) < 20
    assert abs(dominant_frequency(second, 8000) - 800) < 20
    assert rms(silence) < rms(first) / 20


def _amr_frames(payload: bytes, wide: bool, octet_align: bool) -> tuple[int, list[bytes]]:
    """RFC 4867 §4.3/§4.4 payload -> (CMR, storage-format frames as FFmpeg reads them)."""
    table = AMR_WB_BITS if wide else AMR_NB_BITS
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    if octet_align:
        cmr = payload[0] >> 4
        assert payload[0] & 0x0F == 0
        tocs = []
        i = 1
        while True:
            tocs.append(payload[i])
            i += 1
            if not payload[i - 1] & 0x80:
                break
        frames = []
        for toc in tocs:
            assert toc & 0x03 == 0  # P bits
            n = (table[(toc >> 3) & 0x0F] + 7) // 8
            frames.append(bytes([toc & 0x7C]) + payload[i : i + n])
            i += n
        assert i == len(payload)
        return cmr, frames

    def take(pos: int, n: int) -> int:
        return int("".join(str(b) for b in bits[pos : pos + n]), 2)

    cmr = take(0, 4)
    pos = 4
    entries = []
    while True:
        f, ft, q = take(pos, 1), take(pos + 1, 4), take(pos + 5, 1)
        entries.append((ft, q))
        pos += 6
        if not f:
            break
    frames = []
    for ft, q in entries:
        n = table[ft]
        body = np.zeros(-(-n // 8) * 8, dtype=np.uint8)
        body[:n] = bits[pos : pos + n]
        pos += n
        frames.append(bytes([ft << 3 | q << 2]) + np.packbits(body).tobytes())
    assert len(payload) * 8 - pos < 8 and not bits[pos:].any()  # zero padding only
    return cmr, frames


# (mode, speech bits) from 3GPP TS 26.101 Table 1a: 12.2 kbit/s has 244 bits, 4.75 has 95.
@pytest.mark.parametrize(
    ("octet_align", "per_packet", "mode", "bits"),
    [(False, 1, 7, 244), (False, 3, 7, 244), (True, 1, 7, 244), (True, 2, 7, 244),
     (False, 2, 0, 95), (True, 3, 0, 95)],
)  # fmt: skip
def test_amr_nb_payloads(octet_align: bool, per_packet: int, mode: int, bits: int) -> None:
    _skip("AMR")
    audio = encode(
        "AMR",
        tone([900], 1.0, 8000),
        8000,
        octet_align=octet_align,
        frames_per_packet=per_packet,
        mode=mode,
    )
    assert audio.fmtp == ("octet-align=1" if octet_align else None)
    assert audio.clock_rate_hz == 8000
    _check_timestamps(audio, 160 * per_packet)
    full = audio.payloads[1]
    expected = (
        1 + per_packet + -(-bits // 8) * per_packet
        if octet_align
        else -(-(4 + 6 * per_packet + bits * per_packet) // 8)
    )
    assert len(full) == expected
    frames: list[bytes] = []
    for p in audio.payloads:
        cmr, got = _amr_frames(p, wide=False, octet_align=octet_align)
        assert cmr == 15
        frames += got
    assert all(f[0] == (mode << 3 | 0x04) for f in frames)  # FT = mode, Q 1
    x = _decode("amrnb", frames, 8000)
    assert len(x) == 160 * len(frames)
    assert abs(dominant_frequency(_steady(x, 8000), 8000) - 900) < 20


@pytest.mark.parametrize(("octet_align", "mode"), [(False, 8), (True, 8), (False, 2), (True, 2)])
def test_amr_wb_payloads(octet_align: bool, mode: int) -> None:
    _skip("AMR-WB")
    audio = encode(
        "AMR-WB",
        tone([900, 5500], 1.0, 16000),
        16000,
        octet_align=octet_align,
        frames_per_packet=2,
        mode=mode,
    )
    assert (audio.clock_rate_hz, audio.sample_rate_hz) == (16000, 16000)
    _check_timestamps(audio, 640)
    frames: list[bytes] = []
    for p in audio.payloads:
        cmr, got = _amr_frames(p, wide=True, octet_align=octet_align)
        assert cmr == 15 and len(got) in (1, 2)
        frames += got
    assert {f[0] >> 3 & 0x0F for f in frames} == {mode}
    x = _decode("amrwb", frames, 16000)
    assert len(x) == 320 * len(frames)
    x = _steady(x, 16000)
    assert abs(dominant_frequency(x, 16000) - 900) < 20
    if mode == 8:  # 23.85 kbit/s carries the 6.4-7 kHz band from the encoder's own bits
        assert band_energy_ratio(x, 16000, 5500, 3000) > 10


def test_ilbc_has_no_encoder_here() -> None:
    reason = available("iLBC")
    assert reason is not None and "iLBC" in reason
    with pytest.raises(RuntimeError, match="iLBC"):
        encode("iLBC", tone([500], 0.1, 8000), 8000)
