"""srs's own decoders (srs.codecs.ffmpeg, srs.codecs.formats) on payloads from real
encoders (tests/codecs/encoders.py): each decodes the tone back at the codec's rate, with
its length, and hostile payloads are refused with PayloadError."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from srs.codecs import ffmpeg, formats
from tests.codecs.encoders import available, encode, tone
from tests.e2e.audio import band_energy_ratio, dominant_frequency

SECONDS = 1.0


def _skip(name: str, **options: Any) -> None:
    reason = available(name, **options)
    if reason is not None:
        pytest.skip(reason)


def _decode_all(decoder: ffmpeg.FrameDecoder, payloads: list[bytes]) -> npt.NDArray[np.int16]:
    return np.concatenate([decoder.decode(p) for p in payloads])


def _steady(x: npt.NDArray[Any], rate_hz: int) -> npt.NDArray[Any]:
    return x[rate_hz // 10: len(x) - rate_hz // 10]


def test_every_ffmpeg_decoder_is_found_in_the_installed_wheel() -> None:
    assert ffmpeg.decodable() == frozenset(ffmpeg.FFMPEG_DECODERS)


# (encoding name, encoder options, FFmpeg decoder, sample rate, fmtp params, tones)
CASES = [
    ("G722", {}, "g722", 16000, {}, (440.0, 5000.0)),
    ("G729", {"annexb": False}, "g729", 8000, {}, (440.0,)),
    ("GSM", {}, "gsm", 8000, {}, (440.0,)),
    ("opus", {}, "opus", 48000, {}, (440.0, 6000.0)),
    ("AMR", {"octet_align": True, "frames_per_packet": 2}, "amrnb", 8000,
     {"octet-align": "1"}, (440.0,)),
    ("AMR", {"octet_align": False}, "amrnb", 8000, {}, (440.0,)),
    ("AMR-WB", {"octet_align": True, "mode": 8}, "amrwb", 16000, {"octet-align": "1"},
     (440.0, 5000.0)),
    ("AMR-WB", {"octet_align": False, "mode": 8, "frames_per_packet": 3}, "amrwb", 16000, {},
     (440.0, 5000.0)),
    ("speex", {}, "speex", 8000, {}, (440.0,)),
]


@pytest.mark.parametrize(("name", "options", "decoder", "rate", "params", "tones"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_real_encoders_payloads_decode_to_its_tone(
    name: str, options: dict[str, Any], decoder: str, rate: int, params: dict[str, str],
    tones: tuple[float, ...],
) -> None:
    _skip(name, **options)
    audio = encode(name, tone(tones, SECONDS, rate), rate, **options)
    pcm = _decode_all(ffmpeg.new_decoder(decoder, rate, params), audio.payloads)
    assert pcm.dtype == np.int16
    assert len(pcm) == pytest.approx(SECONDS * rate, abs=rate * 0.05)
    steady = _steady(pcm.astype(np.float64), rate)
    assert np.abs(steady).max() > 3000, "decoded to near silence"
    dominant = dominant_frequency(steady, rate)
    assert any(dominant == pytest.approx(f, abs=10) for f in tones), dominant
    for freq in tones:  # every tone is there, the wideband one above 4 kHz included
        assert band_energy_ratio(steady, rate, freq, 2500.0) > 10


def test_g729_annex_b_sid_frames_decode_to_nothing() -> None:
    _skip("G729", annexb=True)
    signal = np.concatenate([tone((440.0,), 0.5, 8000), np.zeros(8000, np.int16),
                             tone((440.0,), 0.5, 8000)])
    audio = encode("G729", signal, 8000, annexb=True)
    sids = [p for p in audio.payloads if len(p) % 10 == 2]
    assert sids, "the encoder sent no SID frame during the silence"
    decoder = ffmpeg.new_decoder("g729", 8000, {})
    for payload in sids:
        assert len(decoder.decode(payload)) == (len(payload) // 10) * 80
    with pytest.raises(formats.PayloadError):
        decoder.decode(bytes(13))


def test_amr_bad_table_of_contents_is_refused() -> None:
    _skip("AMR", octet_align=True)
    audio = encode("AMR", tone((440.0,), 0.2, 8000), 8000, octet_align=True)
    decoder = ffmpeg.new_decoder("amrnb", 8000, {"octet-align": "1"})
    good = audio.payloads[3]
    assert len(decoder.decode(good)) == 160
    reserved = bytes([good[0], (12 << 3) | 0x04]) + good[2:]  # FT 12 is reserved
    truncated = good[:10]  # shorter than the ToC's 12.2 kbit/s frame
    endless = bytes([0xF0]) + bytes([0x80 | (7 << 3) | 0x04]) * 20  # F=1 forever
    for bad in (reserved, truncated, endless, b""):
        with pytest.raises(formats.PayloadError):
            decoder.decode(bad)
    assert len(decoder.decode(good)) == 160  # the stream goes on after a bad packet


def test_amr_sid_and_no_data_frames_are_silence_of_their_length() -> None:
    # CMR 15, ToC: NO_DATA (F=1), SID (F=0, Q=1); then the SID's 39 bits.
    payload = bytes([0xF0, 0x80 | (15 << 3) | 0x04, (8 << 3) | 0x04]) + bytes(5)
    frames = formats.amr_frames(payload, formats.AMR_NB, octet_aligned=True)
    assert [(f.frame_type, f.storage) for f in frames] == [(15, None), (8, None)]
    pcm = ffmpeg.new_decoder("amrnb", 8000, {"octet-align": "1"}).decode(payload)
    assert len(pcm) == 320 and not pcm.any()


def test_gsm_and_ilbc_payloads_must_be_whole_frames() -> None:
    with pytest.raises(formats.PayloadError):
        formats.gsm_frames(bytes([0xD0]) + bytes(31))
    with pytest.raises(formats.PayloadError):
        formats.gsm_frames(bytes(33))  # no 0xD signature
    assert formats.ilbc_frames(bytes(100), 30) == 30
    assert formats.ilbc_frames(bytes(76), 30) == 20  # the sender used 20 ms frames
    with pytest.raises(formats.PayloadError):
        formats.ilbc_frames(bytes(40), 20)


def test_ilbc_decodes_both_modes_and_follows_a_sender_that_changes() -> None:
    decoder = ffmpeg.new_decoder("ilbc", 8000, {"mode": "30"})
    assert len(decoder.decode(bytes(50))) == 240
    assert len(decoder.decode(bytes(76))) == 320  # two 20 ms frames
