"""Open a capture file of either format and iterate its packets, streaming.

:func:`read_capture` looks at the first four bytes: a classic pcap magic (draft-ietf-opsawg-pcap
§4, either byte order, micro- or nanoseconds) or a pcapng Section Header Block
(draft-ietf-opsawg-pcapng §4.1).  Anything else is a :class:`CaptureFormatError` at offset 0.

The returned :class:`CaptureReader` is the iterator; ``offset`` and ``total_bytes`` let a
caller draw a progress bar while it runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Final

from srs.capture.pcap import PCAP_MAGICS, read_pcap
from srs.capture.pcapng import PCAPNG_SHB_MAGIC, read_pcapng
from srs.capture.source import MAX_PACKET_BYTES, ByteSource, CapturedPacket
from srs.errors import UsageError

__all__ = ["CaptureReader", "read_capture"]

_EXPECTED_MAGIC: Final = (
    "a pcap magic number (a1b2c3d4 or a1b23c4d, either byte order) "
    "or a pcapng Section Header Block (0a0d0d0a)"
)
# What a foreign file most likely is, to say so in the error.
_KNOWN_FOREIGN: Final = {
    b"\x1f\x8b": "gzip-compressed data (decompress it first)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data (decompress it first)",
    b"\x04\x22\x4d\x18": "lz4-compressed data (decompress it first)",
    b"PK\x03\x04": "a zip archive",
}


def _describe(first: bytes) -> str:
    for prefix, name in _KNOWN_FOREIGN.items():
        if first.startswith(prefix):
            return f"{name}: bytes {first.hex()}"
    return f"bytes {first.hex()}"


class CaptureReader(Iterator[CapturedPacket]):
    """Iterator over the packets of one pcap or pcapng capture, in file order.

    ``format`` is ``"pcap"`` or ``"pcapng"``; ``offset`` is the number of bytes consumed so
    far and ``total_bytes`` the file size (None for a stream that cannot tell).  A reader
    opened from a path closes its file at the end, on error and on :meth:`close`; a file object
    passed in is left open for its owner.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        max_packet_bytes: int = MAX_PACKET_BYTES,
    ) -> None:
        if max_packet_bytes <= 0:
            raise UsageError(f"max_packet_bytes must be positive, not {max_packet_bytes}")
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            stream: BinaryIO = open(name, "rb")  # noqa: SIM115 - closed by close()
            self._owns = True
        else:
            stream = source
            name = str(getattr(source, "name", "<stream>"))
            self._owns = False
        self._source = ByteSource(stream, name, _size_of(stream))
        try:
            first = self._source.read_or_eof(4, "a capture file header")
        except BaseException:
            self.close()
            raise
        if first is None:
            self.close()
            raise self._source.error(0, _EXPECTED_MAGIC, "an empty file")
        if first == PCAPNG_SHB_MAGIC:
            self.format = "pcapng"
            self._packets = read_pcapng(self._source, first, max_packet_bytes)
        elif int.from_bytes(first, "little") in PCAP_MAGICS or (
            int.from_bytes(first, "big") in PCAP_MAGICS
        ):
            self.format = "pcap"
            self._packets = read_pcap(self._source, first, max_packet_bytes)
        else:
            self.close()
            raise self._source.error(0, _EXPECTED_MAGIC, _describe(first))

    @property
    def name(self) -> str:
        return self._source.name

    @property
    def offset(self) -> int:
        return self._source.offset

    @property
    def total_bytes(self) -> int | None:
        return self._source.total_bytes

    def __iter__(self) -> CaptureReader:
        return self

    def __next__(self) -> CapturedPacket:
        try:
            return next(self._packets)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._owns:
            self._source.stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _size_of(stream: BinaryIO) -> int | None:
    """Bytes from the stream's position to its end, if it can tell."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    return end - here


def read_capture(
    source: str | os.PathLike[str] | BinaryIO, *, max_packet_bytes: int = MAX_PACKET_BYTES
) -> CaptureReader:
    """Open ``source`` (a path or a binary file object) and iterate its packets.

    Raises :class:`~srs.capture.errors.CaptureFormatError` naming the file, the byte offset and
    what was expected, at once for a foreign file and during iteration for a truncated one.
    """
    return CaptureReader(source, max_packet_bytes=max_packet_bytes)
