"""The measuring tools of bench/capacity.py: the process tree it sums, the SRTP and codec
packets its C sender replays (real processes, real loopback sockets, real decryption, real
encoders) and its tone check of a codec's WAV."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest

from srs.codecs import ffmpeg
from srs.rtp.srtp import SUITES

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import codec_media  # noqa: E402
from capacity import tone_peak_hz, tone_problem  # noqa: E402
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


def _codec(name: str) -> codec_media.BenchCodec:
    codec = codec_media.CODECS[name.lower()]
    reason = codec_media.unavailable(codec)
    if reason is not None:
        pytest.skip(reason)
    return codec


def test_a_codec_replay_sends_the_encoders_payloads_plain(sender: Path, tmp_path: Path) -> None:
    codec = _codec("G722")
    media = codec_media.media(codec, 30)
    assert len(media.payloads) == 30 and {len(p) for p in media.payloads} == {160}
    replay = tmp_path / "g722.replay"
    write_replay(replay, [None], ticks=30, suite=None, media=media)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        subprocess.run([str(sender), "10", "--replay", str(replay)],
                       input=f"127.0.0.1 {sock.getsockname()[1]}\n", capture_output=True,
                       text=True, check=True, timeout=30)
        got = receive(sock, 30)
    # PT 9, timestamps on the 8 kHz clock (160 a packet), no SRTP padding.
    assert got == [rtp(t, 0, media.payloads[t], 9, 160) for t in range(30)]
    with pytest.raises(ValueError, match="plain RTP"):
        write_replay(replay, [bytes(30)], ticks=1, suite=None, media=media)


def test_the_tone_check_counts_a_lossy_codecs_tone_in_blocks() -> None:
    codec = _codec("G722")
    decoder = ffmpeg.new_decoder("g722", 16000, {})
    pcm = [decoder.decode(p) for p in codec_media.media(codec, 100).payloads]
    samples = np.concatenate([np.zeros(1600, np.int16), *pcm])  # 0.1 s of silence, 2 s of tone
    assert tone_problem(samples, 16000, codec, 100, 100) is None
    peak, share = tone_peak_hz(samples, 16000)
    assert peak == pytest.approx(1000, abs=2) and share > 0.9
    # Read at the wrong rate the same WAV has twice the tone (and half the frequency).
    assert tone_problem(samples, 8000, codec, 100, 100) == "more tone than sent: 200 tone blocks"
    assert tone_peak_hz(samples, 8000)[0] == pytest.approx(500, abs=2)
    holed = samples.copy()
    holed[16000:16000 + 10 * 320] = 0  # 10 packets' worth cut out
    problem = tone_problem(holed, 16000, codec, 100, 100)
    assert problem is not None and problem.startswith("received audio missing from WAV: 9")
    assert tone_problem(holed, 16000, codec, 90, 100) is not None  # 90 received: still short
    assert tone_problem(samples[:-30 * 320], 16000, codec, 70, 100) == (
        "sent audio missing (loss): 70 tone blocks")


def test_the_tone_check_of_g711_is_exact() -> None:
    codec = codec_media.CODECS["pcma"]
    from srs.codecs.g711 import pcma_decode

    samples = np.concatenate([pcma_decode(p) for p in codec_media.media(codec, 8).payloads] * 5)
    assert tone_problem(samples, 8000, codec, 40, 40) is None
    one_less = samples.copy()
    one_less[np.flatnonzero(np.abs(samples) > 1000)[0]] = 0
    assert tone_problem(one_less, 8000, codec, 40, 40) == (
        "received audio missing from WAV: 4799 tone samples for 40 packets")
