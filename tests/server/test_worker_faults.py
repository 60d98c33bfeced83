"""Media workers killed at awkward moments: during a shutdown, during a set-up.

Real worker processes, real sockets on loopback; the session directories they leave are
read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from srs.server import control as c
from srs.server.pool import HUNG_AFTER_S, HUNG_KILL_S, WorkerPool
from srs.sip.message import SipRequest
from tests.conftest import TOKEN, RunningServer, start_server
from tests.sipclient import SipClient, send_tones


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def statuses(server: RunningServer) -> dict[str, str]:
    docs = [json.loads((d / "session.json").read_text()) for d in server.sessions()]
    return {doc["call_id"]: doc["status"] for doc in docs}


def test_a_worker_killed_during_shutdown_has_its_calls_ended_and_repaired(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    clients = [SipClient("127.0.0.1", server.sip_port, token=TOKEN) for _ in range(2)]
    victim_pid = None
    try:
        calls = []
        for client in clients:
            call, answer = client.invite()
            assert answer.status == 200
            calls.append(call)
        [victim] = [w for w in pool.workers
                    if any(s.call_id == calls[0].call_id for s in w.sessions.values())]
        victim_pid = victim.pid
        assert victim_pid is not None
        send_tones(calls[0].ports + calls[1].ports, (440.0, 1000.0, 440.0, 1000.0), 25)
        # The victim hangs (it never reads its Shutdown) and is killed while the
        # signalling process waits for it to drain.
        os.kill(victim_pid, signal.SIGSTOP)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        wait_until(lambda: victim.state == "stopping")
        os.kill(victim_pid, signal.SIGKILL)
        stopper.join(timeout=40)
        assert not stopper.is_alive()
        # Both recording clients hear a BYE (RFC 3261 §15.1.1): the drained worker's
        # and the killed worker's.
        for client, call in zip(clients, calls, strict=True):
            bye = client.receive(timeout=5)
            assert isinstance(bye, SipRequest) and bye.method == "BYE", call.call_id
            assert bye.call_id == call.call_id
        # No directory is left "recording": the killed worker's is repaired.
        found = statuses(server)
        assert found[calls[1].call_id] == "complete"
        assert found[calls[0].call_id] == "interrupted"
    finally:
        if victim_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim_pid, signal.SIGKILL)
        server.stop()
        for client in clients:
            client.close()


def dead(pid: int) -> bool:
    """The process has exited (a zombie its parent has not reaped yet counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_a_worker_killed_while_its_answer_is_in_flight_leaves_no_recording_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    handle = pool._handle

    def kill_on_answer(w, message):
        # The worker dies just after it asked for the 200: the signalling process
        # answers, and learns of the death only then.
        if isinstance(message, c.AnswerRequest) and w.sessions.get(message.token):
            assert w.pid is not None
            os.kill(w.pid, signal.SIGKILL)
            wait_until(lambda: dead(w.pid), timeout=5)
        handle(w, message)

    monkeypatch.setattr(pool, "_handle", kill_on_answer)
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        call, answer = client.invite()
        assert answer.status == 200
        monkeypatch.setattr(pool, "_handle", handle)
        bye = client.receive(timeout=10)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.call_id == call.call_id
        wait_until(lambda: pool.ready_workers == 2)
        # The directory the worker made before its answer is repaired, not left
        # "recording" until the next start.
        wait_until(lambda: statuses(server).get(call.call_id) == "interrupted", timeout=10)
        assert pool.active == 0
    finally:
        client.close()
        server.stop()


def test_a_call_lost_with_its_worker_is_no_longer_counted_active(tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        call, answer = client.invite()
        assert answer.status == 200
        send_tones(call.ports, (440.0, 1000.0), 10)
        [victim] = [w for w in pool.workers if w.sessions]
        assert victim.pid is not None
        wait_until(lambda: "srs_sessions_active 1.0"
                   in server.app.metrics.exposition().decode(), timeout=5)
        os.kill(victim.pid, signal.SIGKILL)
        bye = client.receive(timeout=10)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        wait_until(lambda: statuses(server).get(call.call_id) == "interrupted", timeout=10)
        exposition = server.app.metrics.exposition().decode()
        assert "srs_sessions_active 0.0" in exposition
        assert 'srs_sessions_finished_total{status="interrupted"} 1.0' in exposition
        assert pool.active == 0
    finally:
        client.close()
        server.stop()


def test_a_worker_killed_while_it_finishes_a_call_leaves_it_repaired_and_uncounted(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        call, answer = client.invite()
        assert answer.status == 200
        send_tones(call.ports, (440.0, 1000.0), 10)
        [victim] = [w for w in pool.workers if w.sessions]
        assert victim.pid is not None
        wait_until(lambda: "srs_sessions_active 1.0"
                   in server.app.metrics.exposition().decode(), timeout=5)
        # The BYE reaches a worker that cannot finish (stopped), which is then killed.
        os.kill(victim.pid, signal.SIGSTOP)
        assert client.bye(call).status == 200
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: statuses(server).get(call.call_id) == "interrupted", timeout=10)
        wait_until(lambda: pool.ready_workers == 2)
        exposition = server.app.metrics.exposition().decode()
        assert "srs_sessions_active 0.0" in exposition
        assert pool.active == 0
        with pytest.raises(TimeoutError):
            client.receive(timeout=0.5)  # the call had ended: no second BYE
    finally:
        client.close()
        server.stop()


def test_a_hung_worker_takes_no_new_calls(tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    hung = pool.workers[0]
    assert hung.pid is not None
    os.kill(hung.pid, signal.SIGSTOP)  # alive, its channel open, but silent
    clients = [SipClient("127.0.0.1", server.sip_port, token=TOKEN) for _ in range(2)]
    try:
        time.sleep(HUNG_AFTER_S + 1.5)
        for client in clients:
            call, answer = client.invite()
            assert answer.status == 200
            assert client.bye(call).status == 200
        assert not hung.sessions
    finally:
        os.kill(hung.pid, signal.SIGCONT)
        for client in clients:
            client.close()
        server.stop()


def test_a_hung_worker_is_killed_its_call_ended_and_repaired(tmp_path: Path) -> None:
    server = start_server(tmp_path, media={"workers": 2})
    pool = server.app.sessions
    assert isinstance(pool, WorkerPool)
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    hung_pid = None
    try:
        call, answer = client.invite()
        assert answer.status == 200
        send_tones(call.ports, (440.0, 1000.0), 25)
        [hung] = [w for w in pool.workers if w.sessions]
        hung_pid = hung.pid
        assert hung_pid is not None
        time.sleep(1.5)  # a tick has written the tones
        os.kill(hung_pid, signal.SIGSTOP)  # alive, its channel open, but silent
        bye = client.receive(timeout=HUNG_KILL_S + 5)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.call_id == call.call_id
        wait_until(lambda: statuses(server).get(call.call_id) == "interrupted", timeout=10)
        assert dead(hung_pid)
        wait_until(lambda: pool.ready_workers == 2)
        assert server.wait_event("media_worker_hung", worker=hung.index)
    finally:
        if hung_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung_pid, signal.SIGKILL)
        client.close()
        server.stop()
