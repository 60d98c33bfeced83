"""What ``srs call`` sends for each codec: payload formats, and audio that decodes back.

The payloads are decoded by srs's receive side (FFmpeg's decoders, srs's G.711 tables):
the tone's frequency and length must survive, and each payload must have the shape its
RTP payload format gives it.
"""

from __future__ import annotations

import numpy as np
import pytest

from srs.client.encode import SEND_CODECS, available, encode_track, send_codec
from srs.client.media import tone
from srs.codecs import lookup
from srs.codecs.ffmpeg import new_decoder
from srs.errors import UsageError
from tests.e2e.audio import dominant_frequency


def decode(name: str, payloads: tuple[bytes, ...]) -> np.ndarray:
    codec = SEND_CODECS[name]
    receiving = lookup(codec.name, codec.clock_rate_hz, codec.channels)
    assert receiving is not None, f"srs does not decode {name}"
    if receiving.decode is not None:
        return np.concatenate([receiving.decode(p) for p in payloads])
    params = dict(p.split("=", 1) for p in (codec.fmtp or "").split(";") if p)
    assert receiving.ffmpeg is not None
    decoder = new_decoder(receiving.ffmpeg, receiving.sample_rate_hz, params)
    return np.concatenate([decoder.decode(p) for p in payloads])


@pytest.mark.parametrize("name", available())
def test_a_tone_encodes_to_one_payload_per_20_ms_and_decodes_back(name: str) -> None:
    codec = SEND_CODECS[name]
    rate = codec.sample_rate_hz
    encoded = encode_track(codec, tone(1000, 1.01, rate_hz=rate))  # 50.5 frames: one padded
    assert len(encoded.payloads) == 51
    pcm = decode(name, encoded.payloads)
    assert len(pcm) == 51 * codec.samples_per_packet
    middle = pcm[rate // 10 : rate]  # past the codec's start-up
    assert np.abs(middle).max() > 8000
    assert dominant_frequency(middle, rate) == pytest.approx(1000, abs=5)
    assert np.abs(decode(name, (encoded.silence,) * 5)).max() < 300


def test_payloads_have_their_rtp_formats_shape() -> None:
    sizes = {name: {len(p) for p in encode_track(SEND_CODECS[name], tone(
        440, 0.2, rate_hz=SEND_CODECS[name].sample_rate_hz)).payloads} for name in available()}
    assert sizes["PCMU"] == sizes["PCMA"] == {160}
    assert sizes["L16"] == {640}  # 320 samples of 16 bits (RFC 3551 §4.5.11)
    if "G722" in sizes:
        assert sizes["G722"] == {160}  # 8 bits per 2 samples of 16 kHz audio (§4.5.2)
    if "AMR" in sizes:
        # RFC 4867 §4.4: CMR 15, ToC F=0 FT=7 Q=1, then 244 bits in 31 bytes.
        assert sizes["AMR"] == {33}
        first = encode_track(SEND_CODECS["AMR"], tone(440, 0.02)).payloads[0]
        assert first[0] == 0xF0 and first[1] == 0x3C


def test_an_unknown_codec_names_the_ones_srs_call_sends() -> None:
    with pytest.raises(UsageError, match="srs call sends PCMU, PCMA"):
        send_codec("G729")
    assert send_codec("OPUS").name == "opus"
