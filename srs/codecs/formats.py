"""RTP payload formats of the frame-based codecs: one payload split into codec frames.

Pure functions over bytes from the network: every size is checked against the payload
before it is read, and the work per payload is bounded by its length.  A payload that
breaks its format raises :class:`PayloadError`; the caller drops the packet and counts it.

- G.729 (RFC 3551 §4.5.6): 10-byte frames of 10 ms back to back, then at most one 2-byte
  Annex B SID frame (comfort noise: recorded as silence).
- GSM 06.10 (RFC 3551 §4.5.8): 33-byte frames of 20 ms, each starting with the 0xD nibble.
- iLBC (RFC 3952 §3.2): 38-byte frames of 20 ms or 50-byte frames of 30 ms, by ``mode``.
- AMR and AMR-WB (RFC 4867 §4): a codec mode request, a table of contents with one entry
  per frame, then the frames; bandwidth-efficient (§4.3, bit-packed) or octet-aligned
  (§4.4).  Frames come out in the RFC 4867 §5.3 storage format (a header byte, then the
  speech bits padded to a byte), which is what decoders take.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AMR_NB",
    "AMR_WB",
    "AmrFrame",
    "AmrKind",
    "G729_FRAME_BYTES",
    "GSM_FRAME_BYTES",
    "ILBC_FRAME_BYTES",
    "MAX_AMR_FRAMES",
    "PayloadError",
    "amr_frames",
    "g729_speech",
    "gsm_frames",
    "ilbc_frames",
]


class PayloadError(ValueError):
    """A payload that does not follow its RTP payload format."""


# -- G.729 -------------------------------------------------------------------------------

G729_FRAME_BYTES = 10
G729_SID_BYTES = 2  # RFC 3551 §4.5.6: an Annex B SID frame is 2 octets


def g729_speech(payload: bytes) -> bytes:
    """The speech frames of a G.729 payload (a trailing SID frame is left out)."""
    extra = len(payload) % G729_FRAME_BYTES
    if extra not in (0, G729_SID_BYTES):
        raise PayloadError(f"G.729 payload of {len(payload)} bytes: not 10-byte frames "
                           "with at most one 2-byte SID")
    return payload[: len(payload) - extra]


# -- GSM ---------------------------------------------------------------------------------

GSM_FRAME_BYTES = 33
_GSM_SIGNATURE = 0xD  # RFC 3551 §4.5.8.1: the top nibble of every frame


def gsm_frames(payload: bytes) -> bytes:
    """A GSM payload, checked to be whole frames with their signature."""
    if not payload or len(payload) % GSM_FRAME_BYTES:
        raise PayloadError(f"GSM payload of {len(payload)} bytes: not 33-byte frames")
    if any(payload[i] >> 4 != _GSM_SIGNATURE for i in range(0, len(payload), GSM_FRAME_BYTES)):
        raise PayloadError("GSM frame without its 0xD signature")
    return payload


# -- iLBC --------------------------------------------------------------------------------

ILBC_FRAME_BYTES = {20: 38, 30: 50}  # RFC 3952 §3.2: mode (ms) -> frame size


def ilbc_frames(payload: bytes, mode_ms: int) -> int:
    """The frame mode (20 or 30 ms) of an iLBC payload: ``mode_ms`` when the payload is
    whole frames of it, else the other mode when it fits that (a sender that did not
    follow the negotiated mode, RFC 3952 §5)."""
    for mode in (mode_ms, 50 - mode_ms):
        size = ILBC_FRAME_BYTES[mode]
        if payload and len(payload) % size == 0:
            return mode
    raise PayloadError(f"iLBC payload of {len(payload)} bytes: not 38- or 50-byte frames")


# -- AMR, AMR-WB -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmrKind:
    """AMR (narrowband) or AMR-WB: speech bits per frame type (3GPP TS 26.101 Table 1a,
    TS 26.201 Table 1a), the SID frame type and the samples a frame stands for."""

    name: str
    bits: tuple[int, ...]  # by frame type; the last one listed is the SID frame
    samples: int  # per 20 ms frame at the codec's rate

    @property
    def sid(self) -> int:
        return len(self.bits) - 1


AMR_NB = AmrKind("AMR", (95, 103, 118, 134, 148, 159, 204, 244, 39), 160)
AMR_WB = AmrKind("AMR-WB", (132, 177, 253, 285, 317, 365, 397, 461, 477, 40), 320)
_NO_DATA = 15  # RFC 4867 §4.3.2: no frame
_SPEECH_LOST = 14  # AMR-WB only (TS 26.201): a lost frame, no data
# A ToC lists at most this many frames: 12 x 20 ms, far above the 1-4 senders use, and a
# bound on the work one packet can ask for.
MAX_AMR_FRAMES = 12


@dataclass(frozen=True, slots=True)
class AmrFrame:
    """One frame of an AMR payload: ``storage`` is the RFC 4867 §5.3 frame (header byte and
    speech bits) for a speech frame; ``None`` for SID, NO_DATA and damaged frames (Q = 0),
    which are recorded as silence for their 20 ms."""

    frame_type: int
    storage: bytes | None


class _Bits:
    """Reads big-endian bit fields from a payload, never past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, count: int) -> int:
        end = self.pos + count
        if end > len(self.data) * 8:
            raise PayloadError("AMR payload shorter than its table of contents says")
        start_byte, stop_byte = self.pos // 8, (end + 7) // 8
        chunk = int.from_bytes(self.data[start_byte:stop_byte], "big")
        value = (chunk >> (stop_byte * 8 - end)) & ((1 << count) - 1)
        self.pos = end
        return value

    def align(self) -> None:
        self.pos = (self.pos + 7) // 8 * 8


def amr_frames(payload: bytes, kind: AmrKind, *, octet_aligned: bool) -> list[AmrFrame]:
    """Split an AMR or AMR-WB payload (RFC 4867 §4.3 or §4.4, single channel, no
    interleaving) into its frames."""
    bits = _Bits(payload)
    bits.read(4)  # CMR: what the sender would like to receive; a recorder sends nothing
    if octet_aligned:
        bits.read(4)  # reserved
    toc: list[tuple[int, int]] = []
    while True:
        follows = bits.read(1)
        frame_type = bits.read(4)
        quality = bits.read(1)
        if octet_aligned:
            bits.read(2)  # padding of the ToC entry
        if frame_type >= len(kind.bits) and frame_type not in (_NO_DATA, _SPEECH_LOST):
            raise PayloadError(f"{kind.name} frame type {frame_type} is reserved")
        if frame_type == _SPEECH_LOST and kind is AMR_NB:
            raise PayloadError("AMR frame type 14 is reserved")
        toc.append((frame_type, quality))
        if len(toc) > MAX_AMR_FRAMES:
            raise PayloadError(f"{kind.name} table of contents lists over {MAX_AMR_FRAMES} "
                               "frames")
        if not follows:
            break
    frames: list[AmrFrame] = []
    for frame_type, quality in toc:
        size = kind.bits[frame_type] if frame_type < len(kind.bits) else 0
        speech = _read_frame(bits, size)
        if octet_aligned:
            bits.align()
        if frame_type >= kind.sid or not quality:
            frames.append(AmrFrame(frame_type, None))
        else:
            frames.append(AmrFrame(frame_type, bytes([frame_type << 3 | 0x04]) + speech))
    return frames


def _read_frame(bits: _Bits, size: int) -> bytes:
    """``size`` bits as a storage-format frame body: left-aligned, padded to a byte."""
    if size == 0:
        return b""
    value = bits.read(size)
    pad = -size % 8
    return (value << pad).to_bytes((size + pad) // 8, "big")
