"""Packets for ``rtp_sender --replay``: the sender's own RTP stream, SRTP-protected here.

The C sender cannot encrypt, so for an SRTP run every packet is prepared in advance: the
same RTP the sender builds itself (PCMU, sequence = tick, timestamp = 160 x tick, SSRC
0x10000000 + stream index, the 1 kHz tone), protected with the key the benchmark offered
for that m-line (RFC 4568 §6.1: the offerer's key is the one its media is sent with), and
written in the layout rtp_sender.c documents: "SRSRPLY1", streams, ticks, slot bytes
(uint32 little-endian each), then per tick one slot per stream, a uint16 length and the
packet.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence
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


def tone_payloads() -> list[bytes]:
    """The sender's 8 packets of 8000 x sin(2 pi 1000 t): whole periods, repeated."""
    samples = np.round(8000 * np.sin(2 * math.pi * 1000 * np.arange(8 * PAYLOAD) / 8000))
    coded = pcmu_encode(samples.astype(np.int16))
    return [coded[i * PAYLOAD:(i + 1) * PAYLOAD] for i in range(8)]


def rtp(tick: int, stream: int, payload: bytes) -> bytes:
    """RFC 3550 §5.1 header: V=2, PT 0, no marker."""
    return struct.pack("!BBHII", 0x80, 0, tick & 0xFFFF, (PAYLOAD * tick) & 0xFFFFFFFF,
                       SSRC_BASE + stream) + payload


def write_replay(path: Path, keys: Sequence[bytes | None], ticks: int,
                 suite: str = SUITE) -> int:
    """Write ``ticks`` packets per stream, stream i protected with ``keys[i]``; a stream
    whose key is None gets plain RTP padded with a zero tag of the suite's length, the same
    size on the wire (for the floor receiver, which only counts).  Returns the file size."""
    profile = SUITES[suite]
    tag = profile.srtp_auth_tag_bytes
    slot = 2 + 12 + PAYLOAD + tag
    sessions = [None if key is None else pylibsrtp.Session(pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.profile))
        for key in keys]
    payloads = tone_payloads()
    padding = bytes(tag)
    with path.open("wb") as out:
        out.write(MAGIC + struct.pack("<III", len(keys), ticks, slot))
        for tick in range(ticks):
            chunk = bytearray()
            payload = payloads[tick % 8]
            for stream, session in enumerate(sessions):
                packet = rtp(tick, stream, payload)
                packet = packet + padding if session is None else session.protect(packet)
                chunk += struct.pack("<H", len(packet)) + packet.ljust(slot - 2, b"\0")
            out.write(chunk)
        return out.tell()
