"""A running server while another host hoards idle connections: calls over TCP are still
recorded and the health probe still answers.

127.0.0.2 stands for the other host (Linux routes all of 127.0.0.0/8 to loopback), so the
per-source limits apply to it and not to the caller on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import resource
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import TOKEN, start_server
from tests.server.test_app import dominant_hz, read
from tests.sipclient import SipClient, send_tones

HOARDER = "127.0.0.2"
SIP_HOARD = 1100  # more than sip.max_connections (1024) by default
MANAGEMENT_HOARD = 40  # more than the 16 that used to fill the management listener
# The hoarder's sockets, the server's side of those it holds, and the test's own.
FILES_NEEDED = 2 * SIP_HOARD + 2 * MANAGEMENT_HOARD + 512


def enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= FILES_NEEDED:
        return
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FILES_NEEDED} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))


def healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - started


def hoard(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOARDER, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def test_a_tcp_call_is_recorded_while_another_host_hoards_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        with socket.socket() as probe:
            probe.bind((HOARDER, 0))
    except OSError:
        pytest.skip(f"{HOARDER} is not a local address here")
    enough_files()
    # Long enough that the hoarded connections are held for the whole call.
    server = start_server(tmp_path, sip={"first_message_timeout_s": 60.0},
                          management={"ephemeral_port": True})
    hoarded: list[socket.socket] = []
    try:
        counters = server.app.transports.counters
        hoarded += hoard(server.tcp_port, SIP_HOARD)
        hoarded += hoard(server.management_port, MANAGEMENT_HOARD)
        deadline = time.monotonic() + 20
        while counters["connections_refused_source"] < SIP_HOARD - 64:
            assert time.monotonic() < deadline, counters
            time.sleep(0.05)
        assert len(server.app.transports.connections) == 64  # sip.max_connections_per_ip
        status, health_s = healthz(server.management_port)
        assert status == 200

        client = SipClient("127.0.0.1", server.tcp_port, "tcp", token=TOKEN)
        try:
            call, answer = client.invite()
            assert answer.status == 200
            send_tones(call.ports, (440.0, 1000.0), packets=50)
            assert client.bye(call).status == 200
        finally:
            client.close()
        [doc] = server.wait_sidecar()
        assert doc["source"]["transport"] == "tcp" and doc["end_reason"] == "bye"
        directory = server.sessions()[0]
        assert dominant_hz(read(directory / "inbound.wav")) == pytest.approx(440, abs=2)
        assert dominant_hz(read(directory / "outbound.wav")) == pytest.approx(1000, abs=2)
        status, health_after_s = healthz(server.management_port)
        assert status == 200
        assert counters["connections_refused"] == 0  # nobody else was shut out
        with capsys.disabled():
            print(f"\n/healthz under hoarding: {health_s * 1000:.1f} ms, "
                  f"{health_after_s * 1000:.1f} ms; SIP connections held: 64 of "
                  f"{SIP_HOARD}, management evictions: "
                  f"{server.app.management.counters['evicted'] if server.app.management else 0}")
    finally:
        for sock in hoarded:
            sock.close()
        server.stop()
