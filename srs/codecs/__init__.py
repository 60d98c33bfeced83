"""Audio codecs: which payload formats srs can turn into PCM, and how.

The registry maps an SDP ``a=rtpmap`` encoding name, clock rate and channel count (RFC 4566
§6; names are case-insensitive, RFC 4855 §3) to a :class:`Codec`.

Two kinds of decoder:

- **Stateless** (G.711, L16): ``decode`` works on whole batches of payload bytes (about
  a second at a time: docs/architecture.md, "Hot path"), never per packet.
- **Stateful** (G.722, G.729, GSM, iLBC, AMR, AMR-WB, Opus, Speex): ``ffmpeg`` names the
  FFmpeg decoder; each stream gets its own :class:`~srs.codecs.ffmpeg.FrameDecoder`
  (``new_frame_decoder``), fed one payload at a time in the timeline's order.  Only the
  ones the installed FFmpeg really decodes are offered (:func:`available`).

Comfort noise (RFC 3389, static PT 13) decodes to no samples at all: the gap it stands for
is filled with silence by whoever lays the audio out (see ``srs.rtp.assembler.PcmAssembler``).
``telephone-event`` (RFC 4733) is not audio and has no entry here (see ``srs.rtp.dtmf``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
    "CODEC_NAMES",
    "L16_RATES_HZ",
    "STATIC_PAYLOAD_TYPES",
    "UNSUPPORTED_FMTP",
    "available",
    "fmtp_supported",
    "lookup",
    "for_static_payload_type",
]


@dataclass(frozen=True, slots=True)
class Codec:
    """One decodable payload format at one RTP clock rate.

    ``sample_rate_hz`` is the rate of the audio it decodes to (G.722: 16 kHz under an
    8 kHz RTP clock, RFC 3551 §4.5.2).  A stateless codec has ``decode`` and
    ``samples_in`` (how many samples a payload decodes to, known without decoding, so a
    batch is decoded in one call and split); a stateful one has ``ffmpeg`` instead (with
    ``samples_in`` too when its payloads are whole samples with no framing, G.722: then
    payloads that follow each other are joined into one decoder call), and
    ``fmtp`` holds the m-line's ``a=fmtp`` parameters its decoder needs (RFC 4867
    ``octet-align``, RFC 3952 ``mode``).  ``sample_bytes`` is the size of one sample
    frame in a payload (L16: 2, stereo 4): payloads are cut to whole frames before they are
    joined, so one odd-length payload cannot shift the ones after it.  ``encode`` is
    ``None`` for formats srs only ever receives.
    """

    encoding_name: str
    clock_rate_hz: int
    sample_rate_hz: int
    decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None
    samples_in: Callable[[bytes], int] | None = None
    encode: Callable[[npt.ArrayLike], bytes] | None = None
    static_payload_type: int | None = None
    ffmpeg: str | None = None
    fmtp: tuple[tuple[str, str], ...] = ()
    sample_bytes: int = 1

    def with_fmtp(self, params: Mapping[str, str]) -> Codec:
        """This codec with an m-line's format parameters (lower-case names)."""
        if self.ffmpeg is None or not params:
            return self
        items = tuple(sorted((k.lower(), v.strip()) for k, v in params.items()))
        return Codec(self.encoding_name, self.clock_rate_hz, self.sample_rate_hz,
                     static_payload_type=self.static_payload_type, ffmpeg=self.ffmpeg,
                     fmtp=items)


def _decode_comfort_noise(payload: bytes) -> npt.NDArray[np.int16]:
    # RFC 3389 §3: a noise level and spectral shape, no duration: recorded as silence.
    return np.zeros(0, dtype=np.int16)


def _no_samples(payload: bytes) -> int:
    return 0


def _l16_mono(payload: bytes) -> npt.NDArray[np.int16]:
    # RFC 3551 §4.5.11: signed 16-bit samples in network byte order.
    return np.frombuffer(payload, dtype=">i2", count=len(payload) // 2).astype(np.int16)


def _l16_stereo(payload: bytes) -> npt.NDArray[np.int16]:
    # Interleaved left/right (RFC 3551 §4.1), recorded as one mono track.
    frames = np.frombuffer(payload, dtype=">i2", count=len(payload) // 4 * 2).reshape(-1, 2)
    mono: npt.NDArray[np.int16] = (frames.astype(np.int32).sum(axis=1) // 2).astype(np.int16)
    return mono


def _l16_mono_samples(payload: bytes) -> int:
    return len(payload) // 2


def _l16_stereo_samples(payload: bytes) -> int:
    return len(payload) // 4


PCMU = Codec("PCMU", 8000, 8000, g711.pcmu_decode, len, g711.pcmu_encode, 0)
PCMA = Codec("PCMA", 8000, 8000, g711.pcma_decode, len, g711.pcma_encode, 8)
COMFORT_NOISE = Codec("CN", 8000, 8000, _decode_comfort_noise, _no_samples, None, 13)


def _ffmpeg(name: str, clock: int, rate: int, decoder: str, static: int | None = None,
            samples_in: Callable[[bytes], int] | None = None) -> Codec:
    return Codec(name, clock, rate, samples_in=samples_in, static_payload_type=static,
                 ffmpeg=decoder)


def _g722_samples(payload: bytes) -> int:
    return 2 * len(payload)  # RFC 3551 §4.5.2: 8 bits per two 16 kHz samples


# (upper-case encoding name, clock rate) -> codec, for the fixed-rate formats.
CODECS: Mapping[tuple[str, int], Codec] = MappingProxyType({
    (c.encoding_name.upper(), c.clock_rate_hz): c for c in (
        PCMU, PCMA, COMFORT_NOISE,
        # RFC 3551 §4.5.2: 8 kHz clock, 16 kHz audio; sample by sample, so joinable.
        _ffmpeg("G722", 8000, 16000, "g722", 9, _g722_samples),
        _ffmpeg("G729", 8000, 8000, "g729", 18),  # RFC 3551 §4.5.6
        _ffmpeg("GSM", 8000, 8000, "gsm", 3),  # RFC 3551 §4.5.8
        _ffmpeg("iLBC", 8000, 8000, "ilbc"),  # RFC 3952 §5
        _ffmpeg("AMR", 8000, 8000, "amrnb"),  # RFC 4867 §8.1
        _ffmpeg("AMR-WB", 16000, 16000, "amrwb"),  # RFC 4867 §8.2
        _ffmpeg("opus", 48000, 48000, "opus"),  # RFC 7587 §7: always opus/48000/2
        _ffmpeg("speex", 8000, 8000, "speex"),  # RFC 5574 §5: narrow, wide, ultra-wide
        _ffmpeg("speex", 16000, 16000, "speex"),
        _ffmpeg("speex", 32000, 32000, "speex"),
    )
})

# a=fmtp parameters that, set to anything but 0, select a payload format srs does not
# parse: RFC 4867 §4.4.2.1 frame CRCs, §4.4.1 robust sorting, §4.4.1 interleaving.
UNSUPPORTED_FMTP: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "AMR": ("crc", "robust-sorting", "interleaving"),
    "AMR-WB": ("crc", "robust-sorting", "interleaving"),
})


def fmtp_supported(encoding_name: str, params: Mapping[str, str]) -> bool:
    """Whether srs parses the payload format these ``a=fmtp`` parameters select."""
    refused = UNSUPPORTED_FMTP.get(encoding_name.upper(), ())
    return not any(params.get(name, "0") not in ("0", "") for name in refused)


# The encoding names srs knows, as SDP spells them (``media.codecs`` takes these).
CODEC_NAMES: tuple[str, ...] = ("PCMU", "PCMA", "G722", "G729", "opus", "AMR", "AMR-WB",
                                "iLBC", "GSM", "speex", "L16")

# Rates L16 and CN are taken at (RFC 3551 §4.5.11 leaves L16's rate open; RFC 3389 §5 CN
# follows its codec's clock): every rate offered in practice, and no more, so a hostile
# offer cannot make a file of megasamples per second.
L16_RATES_HZ = (8000, 96000)
_ANY_RATE = range(L16_RATES_HZ[0], L16_RATES_HZ[1] + 1)

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
# RFC 3551 §6: static type 10 is L16 stereo, 11 mono.
_STATIC_CHANNELS = {10: 2}


def available() -> frozenset[str]:
    """The upper-case encoding names srs decodes here: G.711, L16 and CN always, the
    FFmpeg-backed ones when the installed FFmpeg decodes them (checked once per process)."""
    from srs.codecs import ffmpeg  # loads FFmpeg: only where codecs beyond G.711 matter

    found = ffmpeg.decodable()
    names = {"PCMU", "PCMA", "CN", "L16"}
    names.update(c.encoding_name.upper() for c in CODECS.values()
                 if c.ffmpeg is not None and c.ffmpeg in found)
    return frozenset(names)


def lookup(encoding_name: str, clock_rate_hz: int, channels: int | None = None,
           allowed: Iterable[str] | None = None) -> Codec | None:
    """The codec for an ``a=rtpmap`` name, rate and channel count, or ``None`` if srs does
    not decode it (or it is not among ``allowed`` upper-case names, when given).

    Mono only, except Opus (RFC 7587 §7: always ``/2``, decoded to mono) and L16 stereo
    (recorded as the mean of its channels)."""
    name = encoding_name.upper()
    if allowed is not None and name not in allowed and name != "CN":
        return None
    if name == "OPUS":
        if channels not in (None, 1, 2):
            return None
    elif channels not in (None, 1) and not (name == "L16" and channels == 2):
        return None
    codec = CODECS.get((name, clock_rate_hz))
    if codec is None:
        if clock_rate_hz not in _ANY_RATE:
            return None
        if name == "CN":
            return Codec("CN", clock_rate_hz, clock_rate_hz, _decode_comfort_noise,
                         _no_samples)
        if name == "L16":
            if channels == 2:
                return Codec("L16", clock_rate_hz, clock_rate_hz, _l16_stereo,
                             _l16_stereo_samples, sample_bytes=4)
            return Codec("L16", clock_rate_hz, clock_rate_hz, _l16_mono, _l16_mono_samples,
                         sample_bytes=2)
        return None
    if codec.ffmpeg is not None:
        from srs.codecs import ffmpeg  # loads FFmpeg only for an offer that needs it

        if codec.ffmpeg not in ffmpeg.decodable():
            return None
    return codec


def for_static_payload_type(payload_type: int) -> Codec | None:
    """The codec for a static payload type used without ``a=rtpmap`` (RFC 3551 §6)."""
    known = STATIC_PAYLOAD_TYPES.get(payload_type)
    if known is None:
        return None
    return lookup(*known, channels=_STATIC_CHANNELS.get(payload_type))
