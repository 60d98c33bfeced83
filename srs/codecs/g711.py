"""G.711 PCMU (mu-law) and PCMA (A-law) to and from 16-bit linear PCM (ITU-T G.711).

Decoding is a 256-entry table lookup applied to a whole batch of payload bytes at once;
encoding is a 65536-entry table indexed by the int16 sample's bit pattern.  Both sets of
tables are built once at import from the segment/quantisation rules of G.711 and are
read-only.  The outputs are bit-exact with the classic 16-bit G.711 conversion (the one
Python's former ``audioop`` module implements), which the tests check for every code.

RTP payload formats: RFC 3551 §4.5.14 (PCMU, static PT 0; PCMA, static PT 8), one octet
per sample at 8000 Hz.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "PCMU_DECODE_TABLE",
    "PCMA_DECODE_TABLE",
    "pcmu_decode",
    "pcma_decode",
    "pcmu_encode",
    "pcma_encode",
]

# G.711 segment boundaries of the magnitude, top of each of the 8 segments.
_MU_SEGMENT_TOPS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], np.int32)
_A_SEGMENT_TOPS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], np.int32)
_MU_BIAS = 0x84  # 132: mu-law bias in the 16-bit domain (33 in the 14-bit domain)
_MU_CLIP_14BIT = 8159  # largest 14-bit magnitude before the bias
_A_EVEN_BITS = 0x55  # G.711 A-law inverts every even bit on the line


def _build_pcmu_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0xFF  # mu-law is sent with every bit inverted
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _MU_BIAS) << exponent) - _MU_BIAS
    table = np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)
    table.flags.writeable = False
    return table


def _build_pcma_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ _A_EVEN_BITS
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    # Segment 0 and 1 share a step size; each later segment doubles it.  The decoded value
    # is the middle of the quantisation interval (hence the +8 / +0x108 half steps).
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    table = np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)  # sign bit 1: +
    table.flags.writeable = False
    return table


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the encode tables' index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_pcmu_encode() -> npt.NDArray[np.uint8]:
    value = _all_int16() >> 2  # mu-law works on 14 bits; the shift floors negatives
    negative = value < 0
    magnitude = np.minimum(np.where(negative, -value, value), _MU_CLIP_14BIT) + (_MU_BIAS >> 2)
    segment = np.searchsorted(_MU_SEGMENT_TOPS, magnitude, side="left").astype(np.int32)
    mantissa = (magnitude >> np.minimum(segment + 1, 8)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    code ^= np.where(negative, 0x7F, 0xFF)
    table = code.astype(np.uint8)
    table.flags.writeable = False
    return table


def _build_pcma_encode() -> npt.NDArray[np.uint8]:
    value = _all_int16() >> 3  # A-law works on 13 bits; the shift floors negatives
    negative = value < 0
    magnitude = np.where(negative, -value - 1, value)
    segment = np.searchsorted(_A_SEGMENT_TOPS, magnitude, side="left").astype(np.int32)
    shift = np.where(segment < 2, 1, np.minimum(segment, 8))
    mantissa = (magnitude >> shift) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    code ^= np.where(negative, _A_EVEN_BITS, 0x80 | _A_EVEN_BITS)
    table = code.astype(np.uint8)
    table.flags.writeable = False
    return table


PCMU_DECODE_TABLE = _build_pcmu_decode()
PCMA_DECODE_TABLE = _build_pcma_decode()
_PCMU_ENCODE_TABLE = _build_pcmu_encode()
_PCMA_ENCODE_TABLE = _build_pcma_encode()


def pcmu_decode(payload: bytes) -> npt.NDArray[np.int16]:
    """mu-law octets -> int16 samples, one per octet."""
    # ndarray.take: half the time of indexing with the array (bench/bench_codecs.py).
    return PCMU_DECODE_TABLE.take(np.frombuffer(payload, dtype=np.uint8))


def pcma_decode(payload: bytes) -> npt.NDArray[np.int16]:
    """A-law octets -> int16 samples, one per octet."""
    return PCMA_DECODE_TABLE.take(np.frombuffer(payload, dtype=np.uint8))


def _as_int16_bits(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        array = array.astype(np.int16, casting="same_kind")
    return np.ascontiguousarray(array).reshape(-1).view(np.uint16)


def pcmu_encode(samples: npt.ArrayLike) -> bytes:
    """int16 samples -> mu-law octets."""
    return _PCMU_ENCODE_TABLE[_as_int16_bits(samples)].tobytes()


def pcma_encode(samples: npt.ArrayLike) -> bytes:
    """int16 samples -> A-law octets."""
    return _PCMA_ENCODE_TABLE[_as_int16_bits(samples)].tobytes()
