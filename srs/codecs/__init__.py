"""Audio codecs: which payload formats srs can turn into PCM, and how.

The registry maps an SDP ``a=rtpmap`` encoding name and clock rate (RFC 4566 §6; names
are case-insensitive, RFC 4855 §3) to a :class:`Codec`.  Decoders work on whole batches of
payload bytes (about a second at a time: docs/architecture.md, "Hot path"), never per packet.

Comfort noise (RFC 3389, static PT 13) decodes to no samples at all: the gap it stands for
is filled with silence by whoever lays the audio out (see ``srs.rtp.assembler.PcmAssembler``).
``telephone-event`` (RFC 4733) is not audio and has no entry here (see ``srs.rtp.dtmf``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from srs.codecs import g711

__all__ = [
    "Codec",
    "PCMU",
    "PCMA",
    "COMFORT_NOISE",
    "CODECS",
    "STATIC_PAYLOAD_TYPES",
    "lookup",
    "for_static_payload_type",
]


@dataclass(frozen=True, slots=True)
class Codec:
    """One decodable payload format.

    ``samples_in(payload)`` is how many PCM samples (at ``sample_rate_hz``) a payload
    decodes to, known without decoding, so a batch can be decoded in one call and split.
    ``encode`` is ``None`` for formats srs only ever receives.
    """

    encoding_name: str
    clock_rate_hz: int
    sample_rate_hz: int
    decode: Callable[[bytes], npt.NDArray[np.int16]]
    samples_in: Callable[[bytes], int]
    encode: Callable[[npt.ArrayLike], bytes] | None = None
    static_payload_type: int | None = None


def _decode_comfort_noise(payload: bytes) -> npt.NDArray[np.int16]:
    # RFC 3389 §3: a noise level and spectral shape, no duration: recorded as silence.
    return np.zeros(0, dtype=np.int16)


def _no_samples(payload: bytes) -> int:
    return 0


PCMU = Codec("PCMU", 8000, 8000, g711.pcmu_decode, len, g711.pcmu_encode, 0)
PCMA = Codec("PCMA", 8000, 8000, g711.pcma_decode, len, g711.pcma_encode, 8)
COMFORT_NOISE = Codec("CN", 8000, 8000, _decode_comfort_noise, _no_samples, None, 13)

# (upper-case encoding name, clock rate) -> codec
CODECS: Mapping[tuple[str, int], Codec] = MappingProxyType(
    {(c.encoding_name, c.clock_rate_hz): c for c in (PCMU, PCMA, COMFORT_NOISE)}
)

# RFC 3551 §6 Table 4: static audio payload types -> (encoding name, clock rate).  Listed
# whether or not srs decodes them, so an SDP without a=rtpmap can still be named.
STATIC_PAYLOAD_TYPES: Mapping[int, tuple[str, int]] = MappingProxyType(
    {
        0: ("PCMU", 8000),
        3: ("GSM", 8000),
        4: ("G723", 8000),
        5: ("DVI4", 8000),
        6: ("DVI4", 16000),
        7: ("LPC", 8000),
        8: ("PCMA", 8000),
        9: ("G722", 8000),
        10: ("L16", 44100),
        11: ("L16", 44100),
        12: ("QCELP", 8000),
        13: ("CN", 8000),
        14: ("MPA", 90000),
        15: ("G728", 8000),
        16: ("DVI4", 11025),
        17: ("DVI4", 22050),
        18: ("G729", 8000),
    }
)


def lookup(encoding_name: str, clock_rate_hz: int) -> Codec | None:
    """The codec for an ``a=rtpmap`` name and rate, or ``None`` if srs cannot decode it."""
    return CODECS.get((encoding_name.upper(), clock_rate_hz))


def for_static_payload_type(payload_type: int) -> Codec | None:
    """The codec for a static payload type used without ``a=rtpmap`` (RFC 3551 §6)."""
    known = STATIC_PAYLOAD_TYPES.get(payload_type)
    return None if known is None else lookup(*known)
