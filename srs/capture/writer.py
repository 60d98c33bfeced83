"""Writing a session's SIP and RTP as a classic pcap file (draft-ietf-opsawg-pcap).

Link type Ethernet (1), microsecond resolution: the one format every tool reads -- Wireshark
and tshark, tcpdump, and sipp's ``play_pcap_audio``, which takes Ethernet or Linux cooked
frames but not raw IP.  The Ethernet addresses are fixed, locally administered ones
(02:00:00:00:00:01 to ...:02): the recorder never saw the real ones.

Each datagram becomes one frame: Ethernet, IPv4 (RFC 791, no options, DF set) or IPv6
(RFC 8200, no extension headers), then UDP (RFC 768) or TCP (RFC 9293) with correct
checksums.  Bytes received over a TCP or TLS connection are written as TCP segments whose
sequence numbers continue per direction, so Wireshark reassembles SIP messages split over
several reads; for TLS they are the decrypted text.

The file never grows past ``max_bytes``: a write that would is refused whole with
:class:`CaptureSizeExceeded`, and the file stays a valid capture.
"""

from __future__ import annotations

import os
import socket
import struct
import zlib
from types import TracebackType
from typing import BinaryIO, Final

from srs.capture.errors import CaptureSizeExceeded
from srs.capture.link import ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_ETHERNET
from srs.capture.packets import IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, Flow
from srs.capture.pcap import PCAP_MAGIC_MICROSECONDS
from srs.capture.source import MAX_PACKET_BYTES
from srs.errors import UsageError

__all__ = ["PcapWriter", "DEFAULT_MAX_BYTES", "MAX_TCP_SEGMENT_BYTES"]

DEFAULT_MAX_BYTES: Final = 1 << 30
# Payload per synthesised TCP segment: an IP datagram holds at most 65535 bytes.
MAX_TCP_SEGMENT_BYTES: Final = 65_000
_MAX_UDP_PAYLOAD: Final = {4: 65_535 - 20 - 8, 6: 65_535 - 8}
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_ETHERNET_SOURCE: Final = bytes.fromhex("020000000001")
_ETHERNET_DESTINATION: Final = bytes.fromhex("020000000002")
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_UDP_HEADER = struct.Struct("!HHHH")
_TCP_HEADER = struct.Struct("!HHIIBBHHH")
_IPV4_DONT_FRAGMENT: Final = 0x4000
_TTL: Final = 64
_TCP_WINDOW: Final = 65_535
_SEQ_MODULUS: Final = 1 << 32
_MAX_CACHED_ADDRESSES: Final = 256


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum: the one's complement of the one's-complement sum.

    Summing 16-bit words end-around-carry is arithmetic modulo 0xFFFF (2**16 == 1 there), so
    the whole message read as one big integer gives the same sum in one C-level operation.
    """
    if len(data) % 2:
        data += b"\x00"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF  # a non-zero sum of 0xFFFF is "negative zero", not zero
    return ~total & 0xFFFF


class PcapWriter:
    """Append UDP datagrams and TCP stream bytes to a new pcap file, bounded by ``max_bytes``."""

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        header = _FILE_HEADER.pack(
            PCAP_MAGIC_MICROSECONDS, 2, 4, 0, 0, MAX_PACKET_BYTES, LINKTYPE_ETHERNET
        )
        if max_bytes < len(header):
            raise UsageError(f"max_bytes must be at least {len(header)}, not {max_bytes}")
        if isinstance(target, (str, os.PathLike)):
            self.path = os.fspath(target)
            self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
            self._owns = True
        else:
            self.path = str(getattr(target, "name", "<stream>"))
            self._file = target
            self._owns = False
        self.max_bytes = max_bytes
        self.bytes_written = 0
        self.packets_written = 0
        self._closed = False
        self._ip_id = 0
        self._next_seq: dict[Flow, int] = {}
        self._addresses: dict[str, tuple[int, bytes]] = {}
        self._append(header)

    # ------------------------------------------------------------------ public

    def write_udp(
        self, timestamp: float, src: str, sport: int, dst: str, dport: int, payload: bytes
    ) -> None:
        """One UDP datagram as received at ``timestamp`` (seconds since the epoch)."""
        version, src_bytes, dst_bytes = self._pair(src, dst)
        if len(payload) > _MAX_UDP_PAYLOAD[version]:
            raise UsageError(f"a UDP payload of {len(payload)} bytes does not fit an IP datagram")
        _check_port(sport)
        _check_port(dport)
        length = 8 + len(payload)
        pseudo = _pseudo_header(version, src_bytes, dst_bytes, IPPROTO_UDP, length)
        bare = _UDP_HEADER.pack(sport, dport, length, 0)
        # RFC 768: a computed checksum of zero is sent as all ones (zero means "none").
        checksum = _checksum(pseudo + bare + payload) or 0xFFFF
        segment = _UDP_HEADER.pack(sport, dport, length, checksum) + payload
        self._write_frame(timestamp, version, src_bytes, dst_bytes, IPPROTO_UDP, segment)

    def write_tcp_stream_data(
        self, timestamp: float, src: str, sport: int, dst: str, dport: int, data: bytes
    ) -> None:
        """Bytes read from a TCP (or decrypted TLS) connection, as one or more segments."""
        for start in range(0, len(data), MAX_TCP_SEGMENT_BYTES):
            self._write_segment(
                timestamp, src, sport, dst, dport,
                TCP_PSH | TCP_ACK, data[start : start + MAX_TCP_SEGMENT_BYTES],
            )

    def write_tcp_close(self, timestamp: float, src: str, sport: int, dst: str, dport: int) -> None:
        """A FIN from ``src``: that direction of the connection ended."""
        self._write_segment(timestamp, src, sport, dst, dport, TCP_FIN | TCP_ACK, b"")
        self._next_seq.pop(Flow(src, sport, dst, dport), None)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _write_segment(
        self,
        timestamp: float,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        flags: int,
        payload: bytes,
    ) -> None:
        version, src_bytes, dst_bytes = self._pair(src, dst)
        _check_port(sport)
        _check_port(dport)
        flow = Flow(src, sport, dst, dport)
        seq = self._next_seq.get(flow)
        if seq is None:
            # A stable initial sequence number per flow, so that two runs write the same file.
            seq = zlib.crc32(repr(flow).encode())
        ack = self._next_seq.get(flow.reversed(), 0)
        pseudo = _pseudo_header(version, src_bytes, dst_bytes, IPPROTO_TCP, 20 + len(payload))
        fields = (sport, dport, seq, ack, 5 << 4, flags, _TCP_WINDOW)
        checksum = _checksum(pseudo + _TCP_HEADER.pack(*fields, 0, 0) + payload)
        segment = _TCP_HEADER.pack(*fields, checksum, 0) + payload
        self._write_frame(timestamp, version, src_bytes, dst_bytes, IPPROTO_TCP, segment)
        # RFC 9293 §3.4: data and FIN each advance the sequence number.
        advance = len(payload) + (1 if flags & TCP_FIN else 0)
        self._next_seq[flow] = (seq + advance) % _SEQ_MODULUS

    def _write_frame(
        self,
        timestamp: float,
        version: int,
        src: bytes,
        dst: bytes,
        protocol: int,
        segment: bytes,
    ) -> None:
        if version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            fields = (0x45, 0, 20 + len(segment), self._ip_id, _IPV4_DONT_FRAGMENT, _TTL, protocol)
            checksum = _checksum(_IPV4_HEADER.pack(*fields, 0, src, dst))
            ip_header = _IPV4_HEADER.pack(*fields, checksum, src, dst)
            ethertype = ETHERTYPE_IPV4
        else:
            ip_header = _IPV6_HEADER.pack(6 << 28, len(segment), protocol, _TTL, src, dst)
            ethertype = ETHERTYPE_IPV6
        frame = b"".join(
            (
                _ETHERNET_DESTINATION,
                _ETHERNET_SOURCE,
                ethertype.to_bytes(2, "big"),
                ip_header,
                segment,
            )
        )
        microseconds = round(timestamp * 1_000_000)
        if microseconds < 0:
            raise UsageError(f"a capture timestamp cannot be negative: {timestamp}")
        seconds, fraction = divmod(microseconds, 1_000_000)
        record = _RECORD_HEADER.pack(seconds & 0xFFFFFFFF, fraction, len(frame), len(frame))
        self._append(record + frame)
        self.packets_written += 1

    def _append(self, data: bytes) -> None:
        if self._closed:
            raise UsageError(f"{self.path}: the capture writer is closed")
        if self.bytes_written + len(data) > self.max_bytes:
            raise CaptureSizeExceeded(self.path, self.max_bytes)
        self._file.write(data)
        self.bytes_written += len(data)

    def _pair(self, src: str, dst: str) -> tuple[int, bytes, bytes]:
        src_version, src_bytes = self._address(src)
        dst_version, dst_bytes = self._address(dst)
        if src_version != dst_version:
            raise UsageError(f"{src} and {dst} are not of one IP version")
        return src_version, src_bytes, dst_bytes

    def _address(self, text: str) -> tuple[int, bytes]:
        known = self._addresses.get(text)
        if known is not None:
            return known
        try:
            parsed = (4, socket.inet_pton(socket.AF_INET, text))
        except OSError:
            try:
                parsed = (6, socket.inet_pton(socket.AF_INET6, text))
            except OSError:
                raise UsageError(f"not an IP address: {text!r}") from None
        if len(self._addresses) >= _MAX_CACHED_ADDRESSES:
            self._addresses.clear()
        self._addresses[text] = parsed
        return parsed


def _check_port(port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise UsageError(f"not a port number: {port}")


def _pseudo_header(version: int, src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    """RFC 768 / RFC 9293 §3.1 (IPv4) and RFC 8200 §8.1 (IPv6) checksum pseudo-headers."""
    if version == 4:
        return src + dst + struct.pack("!BBH", 0, protocol, length)
    return src + dst + struct.pack("!I3xB", length, protocol)
