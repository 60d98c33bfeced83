"""``capture.pcap``: one session's SIP and RTP as srs received them (``recordings.capture``).

Records are collected on the event loop (cheap appends) and written by the worker thread
with :class:`srs.capture.writer.PcapWriter`.  Timestamps are the session clock readings
srs itself used, turned into Unix time, so ``srs replay`` of the capture reproduces the
recording exactly.  SIP is written as srs parsed it (over TLS: decrypted) in both
directions; RTP as it arrived, before decryption.  The SDP inside holds the SDES keys:
a capture is as secret as the call.

A capture that cannot be written (disk full, over its size limit) stops, and the session
goes on recording: the capture is a diagnostic, the recording is the product.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from srs.capture.errors import CaptureSizeExceeded
from srs.capture.writer import PcapWriter
from srs.errors import UsageError
from srs.recording.files import opener
from srs.sip.message import SipRequest

if TYPE_CHECKING:
    from srs.recording.session import RecordingSession

__all__ = ["CaptureRecord", "SessionCapture", "CAPTURE_FILE", "collect", "redact"]

CAPTURE_FILE = "capture.pcap"


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    now: float
    src: str
    sport: int
    dst: str
    dport: int
    data: bytes
    stream: bool  # TCP or TLS: written as stream data


class SessionCapture:
    def __init__(self, path: Path | None, epoch_offset_s: float) -> None:
        self.path = path  # None until the session's directory exists
        self.epoch_offset_s = epoch_offset_s
        self.records: list[CaptureRecord] = []
        self.error: str | None = None
        self._writer: PcapWriter | None = None
        self._file: BinaryIO | None = None

    def add(self, record: CaptureRecord) -> None:
        if self.error is None:
            self.records.append(record)

    def take(self) -> list[CaptureRecord]:
        """The records collected so far (event loop side)."""
        records, self.records = self.records, []
        return records

    def write(self, records: list[CaptureRecord]) -> None:
        """Write records (worker thread).  A failure stops the capture, not the session."""
        if self.error is not None or not records:
            return
        try:
            if self._writer is None:
                if self.path is None:
                    raise UsageError("the capture has no directory yet")
                self._file = open(self.path, "wb", opener=opener)  # noqa: SIM115 - close()
                self._writer = PcapWriter(self._file)
            for r in records:
                if _version(r.src) != _version(r.dst):
                    continue  # an IPv6 peer of an IPv4-advertised server: no consistent frame
                timestamp = r.now + self.epoch_offset_s
                if r.stream:
                    self._writer.write_tcp_stream_data(timestamp, r.src, r.sport, r.dst, r.dport,
                                                       r.data)
                else:
                    self._writer.write_udp(timestamp, r.src, r.sport, r.dst, r.dport, r.data)
            self._writer.flush()
        except (OSError, CaptureSizeExceeded) as exc:
            self.error = str(exc)
            self.records = []

    def close(self) -> None:
        writer, file, self._writer, self._file = self._writer, self._file, None, None
        try:
            if writer is not None:
                writer.close()  # flushes the file it was given
        except OSError as exc:
            self.error = self.error or str(exc)
        finally:
            if file is not None:
                try:
                    file.close()
                except OSError as exc:
                    self.error = self.error or str(exc)


def _version(address: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 0


def redact(message: Any, credential_header: str) -> bytes:
    """A SIP message for a capture, with the credential header's value blanked: the token
    admits anyone to the server, which is more than a capture should give away."""
    if isinstance(message, SipRequest) and credential_header in message.headers:
        message = message.with_headers(message.headers.set(credential_header, "<redacted>"))
    return bytes(message)


def collect(capture: SessionCapture, session: RecordingSession) -> list[CaptureRecord]:
    """Everything captured since the last write (SIP, and each stream's RTP as received),
    in the order srs saw it.  Event loop side."""
    records = capture.take()
    address = session.media_address
    for stream in session.streams:
        if stream.capture:
            packets, stream.capture = stream.capture, []
            records.extend(CaptureRecord(now, src[0], src[1], address, stream.port, data, False)
                           for now, src, data in packets)
    records.sort(key=lambda r: r.now)
    return records
