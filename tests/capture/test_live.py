"""Captures made now by dumpcap of traffic this test sends on loopback, read by srs.capture.

UDP over IPv4 and IPv6 and SIP over TCP (one message sent in three writes, so in three
segments) are captured on ``lo`` (Ethernet) and on ``any`` (Linux cooked v1 and v2), then
converted by editcap to pcap, nanosecond pcap, modified pcap and raw IP.  tshark counts the
same frames; every conversion decodes to the same datagrams and stream bytes.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from srs.capture import CaptureFormatError, read_capture
from srs.capture.decode import PacketDecoder, decode_packets
from srs.capture.packets import Datagram, StreamChunk, StreamClosed
from tests.capture.tools import dumpcap, require_tools, run_tool, tshark_count

pytestmark = pytest.mark.peers
DATAGRAMS = 20
SIP = (
    b"OPTIONS sip:srs@localhost SIP/2.0\r\nVia: SIP/2.0/TCP localhost;branch=z9hG4bKlive\r\n"
    b"From: <sip:t@localhost>;tag=1\r\nTo: <sip:srs@localhost>\r\nCall-ID: live-capture\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 12\r\n\r\nhello, world"
)


@dataclass(frozen=True)
class Captured:
    path: Path
    udp_port: int
    tcp_port: int


def _dual_stack(kind: int) -> socket.socket:
    """A socket on ``::`` port 0 that serves IPv4 too: one port number the system chose
    for both families, known before dumpcap starts (its filter names it)."""
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    return sock


def _tcp_exchange(host: str, server: socket.socket) -> None:
    port = server.getsockname()[1]
    with socket.create_connection((host, port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer, _ = server.accept()
        with peer:
            for part in (SIP[:40], SIP[40:150], SIP[150:]):
                client.sendall(part)
                time.sleep(0.05)  # separate segments, not one coalesced write
            client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := peer.recv(4096):
                received += chunk
            assert received == SIP


def _send_traffic(sink: socket.socket, server: socket.socket) -> None:
    udp_port = sink.getsockname()[1]
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        with socket.socket(family, socket.SOCK_DGRAM) as sender:
            for n in range(DATAGRAMS):
                sender.sendto(f"datagram {host} {n}".encode(), (host, udp_port))
        _tcp_exchange(host, server)


def _capture(work: Path, name: str, interface: str, linktype: str | None) -> Captured:
    require_tools("dumpcap", "editcap", "tshark")
    path = work / f"{name}.pcapng"
    with _dual_stack(socket.SOCK_DGRAM) as sink, _dual_stack(socket.SOCK_STREAM) as server:
        server.listen(2)
        udp_port, tcp_port = sink.getsockname()[1], server.getsockname()[1]
        with dumpcap(path, f"udp port {udp_port} or tcp port {tcp_port}",
                     ("127.0.0.1", udp_port), interface=interface, linktype=linktype):
            _send_traffic(sink, server)
    return Captured(path, udp_port, tcp_port)


@pytest.fixture(scope="module")
def lo_capture(tmp_path_factory: pytest.TempPathFactory) -> Captured:
    return _capture(tmp_path_factory.mktemp("live"), "lo", "lo", None)


def _summary(path: Path, captured: Captured) -> tuple[Counter[bytes], dict[str, bytes], set[str]]:
    decoder = PacketDecoder()
    reader = read_capture(path)
    datagrams: Counter[bytes] = Counter()
    streams: dict[str, bytes] = {}
    closed: set[str] = set()
    for event in decode_packets(reader, decoder):
        if isinstance(event, Datagram) and event.payload != b"probe":
            assert event.dport == captured.udp_port
            datagrams[event.payload] += 1
        elif isinstance(event, StreamChunk) and event.flow.dport == captured.tcp_port:
            streams[event.flow.src] = streams.get(event.flow.src, b"") + event.data
        elif isinstance(event, StreamClosed) and event.flow.dport == captured.tcp_port:
            closed.add(f"{event.flow.src} {event.reason}")
    assert reader.offset == reader.total_bytes
    assert decoder.packets == tshark_count(path)
    assert decoder.drops == {}
    return datagrams, streams, closed


def _assert_all_traffic(path: Path, captured: Captured, copies: int = 1) -> None:
    datagrams, streams, closed = _summary(path, captured)
    expected = Counter({f"datagram {h} {n}".encode(): copies
                        for h in ("127.0.0.1", "::1") for n in range(DATAGRAMS)})
    assert datagrams == expected
    assert streams == {"127.0.0.1": SIP, "::1": SIP}
    assert closed == {"127.0.0.1 fin", "::1 fin"}


def test_dumpcap_pcapng_on_loopback(lo_capture: Captured) -> None:
    assert read_capture(lo_capture.path).format == "pcapng"
    assert {p.linktype for p in read_capture(lo_capture.path)} == {1}
    # The message went out in three writes: tshark sees three data segments each way.
    segments = tshark_count(lo_capture.path, "-Y",
                            f"tcp.dstport == {lo_capture.tcp_port} and tcp.len > 0")
    assert segments == 6
    sip = tshark_count(lo_capture.path, "-Y", "sip", "-d", f"tcp.port=={lo_capture.tcp_port},sip")
    assert sip == 2
    _assert_all_traffic(lo_capture.path, lo_capture)


@pytest.mark.parametrize(
    ("name", "editcap_args", "linktype"),
    [
        ("pcap", ["-F", "pcap"], 1),
        ("nsecpcap", ["-F", "nsecpcap"], 1),
        ("modpcap", ["-F", "modpcap"], 1),
        ("rawip", ["-F", "pcap", "-C", "14", "-T", "rawip"], 101),
        ("rawip-pcapng", ["-C", "14", "-T", "rawip"], 101),
    ],
)
def test_editcap_conversions_decode_the_same(
    lo_capture: Captured, tmp_path: Path, name: str, editcap_args: list[str], linktype: int
) -> None:
    converted = tmp_path / f"{name}.cap"
    run_tool("editcap", *editcap_args, str(lo_capture.path), str(converted))
    assert {p.linktype for p in read_capture(converted)} == {linktype}
    _assert_all_traffic(converted, lo_capture)
    original = [p.timestamp_ns for p in read_capture(lo_capture.path)]
    times = [p.timestamp_ns for p in read_capture(converted)]
    if name in ("pcap", "modpcap", "rawip"):  # microsecond formats
        assert times == [t // 1000 * 1000 for t in original]
    else:
        assert times == original


@pytest.mark.parametrize("linktype", [("LINUX_SLL", 113), ("LINUX_SLL2", 276)])
def test_dumpcap_any_gives_linux_cooked_captures(
    tmp_path: Path, linktype: tuple[str, int]
) -> None:
    captured = _capture(tmp_path, linktype[0], "any", linktype[0])
    assert {p.linktype for p in read_capture(captured.path)} == {linktype[1]}
    _assert_all_traffic(captured.path, captured)


def test_truncated_real_capture_names_the_offset(lo_capture: Captured, tmp_path: Path) -> None:
    pcap = tmp_path / "whole.pcap"
    run_tool("editcap", "-F", "pcap", str(lo_capture.path), str(pcap))
    offsets = [p.offset for p in read_capture(pcap)]
    data = pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: offsets[5] + 20])  # 4 bytes into the 6th packet's data
    reader = read_capture(cut)
    with pytest.raises(CaptureFormatError) as caught:
        for _ in reader:
            pass
    assert caught.value.offset == offsets[5] + 16
    assert str(caught.value).startswith(f"{cut}: at byte offset {offsets[5] + 16}: expected ")
    assert str(caught.value).endswith(
        f"(record at offset {offsets[5]}), found only 4 bytes before end of file"
    )
    tshark = subprocess.run(["tshark", "-r", str(cut)], capture_output=True, text=True,
                            check=False)
    assert "cut short in the middle of a packet" in tshark.stderr
