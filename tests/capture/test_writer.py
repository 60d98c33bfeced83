"""PcapWriter: read back by our reader and by tshark (SIP, RTP, TCP reassembly, checksums)."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from srs.capture import CaptureSizeExceeded, read_capture
from srs.capture.decode import PacketDecoder, decode_packets
from srs.capture.packets import Datagram, Flow, StreamChunk, StreamClosed
from srs.capture.writer import PcapWriter
from srs.errors import UsageError
from tests.capture.tools import require_tools, run_tool, tshark_count

T0 = 1_700_000_000.25


def sip_request(call_id: str, body: bytes = b"", transport: str = "UDP") -> bytes:
    return (
        f"INVITE sip:srs@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5070;branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:src@127.0.0.1>;tag=1\r\nTo: <sip:srs@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:src@127.0.0.1:5070>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")


def rtp(seq: int) -> bytes:
    return bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        b"\x12\x34\x56\x78" + b"\xff" * 160


def write_session(target: Path | io.BytesIO) -> bytes:
    """UDP SIP v4, RTP v4 and v6, SIP over TCP split in three reads (v4) and one (v6)."""
    tcp_message = sip_request("tcp-call", SDP, "TCP")
    with PcapWriter(target) as writer:  # type: ignore[arg-type]
        writer.write_udp(T0, "127.0.0.1", 5070, "127.0.0.1", 5060, sip_request("udp-call", SDP))
        for n in range(10):
            writer.write_udp(T0 + 0.02 * n, "127.0.0.1", 4002, "127.0.0.1", 4000, rtp(n))
            writer.write_udp(T0 + 0.02 * n, "::1", 4006, "::1", 4004, rtp(n))
        for part in (tcp_message[:17], tcp_message[17:200], tcp_message[200:]):
            writer.write_tcp_stream_data(T0 + 1, "127.0.0.1", 41000, "127.0.0.1", 5060, part)
        v6 = sip_request("v6", b"", "TCP")
        writer.write_tcp_stream_data(T0 + 2, "::1", 41002, "::1", 5060, v6)
        writer.write_tcp_close(T0 + 3, "127.0.0.1", 41000, "127.0.0.1", 5060)
        writer.flush()
    return tcp_message


def test_round_trip_through_our_reader(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    tcp_message = write_session(path)
    reader = read_capture(path)
    decoder = PacketDecoder()
    events = list(decode_packets(reader, decoder))
    assert decoder.drops == {}
    datagrams = [e for e in events if isinstance(e, Datagram)]
    assert datagrams[0] == Datagram(T0, "127.0.0.1", 5070, "127.0.0.1", 5060,
                                    sip_request("udp-call", SDP))
    assert [d.payload for d in datagrams if d.dport == 4004] == [rtp(n) for n in range(10)]
    assert datagrams[4].src == "::1" and datagrams[4].timestamp == pytest.approx(T0 + 0.02)
    v4 = Flow("127.0.0.1", 41000, "127.0.0.1", 5060)
    chunks = b"".join(e.data for e in events if isinstance(e, StreamChunk) and e.flow == v4)
    assert chunks == tcp_message
    assert StreamClosed(T0 + 3, v4, "fin") in events
    assert reader.offset == path.stat().st_size


def test_tshark_decodes_sip_rtp_and_reassembles_tcp(tmp_path: Path) -> None:
    require_tools("tshark")
    path = tmp_path / "capture.pcap"
    write_session(path)
    checks = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
              "-o", "tcp.check_checksum:TRUE"]
    assert tshark_count(path) == 1 + 20 + 3 + 1 + 1
    assert tshark_count(path, *checks, "-Y", "_ws.expert.severity >= warning") == 0
    call_ids = run_tool("tshark", "-r", str(path), "-Y", "sip", "-T", "fields",
                        "-e", "sip.Call-ID", "-e", "sdp.media").split("\n")
    assert [line.split("\t")[0] for line in call_ids if line] == ["udp-call", "tcp-call", "v6"]
    assert "audio 4000 RTP/AVP 0" in call_ids[1]
    rtp_count = tshark_count(path, "-d", "udp.port==4000,rtp", "-d", "udp.port==4004,rtp",
                             "-Y", "rtp.seq and rtp.p_type == 0")
    assert rtp_count == 20


def test_max_bytes_refuses_whole_records_and_keeps_the_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "small.pcap"
    record = 16 + 14 + 20 + 8 + 172
    writer = PcapWriter(path, max_bytes=24 + 3 * record + 10)
    for n in range(3):
        writer.write_udp(T0, "127.0.0.1", 4002, "127.0.0.1", 4000, rtp(n))
    with pytest.raises(CaptureSizeExceeded) as caught:
        writer.write_udp(T0, "127.0.0.1", 4002, "127.0.0.1", 4000, rtp(3))
    assert str(caught.value) == f"{path}: capture reached its limit of {24 + 3 * record + 10} bytes"
    writer.close()
    assert path.stat().st_size == 24 + 3 * record
    assert len(list(read_capture(path))) == 3


def test_misuse_is_a_usage_error() -> None:
    writer = PcapWriter(io.BytesIO())
    with pytest.raises(UsageError, match="not of one IP version"):
        writer.write_udp(T0, "127.0.0.1", 1, "::1", 2, b"")
    with pytest.raises(UsageError, match="not an IP address"):
        writer.write_udp(T0, "localhost", 1, "::1", 2, b"")
    with pytest.raises(UsageError, match="does not fit"):
        writer.write_udp(T0, "127.0.0.1", 1, "127.0.0.1", 2, bytes(65_508))
    writer.close()
    with pytest.raises(UsageError, match="closed"):
        writer.write_udp(T0, "127.0.0.1", 1, "127.0.0.1", 2, b"")


def test_large_tcp_writes_are_split_and_reassembled(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 1000  # 256 000 bytes: four segments
    stream = io.BytesIO()
    with PcapWriter(stream) as writer:
        writer.write_tcp_stream_data(T0, "10.0.0.1", 1, "10.0.0.2", 2, blob)
    stream.seek(0)
    events = list(decode_packets(read_capture(stream)))
    assert b"".join(e.data for e in events if isinstance(e, StreamChunk)) == blob


def test_streaming_a_large_capture_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "large.pcap"
    packets = 200_000
    with PcapWriter(path) as writer:
        payload = rtp(1)
        for n in range(packets):
            writer.write_udp(T0 + n * 0.0001, "127.0.0.1", 4002, "127.0.0.1", 4000, payload)
    size = path.stat().st_size
    assert size > 40_000_000
    tracemalloc.start()
    try:
        count = 0
        decoder = PacketDecoder()
        for event in decode_packets(read_capture(path), decoder):
            count += isinstance(event, Datagram)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == packets
    assert peak < 2_000_000, f"peak {peak} bytes while reading a {size}-byte capture"
