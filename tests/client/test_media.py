"""Audio preparation and RTP/SRTP packets of srs.client.media (pure; no sockets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.client.encode import SEND_CODECS, EncodedTrack
from srs.client.media import RtpStream, read_track, resample, tone
from srs.codecs.g711 import pcma_decode, pcma_encode, pcmu_decode, pcmu_encode
from srs.errors import UsageError
from srs.rtp.packet import RtpPacket
from srs.rtp.srtp import SUITES, SrtpReceiver
from tests.e2e.audio import dominant_frequency


def sine(freq_hz: float, rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    n = np.arange(int(rate_hz * seconds))
    return 10000 * np.sin(2 * np.pi * freq_hz * n / rate_hz)


def rms_db(x: np.ndarray) -> float:
    middle = x[200:-200]
    return float(20 * np.log10(np.sqrt((middle ** 2).mean()) / (10000 / np.sqrt(2))))


@pytest.mark.parametrize("rate_hz", [11025, 16000, 44100, 48000])
def test_resample_keeps_the_voice_band_and_removes_what_would_alias(rate_hz: int) -> None:
    kept = resample(sine(1000, rate_hz), rate_hz)
    assert len(kept) == 8000
    assert dominant_frequency(kept, 8000) == pytest.approx(1000, abs=2)
    assert abs(rms_db(kept)) < 0.05
    if rate_hz > 10000:
        # 5 kHz would fold to 3 kHz at 8 kHz: it must be gone instead.
        assert rms_db(resample(sine(5000, rate_hz), rate_hz)) < -70


@pytest.mark.parametrize("rate_hz", [16000, 48000])
def test_resample_up_keeps_the_tone_and_adds_nothing_above_it(rate_hz: int) -> None:
    up = resample(sine(1000, 8000), 8000, rate_hz)
    assert len(up) == rate_hz
    assert dominant_frequency(up, rate_hz) == pytest.approx(1000, abs=2)
    assert abs(rms_db(up)) < 0.05
    spectrum = np.abs(np.fft.rfft(up[1000:-1000]))
    freqs = np.fft.rfftfreq(len(up) - 2000, 1 / rate_hz)
    # No image of the tone at 8000 - 1000 Hz or above: the band above 4 kHz is empty.
    assert spectrum[freqs > 4500].max() < spectrum.max() * 1e-3


def test_read_track_mixes_channels_to_8k(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = sine(700, 44100, 0.5), sine(700, 44100, 0.5)
    sf.write(path, np.stack([left, right], axis=1).astype(np.int16), 44100, subtype="PCM_16")
    track = read_track(path)
    assert track.dtype == np.int16 and len(track) == 4000
    assert dominant_frequency(track, 8000) == pytest.approx(700, abs=3)
    at_16k = read_track(path, 16000)
    assert len(at_16k) == 8000 and dominant_frequency(at_16k, 16000) == pytest.approx(700, abs=3)
    with pytest.raises(UsageError, match="cannot read"):
        read_track(tmp_path / "missing.wav")


def test_encoded_track_pads_with_silence_or_loops() -> None:
    track = EncodedTrack((b"a", b"b", b"c"), b"-")
    assert [track.at(i, loop=False) for i in range(5)] == [b"a", b"b", b"c", b"-", b"-"]
    assert [track.at(i, loop=True) for i in range(5)] == [b"a", b"b", b"c", b"a", b"b"]
    assert EncodedTrack((), b"-").at(3, loop=True) == b"-"


@pytest.mark.parametrize(
    ("codec", "pt", "decode"), [("PCMU", 0, pcmu_decode), ("PCMA", 8, pcma_decode)]
)
def test_rtp_stream_numbers_packets_and_encodes_the_law(codec: str, pt: int, decode) -> None:
    stream = RtpStream(SEND_CODECS[codec])
    audio = tone(440, 0.06)
    encode = {"PCMU": pcmu_encode, "PCMA": pcma_encode}[codec]
    first = RtpPacket.parse(stream.next_packet(encode(audio[:160])))
    stream.skip(2)  # 40 ms on hold
    second = RtpPacket.parse(stream.next_packet(encode(audio[160:320])))
    assert first.payload_type == pt and first.marker and second.marker
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 3 * 160) & 0xFFFFFFFF
    assert first.ssrc == second.ssrc and stream.packets == 2
    decoded = decode(np.frombuffer(first.payload, np.uint8))
    assert np.abs(decoded.astype(int) - audio[:160]).max() < 600


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_srtp_stream_is_decrypted_with_the_offered_key(suite: str) -> None:
    key = bytes(range(SUITES[suite].key_salt_bytes))
    stream = RtpStream(SEND_CODECS["PCMU"], srtp=SUITES[suite], key_salt=key)
    protected = stream.next_packet(pcmu_encode(tone(1000, 0.02)))
    assert len(protected) == 12 + 160 + SUITES[suite].srtp_auth_tag_bytes
    plain = RtpPacket.parse(SrtpReceiver(SUITES[suite], key).unprotect(protected))
    assert len(plain.payload) == 160
    with pytest.raises(UsageError, match=r"30-byte key|28-byte key|44-byte key"):
        RtpStream(SEND_CODECS["PCMU"], srtp=SUITES[suite], key_salt=b"short")


def test_the_answers_payload_type_and_the_codecs_clock_step_the_packets() -> None:
    stream = RtpStream(SEND_CODECS["G722"], 101)  # G.722: 8000 Hz clock, 16 kHz audio
    first = RtpPacket.parse(stream.next_packet(bytes(160)))
    second = RtpPacket.parse(stream.next_packet(bytes(160)))
    assert first.payload_type == 101 and second.timestamp - first.timestamp in (160, 160 - 2**32)
    opus = RtpStream(SEND_CODECS["opus"])
    a, b = (RtpPacket.parse(opus.next_packet(b"x")) for _ in range(2))
    assert a.payload_type == 111 and (b.timestamp - a.timestamp) % 2**32 == 960
