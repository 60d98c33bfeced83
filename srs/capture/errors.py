"""Errors of the capture package.

* :class:`CaptureFormatError` -- the capture *file* is unusable from some byte on: truncated
  mid-header or mid-packet, not a pcap/pcapng file at all, or a header whose fields cannot be
  right (a 3 GB record).  Fatal for the file; the message names the file, the byte offset and
  what was expected there, so an operator can look at it with ``xxd -s OFFSET``.
* :class:`PacketDecodeError` -- one *packet* inside a good file cannot be decoded (a bad IP
  header, an unknown ethertype).  Never fatal: the decoder catches it, drops the packet and
  counts it under ``reason``.
* :class:`CaptureSizeExceeded` -- :class:`~srs.capture.writer.PcapWriter` would grow past its
  configured ``max_bytes``; nothing of the refused record is written.

None of them is a :class:`~srs.errors.PeerError`: a capture file has no SIP status to map to.
"""

from __future__ import annotations

from srs.errors import SrsError

__all__ = ["CaptureFormatError", "PacketDecodeError", "CaptureSizeExceeded"]


class CaptureFormatError(SrsError):
    """A capture file is truncated or foreign.  Names ``path``, ``offset`` and ``expected``."""

    def __init__(self, path: str, offset: int, expected: str, found: str = "") -> None:
        message = f"{path}: at byte offset {offset}: expected {expected}"
        if found:
            message += f", found {found}"
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.expected = expected
        self.found = found


class PacketDecodeError(SrsError):
    """One captured packet cannot be decoded; ``reason`` is the drop counter it goes to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class CaptureSizeExceeded(SrsError):
    """Writing a record would make the capture file larger than its limit."""

    def __init__(self, path: str, max_bytes: int) -> None:
        super().__init__(f"{path}: capture reached its limit of {max_bytes} bytes")
        self.path = path
        self.max_bytes = max_bytes
