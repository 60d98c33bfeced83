"""srs's image, built from the Dockerfile and run: the contract, a recorded call, the
HEALTHCHECK, and SIGTERM to srs as PID 1 with a call in progress.

The image is built once per module on a Debian base made with debootstrap (see
conftest.py); each test starts its own container with host networking on free ports and
places calls with ``srs call`` from the host's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.container.conftest import SRS_UID, SrsContainer
from tests.container.podman import Podman
from tests.e2e.audio import dominant_frequency
from tests.e2e.conftest import kill_group, read_sidecar, start_process

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

RATE_HZ = 8000
STOP_TIMEOUT_S = 30  # podman stop's grace before SIGKILL (exit 137)


def srs_call(container: SrsContainer, *args: str) -> list[str]:
    # --token=: a generated token may start with "-"
    return [sys.executable, "-m", "srs", "call", f"sip:127.0.0.1:{container.sip_port}",
            f"--token={container.token}", *args]


def only_session(container: SrsContainer) -> tuple[Path, dict[str, Any]]:
    (directory,) = container.session_dirs()
    sidecar = read_sidecar(directory)
    assert sidecar is not None
    return directory, sidecar


def assert_tone(path: Path, freq_hz: float, *, seconds: float | None = None,
                at_least_s: float = 0.0) -> None:
    samples, rate = sf.read(path, dtype="int16")
    assert rate == RATE_HZ
    if seconds is not None:
        # The track spans the session's wall time: a sender slowed by a loaded machine
        # stretches it (never shortens it), so only the lower bound is tight.
        assert seconds * RATE_HZ * 0.9 <= len(samples) <= seconds * RATE_HZ * 1.5
    assert len(samples) >= at_least_s * RATE_HZ
    assert np.abs(samples).max() > 10000, f"{path.name} is silent"
    assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq_hz, abs=5)


def test_image_keeps_its_contract(podman: Podman, srs_image: str) -> None:
    image = podman.inspect("image", srs_image)
    config = image["Config"]
    assert config["User"] == "srs" and config["Entrypoint"] == ["srs", "serve"]
    assert set(config["Volumes"]) == {"/var/lib/srs/recordings", "/var/lib/srs/state"}
    assert set(config["ExposedPorts"]) == {"5060/udp", "5060/tcp", "5061/tcp", "10000-20000/udp"}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["SRS_RECORDINGS_DIR"] == "/var/lib/srs/recordings"
    assert env["SRS_SERVER_STATE_DIR"] == "/var/lib/srs/state"
    # Kept only in the docker format: an OCI image would have lost it.
    healthcheck = image["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD" and "/healthz" in healthcheck[-1]
    # The runtime stage has the venv but no compiler, pip cache or build context.
    ids = podman("run", "--rm", "--network", "host", "--entrypoint", "sh", srs_image, "-c",
                 "id -u; id -g; ls /src 2>&1; command -v gcc || echo no-gcc").stdout.split("\n")
    assert ids[:2] == [str(SRS_UID), str(SRS_UID)]
    assert "No such file" in ids[2] and ids[3] == "no-gcc"


def test_call_is_recorded_on_the_volume_and_the_healthcheck_follows_the_loop(
    srs_container: SrsContainer,
) -> None:
    assert srs_container.healthcheck().returncode == 0, srs_container.logs()
    assert srs_container.inspect()["State"]["Health"]["Status"] == "healthy"

    call = subprocess.run(srs_call(srs_container, "--duration", "2"), check=False,
                          capture_output=True, text=True, timeout=60)
    assert call.returncode == 0, call.stdout + call.stderr
    assert "call 1: BYE -> 200 OK" in call.stdout

    directory, sidecar = only_session(srs_container)
    assert sidecar["status"] == "complete" and sidecar["end_reason"] == "bye"
    assert [s["packets"]["received"] for s in sidecar["streams"]] == [100, 100]
    assert_tone(directory / "inbound.wav", 440, seconds=2)
    assert_tone(directory / "outbound.wav", 1000, seconds=2)
    for path in [directory, *directory.iterdir()]:
        stat = path.stat()
        assert (stat.st_uid, stat.st_gid) == (SRS_UID, SRS_UID), path
    assert (srs_container.state / "tls" / "cert.pem").stat().st_uid == SRS_UID

    # A stopped event loop cannot answer /healthz: the check times out and fails...
    srs_container.podman("kill", "--signal", "STOP", srs_container.name)
    try:
        stopped = srs_container.healthcheck()
    finally:
        srs_container.podman("kill", "--signal", "CONT", srs_container.name)
    assert stopped.returncode != 0 and "unhealthy" in stopped.stdout + stopped.stderr
    # ... and passes again once it runs.
    assert srs_container.healthcheck().returncode == 0


def test_sigterm_to_pid_1_finalises_the_call_in_progress(
    srs_container: SrsContainer, tmp_path: Path
) -> None:
    top = srs_container.podman("top", srs_container.name, "pid", "args").stdout
    assert any(line.split()[:1] == ["1"] and "srs serve" in line for line in top.splitlines()), top

    log = tmp_path / "call.log"
    client = start_process(srs_call(srs_container, "--duration", "60"), log_path=log)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not srs_container.session_dirs():
            time.sleep(0.1)
        time.sleep(1.5)  # some media on disk before the stop
        started = time.monotonic()
        srs_container.podman("stop", "--time", str(STOP_TIMEOUT_S), srs_container.name,
                             timeout_s=STOP_TIMEOUT_S + 30)
        stop_s = time.monotonic() - started
        client_code = client.wait(timeout=30)
    finally:
        kill_group(client)
    state = srs_container.inspect()["State"]
    # 137 would be podman's SIGKILL after the grace period: srs ignored SIGTERM.
    assert state["ExitCode"] == 0, (state, srs_container.logs())
    assert stop_s < STOP_TIMEOUT_S

    directory, sidecar = only_session(srs_container)
    assert sidecar["status"] == "complete" and sidecar["end_reason"] == "shutdown"
    received = [s["packets"]["received"] for s in sidecar["streams"]]
    assert all(n >= 25 for n in received), received
    # Every packet received is in the track (20 ms each); how long the track is beyond
    # that depends on how fast the stop was.
    assert_tone(directory / "inbound.wav", 440, at_least_s=0.9 * received[0] / 50)
    assert_tone(directory / "outbound.wav", 1000, at_least_s=0.9 * received[1] / 50)
    assert json.loads((directory / "session.json").read_text())["mix"] is not None

    # The client got srs's BYE: the call it placed ended early, as a failure.
    text = log.read_text()
    assert client_code == 1 and "the server ended the call with a BYE" in text, text
    events = [json.loads(line) for line in srs_container.logs().splitlines()
              if line.startswith("{")]
    assert [e["event"] for e in events][-1] == "stopped"
    assert "Traceback" not in srs_container.logs()
    assert os.stat(directory / "session.json").st_uid == SRS_UID
