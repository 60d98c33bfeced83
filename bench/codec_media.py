"""The capacity benchmark's codecs: what an m-line offers and what the sender sends.

For each codec ``bench/capacity.py --codec`` takes, :data:`CODECS` says how the offer
names it (``a=rtpmap``, with the RTP clock its payload format defines, and the ``a=fmtp``
its payloads need), the rate of the WAV srs should write from it, and how the sender's
1 kHz tone (peak 8000) becomes its RTP payloads: G.711 is the sender's own 8 packets of
whole periods, repeated; every other codec is encoded once per run by the real encoders
of the codec tests (``tests/codecs/encoders.py``: FFmpeg's g722, libgsm, libopus and
libspeex, bcg729, opencore AMR-NB, VisualOn AMR-WB), one 20 ms packet per tick for the
whole sending window, so a stateful decoder sees one continuous stream.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: the encoders live in tests/

from srtp_replay import PAYLOAD, Media, tone_payloads  # noqa: E402

from srs.codecs.g711 import pcma_encode  # noqa: E402

PACKETS_PER_S = 50  # 20 ms a packet, every codec
TONE_HZ = 1000
TONE_PEAK = 8000  # the sender's 8000 x sin(2 pi 1000 t)
DTMF_PAYLOAD_TYPE = 101
DYNAMIC_PAYLOAD_TYPE = 96


@dataclass(frozen=True)
class BenchCodec:
    """One ``--codec`` choice.  ``clock_hz`` is the RTP clock of the rtpmap (G.722: 8000
    for 16 kHz audio, RFC 3551 §4.5.2; Opus: 48000, RFC 7587 §4.1), ``audio_hz`` the rate
    of the tone given to the encoder, ``wav_hz`` the rate of the WAV srs writes (the
    decoder's output, ``recordings.sample_rate`` not set)."""

    name: str  # as --codec and the table spell it
    payload_type: int
    rtpmap: str  # encoding name / clock rate [/ channels]
    clock_hz: int
    audio_hz: int
    wav_hz: int
    fmtp: str | None = None
    encoder: str | None = None  # tests/codecs/encoders.py name; None: G.711, made here
    options: tuple[tuple[str, Any], ...] = ()  # the encoder's keyword arguments
    noise: float = 0.0  # standard deviation of white noise added to the tone

    @property
    def step(self) -> int:
        """RTP timestamp units per 20 ms packet."""
        return self.clock_hz // PACKETS_PER_S

    @property
    def g711(self) -> bool:
        """The sender's tone through G.711 puts exactly 120 samples above 1000 into a WAV
        per packet (2 of every 8 samples are zero), so the tone is countable exactly."""
        return self.encoder is None

    def formats(self) -> list[str]:
        """The m-line's attribute values: this codec, then telephone-event on its clock."""
        pt, dtmf = self.payload_type, DTMF_PAYLOAD_TYPE
        return [f"rtpmap:{pt} {self.rtpmap}",
                *([f"fmtp:{pt} {self.fmtp}"] if self.fmtp else []),
                f"rtpmap:{dtmf} telephone-event/{self.clock_hz}", f"fmtp:{dtmf} 0-15"]

    def payload_types(self) -> str:
        """The m-line's format list."""
        return f"{self.payload_type} {DTMF_PAYLOAD_TYPE}"


_DYN = DYNAMIC_PAYLOAD_TYPE
CODECS: Mapping[str, BenchCodec] = MappingProxyType({c.name.lower(): c for c in (
    BenchCodec("PCMU", 0, "PCMU/8000", 8000, 8000, 8000),
    BenchCodec("PCMA", 8, "PCMA/8000", 8000, 8000, 8000),
    BenchCodec("G722", 9, "G722/8000", 8000, 16000, 16000, encoder="G722"),
    BenchCodec("G729", 18, "G729/8000", 8000, 8000, 8000, "annexb=no", "G729",
               (("annexb", False),)),
    BenchCodec("GSM", 3, "GSM/8000", 8000, 8000, 8000, encoder="GSM"),
    # libopus's default for 48 kHz mono is 96 kbit/s; at 20 kbit/s (about 21 on this tone)
    # it codes a voice call's way, in SILK; from 24 kbit/s it takes 50-100 kbit/s for the tone.
    BenchCodec("opus", _DYN, "opus/48000/2", 48000, 48000, 48000, encoder="opus",
               options=(("bitrate", 20000),)),
    BenchCodec("AMR", _DYN, "AMR/8000", 8000, 8000, 8000, "octet-align=1", "AMR",
               (("octet_align", True),)),
    BenchCodec("AMR-WB", _DYN, "AMR-WB/16000", 16000, 16000, 16000, "octet-align=1", "AMR-WB",
               (("octet_align", True),)),
    # libspeex's own encoder and decoder (the ffmpeg CLI round trip, srs not involved)
    # diverge on a pure 1 kHz tone after 2-3 s, to a full-scale signal; a little noise
    # (-30 dB) keeps them on the tone.
    BenchCodec("speex", _DYN, "speex/8000", 8000, 8000, 8000, encoder="speex", noise=250.0),
    BenchCodec("L16", _DYN, "L16/16000", 16000, 16000, 16000, encoder="L16"),
)})


def parse(names: str) -> list[BenchCodec]:
    """``--codec`` (comma-separated, any case); ValueError naming what is unknown."""
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if name.lower() not in CODECS:
            raise ValueError(f"unknown codec {name!r}: one of "
                             f"{', '.join(c.name for c in CODECS.values())}")
        chosen.append(CODECS[name.lower()])
    return chosen


def unavailable(codec: BenchCodec) -> str | None:
    """Why this codec's encoder cannot run here, or None."""
    if codec.encoder is None:
        return None
    from tests.codecs.encoders import available

    return available(codec.encoder, **dict(codec.options))


@functools.cache
def media(codec: BenchCodec, ticks: int) -> Media:
    """The tone as ``ticks`` packets of ``codec`` (G.711: 8 packets, repeated)."""
    if codec.encoder is None:
        if codec.name == "PCMU":
            return Media(0, PAYLOAD, tuple(tone_payloads()))
        samples = np.round(TONE_PEAK * np.sin(2 * math.pi * TONE_HZ * np.arange(8 * PAYLOAD)
                                              / 8000)).astype(np.int16)
        law = pcma_encode(samples)
        return Media(codec.payload_type, PAYLOAD,
                     tuple(law[i * PAYLOAD:(i + 1) * PAYLOAD] for i in range(8)))
    from tests.codecs.encoders import encode, tone

    # A little more than the window: an encoder's first or last packet may be cut.
    seconds = ticks / PACKETS_PER_S + 0.2
    pcm = tone([TONE_HZ], seconds, codec.audio_hz, amplitude=TONE_PEAK / 32767)
    if codec.noise:
        noise = np.random.default_rng(1).normal(0.0, codec.noise, pcm.size)
        pcm = np.clip(np.round(pcm + noise), -32768, 32767).astype(np.int16)
    audio = encode(codec.encoder, pcm, codec.audio_hz, **dict(codec.options))
    if audio.clock_rate_hz != codec.clock_hz or len(audio.payloads) < ticks:
        raise RuntimeError(f"{codec.name}: the encoder gave {len(audio.payloads)} payloads "
                           f"at {audio.clock_rate_hz} Hz, {ticks} at {codec.clock_hz} wanted")
    if audio.timestamps[:ticks] != [codec.step * t for t in range(ticks)]:
        raise RuntimeError(f"{codec.name}: the encoder's packets are not 20 ms apart")
    return Media(codec.payload_type, codec.step, tuple(audio.payloads[:ticks]))


def answered_format(sdp: str) -> list[str]:
    """The first format of each m-line of an answer: the payload type srs will record."""
    return [line.split()[3] if len(line.split()) > 3 else ""
            for line in sdp.splitlines() if line.startswith("m=")]
