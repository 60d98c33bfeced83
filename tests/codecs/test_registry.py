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
    assert codecs.lookup("opus", 48000) is None
    assert codecs.lookup("telephone-event", 8000) is None


def test_static_payload_types() -> None:
    assert codecs.for_static_payload_type(0) is codecs.PCMU
    assert codecs.for_static_payload_type(8) is codecs.PCMA
    assert codecs.for_static_payload_type(13) is codecs.COMFORT_NOISE
    assert codecs.for_static_payload_type(18) is None  # G.729: named, not decoded
    assert codecs.STATIC_PAYLOAD_TYPES[18] == ("G729", 8000)
    assert codecs.for_static_payload_type(96) is None


def test_g711_counts_one_sample_per_octet() -> None:
    assert codecs.PCMU.samples_in(b"\xff" * 160) == 160
    assert codecs.PCMU.decode(b"\xff" * 160).tolist() == [0] * 160


def test_comfort_noise_is_silence_of_no_length() -> None:
    """RFC 3389: the level octet carries no duration; the gap is filled as silence."""
    assert codecs.COMFORT_NOISE.samples_in(b"\x40") == 0
    decoded = codecs.COMFORT_NOISE.decode(b"\x40\x01\x02")
    assert decoded.dtype == np.int16 and decoded.shape == (0,)
