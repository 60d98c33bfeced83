"""deploy/kamailio: Kamailio accepts the configuration, and with it dispatches INVITEs to
srs nodes on loopback, failing over from a node that answers 503."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.kamailio import CONFIG, dispatcher_list, kamailio_command
from tests.deploy.tools import tool


def check(tmp_path: Path, config: Path = CONFIG, *defines: str) -> subprocess.CompletedProcess[str]:
    kamailio = tool("kamailio", "kamailio")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(dispatcher_list([("127.0.0.1", 15060), ("127.0.0.1", 15062)]))
    args = kamailio_command(kamailio, tmp_path, port=free_port(), list_file=list_file,
                            check_only=True, extra=[a for d in defines for a in ("-A", d)])
    args[args.index("-f") + 1] = str(config)
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_kamailio_accepts_the_configuration(tmp_path: Path) -> None:
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "config file ok" in done.stderr


def test_kamailio_accepts_the_call_id_hash(tmp_path: Path) -> None:
    done = check(tmp_path, CONFIG, 'DISPATCHER_ALG="0"')
    assert done.returncode == 0, done.stderr


def test_kamailio_refuses_a_broken_sibling(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cfg"
    broken.write_text(CONFIG.read_text().replace("ds_next_dst()", "ds_next_destination()"))
    done = check(tmp_path, broken)
    assert done.returncode != 0 and "unknown command" in done.stderr


def test_committed_dispatcher_list_has_srs_nodes_in_set_1() -> None:
    lines = [line.split() for line in (CONFIG.parent / "dispatcher.list").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) >= 2 and all(fields[0] == "1" and fields[1].startswith("sip:")
                                   for fields in lines)


class FakeNode:
    """A UDP SIP endpoint standing in for an srs node: 200 to OPTIONS, ``status`` to
    INVITE (with a To tag), and a record of the INVITEs it saw."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.invites: list[str] = []
        self.options = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode()
            method = text.split(" ", 1)[0]
            if method == "OPTIONS":
                self.options += 1
                self.sock.sendto(reply(text, 200, "OK"), peer)
            elif method == "INVITE":
                self.invites.append(text)
                self.sock.sendto(reply(text, self.status, "Answer", tag=True), peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def headers(text: str, name: str) -> list[str]:
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    return [line.split(":", 1)[1].strip() for line in head
            if line.split(":", 1)[0].strip().lower() == name.lower()]


def reply(request: str, status: int, reason: str, tag: bool = False) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in headers(request, "Via")]
    lines += [f"Record-Route: {v}" for v in headers(request, "Record-Route")]
    to = headers(request, "To")[0] + (";tag=node" if tag else "")
    lines += [f"From: {headers(request, 'From')[0]}", f"To: {to}",
              f"Call-ID: {headers(request, 'Call-ID')[0]}", f"CSeq: {headers(request, 'CSeq')[0]}"]
    if tag and status == 200:
        lines.append("Contact: <sip:srs@127.0.0.1>;+sip.srs")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def invite(port: int, client: socket.socket) -> str:
    """Send an INVITE to Kamailio and return the final response."""
    local = client.getsockname()[1]
    call_id = uuid.uuid4().hex
    client.sendto((
        f"INVITE sip:srs@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id[:12]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:src@127.0.0.1>;tag={call_id[:8]}\r\nTo: <sip:srs@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:src@127.0.0.1:{local}>\r\n"
        "X-Auth-Token: passed-through\r\nContent-Length: 0\r\n\r\n").encode(),
        ("127.0.0.1", port))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            data = client.recv(65535).decode()
        except TimeoutError:
            continue
        if not data.startswith("SIP/2.0 1"):
            return data
    raise AssertionError("no final response from Kamailio")


@pytest.mark.timeout(120)
def test_kamailio_fails_over_to_the_next_node_and_stays_on_the_route(tmp_path: Path) -> None:
    kamailio = tool("kamailio", "kamailio")
    busy, healthy = FakeNode(503), FakeNode(200)
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(dispatcher_list([("127.0.0.1", busy.port), ("127.0.0.1", healthy.port)]))
    port = free_port()  # a probe: Kamailio is told its listen port on the command line
    log = (tmp_path / "kamailio.log").open("w")
    process = subprocess.Popen(kamailio_command(kamailio, tmp_path, port=port, list_file=list_file),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(0.5)
    try:
        deadline = time.monotonic() + 20
        while healthy.options == 0 and time.monotonic() < deadline:  # probing has begun
            assert process.poll() is None, (tmp_path / "kamailio.log").read_text()
            time.sleep(0.2)
        assert healthy.options > 0, "no OPTIONS probe reached the node"
        answers = [invite(port, client) for _ in range(2)]
        for answer in answers:
            assert answer.startswith("SIP/2.0 200"), answer
            assert any(f"127.0.0.1:{port}" in rr for rr in headers(answer, "Record-Route"))
        # Round-robin sent one of the two INVITEs to the busy node first.
        assert len(busy.invites) >= 1 and len(healthy.invites) == 2
        forwarded = healthy.invites[0]
        assert headers(forwarded, "X-Auth-Token") == ["passed-through"]
        assert any(f"127.0.0.1:{port}" in rr for rr in headers(forwarded, "Record-Route"))
    finally:
        client.close()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        busy.close()
        healthy.close()
