"""Audio preparation and RTP/SRTP packets of srs.client.media (pure; no sockets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.client.media import FRAME_SAMPLES, RtpStream, frame, read_track, resample, tone
from srs.codecs.g711 import pcma_decode, pcmu_decode
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


def test_read_track_mixes_channels_to_8k(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = sine(700, 44100, 0.5), sine(700, 44100, 0.5)
    sf.write(path, np.stack([left, right], axis=1).astype(np.int16), 44100, subtype="PCM_16")
    track = read_track(path)
    assert track.dtype == np.int16 and len(track) == 4000
    assert dominant_frequency(track, 8000) == pytest.approx(700, abs=3)
    with pytest.raises(UsageError, match="cannot read"):
        read_track(tmp_path / "missing.wav")


def test_frames_pad_or_loop() -> None:
    track = np.arange(200, dtype=np.int16)
    assert list(frame(track, 1, loop=False)[:40]) == list(range(160, 200))
    assert not frame(track, 1, loop=False)[40:].any()
    assert list(frame(track, 1, loop=True)[40:45]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("codec", "pt", "decode"), [("PCMU", 0, pcmu_decode), ("PCMA", 8, pcma_decode)]
)
def test_rtp_stream_numbers_packets_and_encodes_the_law(codec: str, pt: int, decode) -> None:
    stream = RtpStream(codec, pt)
    audio = tone(440, 0.06)
    first = RtpPacket.parse(stream.next_packet(audio[:160]))
    stream.skip(2)  # 40 ms on hold
    second = RtpPacket.parse(stream.next_packet(audio[160:320]))
    assert first.payload_type == pt and first.marker and second.marker
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 3 * FRAME_SAMPLES) & 0xFFFFFFFF
    assert first.ssrc == second.ssrc and stream.packets == 2
    decoded = decode(np.frombuffer(first.payload, np.uint8))
    assert np.abs(decoded.astype(int) - audio[:160]).max() < 600


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_srtp_stream_is_decrypted_with_the_offered_key(suite: str) -> None:
    key = bytes(range(SUITES[suite].key_salt_bytes))
    stream = RtpStream("PCMU", 0, srtp=SUITES[suite], key_salt=key)
    audio = tone(1000, 0.02)
    protected = stream.next_packet(audio)
    assert len(protected) == 12 + 160 + SUITES[suite].srtp_auth_tag_bytes
    plain = RtpPacket.parse(SrtpReceiver(SUITES[suite], key).unprotect(protected))
    assert len(plain.payload) == 160
    with pytest.raises(UsageError, match=r"30-byte key|28-byte key|44-byte key"):
        RtpStream("PCMU", 0, srtp=SUITES[suite], key_salt=b"short")
