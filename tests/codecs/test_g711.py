"""G.711 against an independent reference: Python 3.11's stdlib ``audioop``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.codecs import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop: deprecated, present in 3.11
    import audioop

ALL_CODES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_pcmu_decode_every_code_matches_audioop() -> None:
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.pcmu_decode(ALL_CODES), expected)


def test_pcma_decode_every_code_matches_audioop() -> None:
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.pcma_decode(ALL_CODES), expected)


def test_pcmu_encode_every_sample_matches_audioop() -> None:
    assert g711.pcmu_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


def test_pcma_encode_every_sample_matches_audioop() -> None:
    assert g711.pcma_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


@pytest.mark.parametrize(
    ("decode", "code", "value"),
    [
        # G.711 anchor points: silence codes and the extremes.
        (g711.pcmu_decode, 0xFF, 0),
        (g711.pcmu_decode, 0x7F, 0),
        (g711.pcmu_decode, 0x00, -32124),
        (g711.pcmu_decode, 0x80, 32124),
        (g711.pcma_decode, 0xD5, 8),
        (g711.pcma_decode, 0x55, -8),
        (g711.pcma_decode, 0xAA, 32256),
        (g711.pcma_decode, 0x2A, -32256),
    ],
)
def test_golden_codes(decode: object, code: int, value: int) -> None:
    assert decode(bytes([code])).tolist() == [value]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.pcmu_encode, g711.pcmu_decode), (g711.pcma_encode, g711.pcma_decode)],
)
def test_decode_then_encode_is_identity_on_codes(encode: object, decode: object) -> None:
    # Every code decodes to a value that encodes back to itself, except mu-law's
    # negative zero (0x7F), which encodes as positive zero (0xFF).
    round_trip = encode(decode(ALL_CODES))  # type: ignore[operator]
    differing = [code for code in range(256) if round_trip[code] != code]
    assert differing == ([0x7F] if encode is g711.pcmu_encode else [])


@settings(max_examples=300)
@given(st.lists(st.integers(-32768, 32767), max_size=64))
def test_encode_decode_error_is_within_a_quantisation_step(samples: list[int]) -> None:
    array = np.array(samples, dtype=np.int16)
    for encode, decode, clip in (
        (g711.pcmu_encode, g711.pcmu_decode, 32124),
        (g711.pcma_encode, g711.pcma_decode, 32256),
    ):
        decoded = decode(encode(array)).astype(np.int32)
        original = np.clip(array.astype(np.int32), -clip, clip)
        # The step at magnitude m is at most m/16 + 16 (both laws); the error is under it.
        assert np.all(np.abs(decoded - original) <= np.abs(original) // 16 + 16)


def test_decode_is_a_batch_operation_returning_int16() -> None:
    out = g711.pcmu_decode(b"\xff" * 8000)
    assert out.dtype == np.int16 and out.shape == (8000,)
    assert g711.pcmu_decode(b"").shape == (0,)


def test_encode_accepts_lists_and_wider_ints() -> None:
    assert g711.pcma_encode([0, -1]) == g711.pcma_encode(np.array([0, -1], dtype=np.int64))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        g711.PCMU_DECODE_TABLE[0] = 1
