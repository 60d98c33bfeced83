"""Reading and writing packet captures (pcap, pcapng) for ``srs replay`` and per-session capture.

Pure apart from file I/O: no asyncio, no logging.  See :mod:`srs.capture.reader`,
:mod:`srs.capture.decode` and :mod:`srs.capture.writer`.
"""

from srs.capture.errors import CaptureFormatError, CaptureSizeExceeded, PacketDecodeError
from srs.capture.reader import CaptureReader, read_capture
from srs.capture.source import CapturedPacket

__all__ = [
    "CaptureFormatError",
    "CaptureSizeExceeded",
    "PacketDecodeError",
    "CaptureReader",
    "read_capture",
    "CapturedPacket",
]
