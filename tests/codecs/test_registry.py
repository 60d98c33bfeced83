"""The codec registry: names and rates from SDP to decoders."""

from __future__ import annotations

import numpy as np

from srs import codecs


def test_lookup_by_rtpmap_name_is_case_insensitive() -> None:
    assert codecs.lookup("pcmu", 8000) is codecs.PCMU
    assert codecs.lookup("PCMA", 8000) is codecs.PCMA
    assert codecs.lookup("cn", 8000) is codecs.COMFORT_NOISE


def test_lookup_unknown_or_wrong_rate() -> None:
    assert codecs.lookup("PCMU", 16000) is None
    assert codecs.lookup("G722", 16000) is None  # RFC 3551 §4.5.2: its clock is 8000
    assert codecs.lookup("opus", 48000, channels=6) is None
    assert codecs.lookup("PCMU", 8000, channels=2) is None
    assert codecs.lookup("telephone-event", 8000) is None
    assert codecs.lookup("G723", 8000) is None
    assert codecs.lookup("L16", 7000) is None


def test_ffmpeg_codecs_name_their_rates() -> None:
    """RFC 3551 §4.5.2: G.722 is clocked at 8000 but is 16 kHz audio; Opus is always
    opus/48000/2 (RFC 7587 §7)."""
    g722 = codecs.lookup("g722", 8000)
    assert g722 is not None and (g722.sample_rate_hz, g722.ffmpeg) == (16000, "g722")
    opus = codecs.lookup("OPUS", 48000, channels=2)
    assert opus is not None and opus.sample_rate_hz == 48000
    wideband = codecs.lookup("AMR-WB", 16000)
    assert wideband is not None and wideband.sample_rate_hz == 16000
    assert {"G722", "G729", "OPUS", "AMR", "AMR-WB", "ILBC", "GSM", "SPEEX"} <= codecs.available()


def test_allowed_names_limit_the_lookup_but_not_comfort_noise() -> None:
    assert codecs.lookup("G729", 8000, allowed={"PCMU"}) is None
    assert codecs.lookup("PCMU", 8000, allowed={"PCMU"}) is codecs.PCMU
    assert codecs.lookup("CN", 8000, allowed={"PCMU"}) is codecs.COMFORT_NOISE


def test_fmtp_binds_to_stateful_codecs_only() -> None:
    amr = codecs.lookup("AMR", 8000)
    assert amr is not None
    bound = amr.with_fmtp({"Octet-Align": " 1", "mode-set": "7"})
    assert bound.fmtp == (("mode-set", "7"), ("octet-align", "1")) and bound != amr
    assert codecs.PCMU.with_fmtp({"x": "1"}) is codecs.PCMU


def test_l16_is_big_endian_at_any_rate_and_stereo_is_averaged() -> None:
    """RFC 3551 §4.5.11: network byte order; static PT 10 is two channels (§6)."""
    mono = codecs.lookup("L16", 16000)
    assert mono is not None and mono.decode is not None and mono.samples_in is not None
    assert mono.decode(b"\x01\x02\xff\xfe\x7f").tolist() == [0x0102, -2]
    assert mono.samples_in(b"\x00" * 7) == 3
    stereo = codecs.for_static_payload_type(10)
    assert stereo is not None and stereo.decode is not None and stereo.clock_rate_hz == 44100
    assert stereo.decode(b"\x00\x10\x00\x30" * 2).tolist() == [0x20, 0x20]


def test_static_payload_types() -> None:
    assert codecs.for_static_payload_type(0) is codecs.PCMU
    assert codecs.for_static_payload_type(8) is codecs.PCMA
    assert codecs.for_static_payload_type(13) is codecs.COMFORT_NOISE
    g729 = codecs.for_static_payload_type(18)
    assert g729 is not None and g729.ffmpeg == "g729"
    assert codecs.for_static_payload_type(4) is None  # G.723: named, not decoded
    assert codecs.STATIC_PAYLOAD_TYPES[18] == ("G729", 8000)
    assert codecs.for_static_payload_type(96) is None


def test_g711_counts_one_sample_per_octet() -> None:
    assert codecs.PCMU.samples_in is not None and codecs.PCMU.decode is not None
    assert codecs.PCMU.samples_in(b"\xff" * 160) == 160
    assert codecs.PCMU.decode(b"\xff" * 160).tolist() == [0] * 160


def test_comfort_noise_is_silence_of_no_length() -> None:
    """RFC 3389: the level octet carries no duration; the gap is filled as silence."""
    assert codecs.COMFORT_NOISE.samples_in is not None
    assert codecs.COMFORT_NOISE.decode is not None
    assert codecs.COMFORT_NOISE.samples_in(b"\x40") == 0
    decoded = codecs.COMFORT_NOISE.decode(b"\x40\x01\x02")
    assert decoded.dtype == np.int16 and decoded.shape == (0,)
