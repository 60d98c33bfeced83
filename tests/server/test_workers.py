"""Media workers (media.workers = 2): a worker killed mid-call, and the calls after it.

Real worker processes, real sockets on loopback, real files checked for their tones.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.server.pool import WorkerPool, port_slices
from srs.sip.message import SipRequest
from tests.conftest import TOKEN, RunningServer, start_server
from tests.sipclient import Call, SipClient, send_tones

RATE_HZ = 8000
PACKET_S = 0.02


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE_HZ / len(samples))


def tone_samples(samples: np.ndarray) -> int:
    """Samples of the recording that carry the tone (the rest is silence)."""
    return int(np.count_nonzero(np.abs(samples) > 1000))


def tone_span_s(samples: np.ndarray) -> float:
    """From the first to the last sample of the tone, in seconds."""
    loud = np.flatnonzero(np.abs(samples) > 1000)
    return float(loud[-1] + 1 - loud[0]) / RATE_HZ if len(loud) else 0.0


def sidecar_of(server: RunningServer, call: Call, status: str,
               timeout: float = 20.0) -> tuple[Path, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for directory in server.sessions():
            doc = json.loads((directory / "session.json").read_text())
            if doc["call_id"] == call.call_id and doc["status"] == status:
                return directory, doc
        time.sleep(0.1)
    raise AssertionError(f"no {status} session for {call.call_id}; log:\n{server.log()}")


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def record_call(server: RunningServer, freqs: tuple[float, float], packets: int) -> Path:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        call, answer = client.invite()
        assert answer.status == 200, answer
        send_tones(call.ports, freqs, packets)
        assert client.bye(call).status == 200
    finally:
        client.close()
    directory, doc = sidecar_of(server, call, "complete")
    assert [s["packets"]["received"] for s in doc["streams"]] == [packets, packets]
    for label, freq in zip(("inbound", "outbound"), freqs, strict=True):
        samples, _ = sf.read(directory / f"{label}.wav", dtype="int16")
        assert dominant_hz(samples) == pytest.approx(freq, abs=2)
        assert tone_samples(samples) >= packets * 115  # every packet's tone is in the file
    return directory


def test_the_port_range_is_split_into_one_slice_per_worker() -> None:
    assert port_slices(10000, 20000, 2) == [(10000, 14999), (15000, 20000)]
    assert port_slices(10000, 10011, 3) == [(10000, 10003), (10004, 10007), (10008, 10011)]


def test_a_killed_worker_is_repaired_restarted_and_spares_the_other_calls(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    try:
        pool = server.app.sessions
        assert isinstance(pool, WorkerPool)
        assert pool.ready_workers == 2
        # Two calls: the pool gives each to the worker with fewer sessions.
        victim_client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
        other_client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
        victim_call, answer = victim_client.invite()
        assert answer.status == 200
        other_call, answer = other_client.invite()
        assert answer.status == 200
        [victim] = [w for w in pool.workers
                    if any(s.call_id == victim_call.call_id for s in w.sessions.values())]
        [survivor] = [w for w in pool.workers if w is not victim]
        assert len(survivor.sessions) == len(victim.sessions) == 1
        assert victim.pid is not None
        victim_pid = victim.pid

        # 4 s of tones on both calls from one sender; SIGKILL to the victim's worker
        # after 3 s, while the other call carries on.
        sent, total = 150, 200
        sender = threading.Thread(target=send_tones, args=(
            victim_call.ports + other_call.ports, (440.0, 1000.0, 440.0, 1000.0), total))
        sender.start()
        time.sleep(sent * PACKET_S)
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sender.join()

        # The recording client hears a BYE for the lost session (RFC 3261 §15.1.1).
        bye = victim_client.receive(timeout=10)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.call_id == victim_call.call_id

        # What the worker wrote is kept: the session is repaired as interrupted, and
        # its files hold the tones up to about a second before the kill.
        directory, doc = sidecar_of(server, victim_call, "interrupted")
        assert doc["end_reason"] == "crash"
        for label, freq in (("inbound", 440.0), ("outbound", 1000.0)):
            samples, rate = sf.read(directory / f"{label}.wav", dtype="int16")
            assert rate == RATE_HZ
            assert dominant_hz(samples) == pytest.approx(freq, abs=2)
            lost_s = sent * PACKET_S - tone_span_s(samples)
            assert lost_s <= 1.5, f"{label}: {lost_s:.2f} s of audio lost"
        assert (directory / "mix.wav").exists()

        # The other worker's call never noticed.
        assert other_client.bye(other_call).status == 200
        _, other = sidecar_of(server, other_call, "complete")
        assert [s["packets"]["received"] for s in other["streams"]] == [total] * 2
        assert [s["packets"]["lost"] for s in other["streams"]] == [0, 0]

        # The worker is started again, the metrics say so, and new calls record.
        wait_until(lambda: pool.ready_workers == 2)
        assert victim.pid != victim_pid
        restarted = server.wait_event("media_worker_restarted", worker=victim.index)
        died = server.wait_event("media_worker_died", worker=victim.index)
        assert died["sessions"] == 1 and died["exit_code"] == -signal.SIGKILL
        exposition = server.app.metrics.exposition().decode()
        assert "srs_media_worker_restarts_total 1.0" in exposition
        assert 'srs_media_workers{state="ready"} 2.0' in exposition
        assert restarted["pid"] == victim.pid
        assert time.monotonic() - killed_at < 20
        for freqs in ((500.0, 1500.0), (600.0, 1200.0)):  # one lands on each worker
            record_call(server, freqs, 50)
    finally:
        server.stop()


def test_shutdown_drains_every_worker_and_leaves_no_process(tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    pids = [w.pid for w in pool.workers]
    clients = [SipClient("127.0.0.1", server.sip_port, token=TOKEN) for _ in range(2)]
    try:
        calls = []
        for client in clients:
            call, answer = client.invite()
            assert answer.status == 200
            calls.append(call)
        assert all(w.sessions for w in pool.workers)  # one call on each worker
        send_tones(calls[0].ports + calls[1].ports, (440.0, 1000.0, 440.0, 1000.0), 50)
        server.stop()  # what SIGTERM does: drain, then exit
        for client, call in zip(clients, calls, strict=True):
            bye = client.receive(timeout=5)
            assert isinstance(bye, SipRequest) and bye.method == "BYE"
            directory, doc = sidecar_of(server, call, "complete")
            assert doc["end_reason"] == "shutdown"
            samples, _ = sf.read(directory / "outbound.wav", dtype="int16")
            assert tone_samples(samples) >= 50 * 115
    finally:
        server.stop()
        for client in clients:
            client.close()
    for pid in pids:
        assert pid is not None
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=10)
