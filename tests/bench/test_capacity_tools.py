"""The measuring tools of bench/capacity.py: the process tree it sums, and the SRTP packets
its C sender replays (real processes, real loopback sockets, real decryption)."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pylibsrtp
import pytest

from srs.rtp.srtp import SUITES

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from proctree import TreeWindow, memory_kb  # noqa: E402
from srtp_replay import SUITE, rtp, tone_payloads, write_replay  # noqa: E402

# A parent that starts a CPU-burning child, and when it ends starts another (a restart);
# then it says so and stays alive until its stdin closes, so the test can read its memory
# while it is certainly running.
PARENT = """
import subprocess, sys
burn = [sys.executable, "-c", "import time\\nt = time.process_time()\\n"
        "while time.process_time() - t < 0.6: pass"]
subprocess.run(burn)
subprocess.run(burn)
print("done", flush=True)
sys.stdin.read()
"""


def test_tree_window_counts_children_and_a_restarted_one() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdin is not None and parent.stdout is not None
    window = TreeWindow(parent.pid)
    window.start()
    seen_two = False
    try:
        while not select.select([parent.stdout], [], [], 0.05)[0]:
            window.sample()
            seen_two = seen_two or window.processes() == 2
        window.sample()
        assert parent.stdout.readline() == "done\n"
        # Both children have ended; the parent waits on its stdin, alive.
        memory = memory_kb(parent.pid)
        assert memory["rss_kb"] > 0 and memory["processes"] == 1
    finally:
        parent.stdin.close()
        parent.wait(timeout=10)
    assert seen_two
    children = [row for row in window.rows(1.0) if row["ppid"] == parent.pid]
    assert len(children) == 2 and all(row["born_in_window"] for row in children)
    assert all(row["ended_in_window"] for row in children)
    # Each burnt 0.6 s; a sample every 50 ms misses at most the last one of each.
    assert all(row["cpu_s"] >= 0.4 for row in children)
    assert window.cpu_s() >= sum(row["cpu_s"] for row in children)


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc")
    binary = tmp_path_factory.mktemp("sender") / "rtp_sender"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(BENCH / "rtp_sender.c"), "-lm"],
                   check=True, capture_output=True)
    return binary


def receive(sock: socket.socket, count: int) -> list[bytes]:
    sock.settimeout(5)
    return [sock.recv(2048) for _ in range(count)]


def test_the_default_sender_sends_what_the_replay_file_protects(sender: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        out = subprocess.run([str(sender), "0.1"], input=f"127.0.0.1 {port}\n",
                             capture_output=True, text=True, check=True).stdout
        assert '"wall_s"' in out and '"late_max_s"' in out
        got = receive(sock, 5)
    assert got == [rtp(tick, 0, tone_payloads()[tick % 8]) for tick in range(5)]


def test_replayed_srtp_decrypts_with_the_offered_keys(sender: Path, tmp_path: Path) -> None:
    keys = [os.urandom(SUITES[SUITE].key_salt_bytes) for _ in range(2)]
    replay = tmp_path / "srtp.replay"
    write_replay(replay, keys, ticks=20)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in keys]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        destinations = "".join(f"127.0.0.1 {s.getsockname()[1]}\n" for s in socks)
        # Asked for 10 s, it stops when the file's 20 ticks are sent.
        out = subprocess.run([str(sender), "10", "--replay", str(replay)], input=destinations,
                             capture_output=True, text=True, check=True, timeout=30).stdout
        assert '"sent": 40' in out
        for stream, (sock, key) in enumerate(zip(socks, keys, strict=True)):
            session = pylibsrtp.Session(pylibsrtp.Policy(
                key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=SUITES[SUITE].profile))
            packets = receive(sock, 20)
            assert all(len(p) == 12 + 160 + 10 for p in packets)
            assert [session.unprotect(p) for p in packets] == [
                rtp(tick, stream, tone_payloads()[tick % 8]) for tick in range(20)]
    finally:
        for sock in socks:
            sock.close()


def test_replay_refuses_a_file_for_other_destinations(sender: Path, tmp_path: Path) -> None:
    replay = tmp_path / "plain.replay"
    write_replay(replay, [None, None], ticks=3)
    result = subprocess.run([str(sender), "1", "--replay", str(replay)],
                            input="127.0.0.1 9\n", capture_output=True, text=True)
    assert result.returncode == 2 and "2 streams, 1 destinations" in result.stderr
