"""The byte stream under a capture reader, and the packet record every format yields.

:class:`ByteSource` reads exact runs of bytes from a file object, counts the offset and turns
a short read into :class:`~srs.capture.errors.CaptureFormatError` naming that offset.  It never
holds more than the record being read, so a multi-GB capture is walked in constant memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Final

from srs.capture.errors import CaptureFormatError

__all__ = ["CapturedPacket", "ByteSource", "MAX_PACKET_BYTES", "NS_PER_S"]

NS_PER_S: Final = 1_000_000_000
# libpcap's and Wireshark's largest snapshot length for ordinary link types (262144): a record
# claiming more is a corrupt or foreign file, not a packet we should allocate for.
MAX_PACKET_BYTES: Final = 262_144
_SKIP_CHUNK_BYTES: Final = 65_536


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """One packet as recorded in a capture file, before any decoding.

    ``timestamp_ns`` is exact for every resolution down to the nanosecond (finer pcapng
    resolutions are truncated to it); ``offset`` is the byte offset of the packet's record
    (pcap) or block (pcapng) in the file, for error messages and progress.
    """

    timestamp_ns: int
    linktype: int
    original_length: int
    data: bytes
    offset: int
    interface: int = 0

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch (float: about microsecond precision in this century)."""
        return self.timestamp_ns / NS_PER_S


class ByteSource:
    """Exact reads with an offset; truncation is a :class:`CaptureFormatError`."""

    def __init__(self, stream: BinaryIO, name: str, total_bytes: int | None) -> None:
        self.stream = stream
        self.name = name
        self.total_bytes = total_bytes
        self.offset = 0

    def error(self, offset: int, expected: str, found: str = "") -> CaptureFormatError:
        return CaptureFormatError(self.name, offset, expected, found)

    def _read_upto(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) == size or not data:
            return data
        # A pipe or socket may return short reads before its end: keep going.
        parts = [data]
        got = len(data)
        while got < size:
            more = self.stream.read(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def read_or_eof(self, size: int, what: str) -> bytes | None:
        """``size`` bytes, or None at a clean end of file (no byte left at all)."""
        start = self.offset
        data = self._read_upto(size)
        if not data:
            return None
        self.offset += len(data)
        if len(data) < size:
            raise self.error(
                start, f"{size} bytes of {what}", f"only {len(data)} bytes before end of file"
            )
        return data

    def read(self, size: int, what: str) -> bytes:
        """Exactly ``size`` bytes; end of file anywhere in them is truncation."""
        start = self.offset
        data = self._read_upto(size)
        self.offset += len(data)
        if len(data) < size:
            found = f"only {len(data)} bytes before end of file" if data else "end of file"
            raise self.error(start, f"{size} bytes of {what}", found)
        return data

    def skip(self, size: int, what: str) -> None:
        """Pass over ``size`` bytes without keeping them."""
        start = self.offset
        left = size
        while left:
            chunk = self._read_upto(min(left, _SKIP_CHUNK_BYTES))
            self.offset += len(chunk)
            left -= len(chunk)
            if not chunk:
                raise self.error(
                    start, f"{size} bytes of {what}", f"only {size - left} before end of file"
                )
