"""`srs serve` as a process: start-up errors name the problem; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import rtp_range, wait_for_event
from tests.sipclient import Call, SipClient


def serve(
    tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    path = tmp_path / "srs.toml"
    path.write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "srs", "serve", "--config", str(path), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )


def config(tmp_path: Path, sip_port: int | None = None, extra: str = "") -> str:
    """Without ``sip_port``, UDP and TCP on a port the system chooses (see the ``listening``
    event)."""
    low, high = rtp_range()
    port = "ephemeral_ports = true" if sip_port is None else f"port = {sip_port}"
    return (f'[sip]\nhost = "127.0.0.1"\n{port}\ntls_port = 0\n'
            f'[media]\nhost = "127.0.0.1"\nport_min = {low}\nport_max = {high}\n'
            f'[recordings]\ndir = "{tmp_path / "rec"}"\nmin_free_mb = 0\n'
            f'[management]\nport = 0\n[server]\nstate_dir = "{tmp_path / "state"}"\n'
            f"{extra}")


def finish(process: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, out, err


def test_bad_setting_exits_2_naming_the_key(tmp_path: Path) -> None:
    code, _, err = finish(serve(tmp_path, config(tmp_path), env={"SRS_MEDIA_PORT_MIN": "ten"}))
    assert code == 2
    assert err.strip() == "srs: configuration error: SRS_MEDIA_PORT_MIN: must be an integer: 'ten'"


def test_busy_port_exits_2_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        code, _, err = finish(serve(tmp_path, config(tmp_path, taken.getsockname()[1])))
    assert code == 2
    assert "srs: cannot start: sip.port: cannot listen on 127.0.0.1 port" in err
    assert "Address already in use" in err


def test_unusable_recordings_dir_exits_2(tmp_path: Path) -> None:
    (tmp_path / "rec").write_text("a file, not a directory")
    code, _, err = finish(serve(tmp_path, config(tmp_path)))
    assert code == 2
    assert "srs: cannot start: recordings.dir: cannot use" in err


def wait_ready(port: int) -> SipClient:
    client = SipClient("127.0.0.1", port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.request("OPTIONS", Call(f"ready-{time.monotonic()}", "x"), auth=False)
            if client.final(timeout=0.5).status == 200:
                return client
        except OSError:
            pass
        assert time.monotonic() < deadline, "server did not answer OPTIONS"


def test_first_start_prints_the_generated_token_once_and_sigterm_stops(tmp_path: Path) -> None:
    process = serve(tmp_path, config(tmp_path))
    try:
        listening, early = wait_for_event(process, "listening")
        assert listening["udp"] == listening["tcp"]
        client = wait_ready(listening["udp"])
        token = (tmp_path / "state" / "auth-token").read_text().strip()
        client.token = token
        _, response = client.invite()
        assert response.status == 200
        client.close()
        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process)
        out = early + out
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 0
    assert err.count(token) == 1 and f"X-Auth-Token: {token}" in err
    assert token not in out  # the log never carries it
    assert '"event": "session_finished"' in out and '"end_reason": "shutdown"' in out
    # A second start reuses the stored token and does not print it.
    again = serve(tmp_path, config(tmp_path))
    try:
        listening, early = wait_for_event(again, "listening")
        wait_ready(listening["udp"]).close()
        again.send_signal(signal.SIGTERM)
        code, out, err = finish(again)
        out = early + out
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)
    assert code == 0 and token not in err and token not in out
    assert (tmp_path / "state" / "auth-token").read_text().strip() == token


def test_kubernetes_service_links_are_ignored_with_a_debug_event(tmp_path: Path) -> None:
    """The variables a kubelet injects for a Service "srs-0" would otherwise stop srs."""
    links = {"SRS_0_SERVICE_HOST": "10.96.0.2", "SRS_0_SERVICE_PORT": "5060",
             "SRS_0_PORT": "udp://10.96.0.2:5060", "SRS_0_PORT_5060_UDP_ADDR": "10.96.0.2"}
    process = serve(tmp_path, config(tmp_path), env={**links, "SRS_LOG_LEVEL": "debug",
                                                     "SRS_LOG_FORMAT": "json"})
    try:
        ignored, _ = wait_for_event(process, "environment_ignored")
        assert ignored["names"] == sorted(links) and ignored["level"] == "debug"
        wait_for_event(process, "listening")
        process.send_signal(signal.SIGTERM)
        code, _, err = finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 0, err
