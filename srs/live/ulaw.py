"""A G.711 track laid out as mu-law bytes, for Twilio's mu-law: no decode, no encode.

A track whose codecs are all G.711 at 8 kHz is sent to a Twilio-format consumer as the
octets it came in (PCMA through a 256-entry table, mu-law as is), laid out by the same
rules as :class:`~srs.rtp.assembler.PcmAssembler`: by the timeline's positions, silence
(0xFF, mu-law zero) in the gaps, never rewinding -- a payload overlapping what is laid
out loses its head, the first arrival wins.  So the octets are ``pcmu_encode`` of the
WAV's samples, except that a sender's 0x7F (mu-law's other zero) stays 0x7F.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from srs.codecs import Codec
from srs.codecs.g711 import pcma_decode, pcmu_encode
from srs.rtp.track import Placed

__all__ = ["UlawLayout", "g711_only"]

_SILENCE = b"\xff"  # pcmu_encode(0): mu-law zero
_ALAW_TO_ULAW = pcmu_encode(pcma_decode(bytes(range(256))))


def g711_only(decoders: Mapping[int, Codec]) -> bool:
    """Every audio codec of the stream is G.711 at 8 kHz."""
    return bool(decoders) and all(
        c.encoding_name.upper() in ("PCMU", "PCMA") and c.clock_rate_hz == 8000
        and c.sample_rate_hz == 8000 for c in decoders.values())


class UlawLayout:
    __slots__ = ("position", "_buffer", "_codecs", "trimmed_samples")

    def __init__(self, codecs: Mapping[int, Codec]) -> None:
        self.position = 0  # octets handed out (= samples from the origin)
        self._buffer = bytearray()  # laid out from position on
        self._codecs = dict(codecs)
        self.trimmed_samples = 0

    @property
    def end_offset(self) -> int:
        return self.position + len(self._buffer)

    def use_codecs(self, codecs: Mapping[int, Codec]) -> None:
        self._codecs = dict(codecs)

    def add(self, placed: Iterable[Placed]) -> None:
        buffer = self._buffer
        for item in placed:
            codec = None if item.is_event else self._codecs.get(item.payload_type)
            if codec is None:
                continue  # events, unknown payload types: as the assembler skips them
            data = item.payload
            if codec.encoding_name.upper() == "PCMA":
                data = data.translate(_ALAW_TO_ULAW)
            at = item.offset_samples - self.position
            end = len(buffer)
            if at < end:  # overlaps what is laid out (or was sent): its head goes
                cut = min(len(data), end - at)
                self.trimmed_samples += cut
                data = data[cut:]
                at = end
            if at > end:
                buffer.extend(_SILENCE * (at - end))
            buffer.extend(data)

    def take(self, up_to_offset: int) -> bytes:
        """The octets from the last position to ``up_to_offset``, silence where nothing
        was placed."""
        count = up_to_offset - self.position
        if count <= 0:
            return b""
        buffer = self._buffer
        if count > len(buffer):
            buffer.extend(_SILENCE * (count - len(buffer)))
        out = bytes(buffer[:count])
        del buffer[:count]
        self.position = up_to_offset
        return out
