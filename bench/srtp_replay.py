"""Packets for ``rtp_sender --replay``: RTP streams prepared in advance, SRTP-protected here.

The C sender cannot encrypt, and builds only PCMU packets itself, so for an SRTP run or a
codec other than PCMU every packet is prepared in advance: by default the same RTP the
sender builds itself (PCMU, sequence = tick, timestamp = 160 x tick, SSRC 0x10000000 +
stream index, the 1 kHz tone), or the payloads of a :class:`Media` (another codec's
encoding of the tone, its payload type and timestamp step), protected with the key the
benchmark offered for that m-line (RFC 4568 §6.1: the offerer's key is the one its media
is sent with) or left plain, and written in the layout rtp_sender.c documents:
"SRSRPLY1", streams, ticks, slot bytes (uint32 little-endian each), then per tick one slot
per stream, a uint16 length and the packet.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylibsrtp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srs.codecs.g711 import pcmu_encode  # noqa: E402
from srs.rtp.srtp import SUITES  # noqa: E402

MAGIC = b"SRSRPLY1"
PAYLOAD = 160
SSRC_BASE = 0x10000000
SUITE = "AES_CM_128_HMAC_SHA1_80"


@dataclass(frozen=True)
class Media:
    """What every stream sends: tick t carries ``payloads[t % len(payloads)]`` with
    timestamp ``step * t`` (RTP clock units per 20 ms packet) and ``payload_type``."""

    payload_type: int
    step: int
    payloads: tuple[bytes, ...]


def tone_payloads() -> list[bytes]:
    """The sender's 8 packets of 8000 x sin(2 pi 1000 t): whole periods, repeated."""
    samples = np.round(8000 * np.sin(2 * math.pi * 1000 * np.arange(8 * PAYLOAD) / 8000))
    coded = pcmu_encode(samples.astype(np.int16))
    return [coded[i * PAYLOAD:(i + 1) * PAYLOAD] for i in range(8)]


def pcmu_media() -> Media:
    """The sender's own stream (PT 0, 160 samples a packet)."""
    return Media(0, PAYLOAD, tuple(tone_payloads()))


def rtp(tick: int, stream: int, payload: bytes, payload_type: int = 0,
        step: int = PAYLOAD) -> bytes:
    """RFC 3550 §5.1 header: V=2, no marker."""
    return struct.pack("!BBHII", 0x80, payload_type, tick & 0xFFFF, (step * tick) & 0xFFFFFFFF,
                       SSRC_BASE + stream) + payload


def write_replay(path: Path, keys: Sequence[bytes | None], ticks: int,
                 suite: str | None = SUITE, media: Media | None = None) -> int:
    """Write ``ticks`` packets per stream of ``media`` (default: the sender's PCMU),
    stream i protected with ``keys[i]`` under ``suite``; a stream whose key is None gets
    plain RTP padded with a zero tag of the suite's length, the same size on the wire (for
    the floor receiver, which only counts).  With ``suite`` None every stream is plain RTP,
    unpadded (every key must be None).  Returns the file size."""
    media = media or pcmu_media()
    if suite is None and any(key is not None for key in keys):
        raise ValueError("keys given for plain RTP")
    profile = SUITES[suite] if suite is not None else None
    tag = profile.srtp_auth_tag_bytes if profile is not None else 0
    slot = 2 + 12 + max(len(p) for p in media.payloads) + tag
    sessions = [None if key is None or profile is None else pylibsrtp.Session(pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.profile))
        for key in keys]
    padding = bytes(tag)
    with path.open("wb") as out:
        out.write(MAGIC + struct.pack("<III", len(keys), ticks, slot))
        for tick in range(ticks):
            chunk = bytearray()
            payload = media.payloads[tick % len(media.payloads)]
            for stream, session in enumerate(sessions):
                packet = rtp(tick, stream, payload, media.payload_type, media.step)
                packet = packet + padding if session is None else session.protect(packet)
                chunk += struct.pack("<H", len(packet)) + packet.ljust(slot - 2, b"\0")
            out.write(chunk)
        return out.tell()
