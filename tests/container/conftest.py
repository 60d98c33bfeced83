"""Fixtures for the container tests: srs's image built with podman, and running copies.

* ``podman`` -- (module) a :class:`~tests.container.podman.Podman` whose storage, state and
  logs live in one work directory; every container and image in it is removed at teardown;
* ``srs_image`` -- (module) the image built from the repository's Dockerfile on a Debian
  base made with debootstrap (cached between runs, see ``podman.cache_dir``);
* ``srs_container`` -- a started container of that image with host networking, on free
  ports, recordings and state bind-mounted from the test's directory.

The tests need root (rootful podman; CI runs as root) and run in ``make test``.  Set
``SRS_SKIP_CONTAINER=1`` to skip them on a machine where the two minutes they take from
cold (one from warm) are not wanted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.container.podman import (
    Podman,
    base_rootfs_tarball,
    cache_dir,
    debian_mirror,
    host_pip_config,
    mounts_below,
    pip_build_args,
)
from tests.e2e.conftest import free_udp_tcp_port, pick_rtp_range

ROOT = Path(__file__).resolve().parents[2]
SKIP_ENV = "SRS_SKIP_CONTAINER"
IMAGE = "localhost/srs-test:latest"
SRS_UID = 999
READY_TIMEOUT_S = 30.0
PODMAN_STATE = Path("/var/lib/containers")  # where podman keeps its blob-info cache as root
REQUIRED_TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"container: builds and runs srs's image with podman (skip: {SKIP_ENV}=1)")


def _require_container_tools() -> None:
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        pytest.skip(f"{SKIP_ENV} is set")
    if os.geteuid() != 0:
        pytest.skip("the container tests run rootful podman and need root (CI runs as root)")
    missing = [package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        # As root, scripts/install-test-deps.sh installs them: missing means it failed.
        pytest.fail(f"not installed: {' '.join(missing)} (scripts/install-test-deps.sh)")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    _require_container_tools()
    work = tmp_path_factory.mktemp("container")
    had_podman_state = PODMAN_STATE.exists()
    engine = Podman(work)
    try:
        yield engine
    finally:
        engine.remove_all()
        left = mounts_below(work)
        assert not left, f"still mounted after cleanup: {left}"
        shutil.rmtree(work / "storage", ignore_errors=True)
        shutil.rmtree(work / "run", ignore_errors=True)
        if not had_podman_state:
            shutil.rmtree(PODMAN_STATE, ignore_errors=True)


@pytest.fixture(scope="module")
def srs_image(podman: Podman) -> str:
    started = time.monotonic()
    tarball = base_rootfs_tarball(cache_dir(), debian_mirror(), log=podman.work / "debootstrap.log")
    podman.import_base(tarball)
    podman.build(ROOT, IMAGE, pip_build_args(host_pip_config()))
    with (podman.work / "timings.txt").open("a") as out:
        out.write(f"base and image: {time.monotonic() - started:.1f} s\n")
    return IMAGE


@dataclass
class SrsContainer:
    """One ``srs serve`` container; ``root`` holds its mounted recordings and state."""

    podman: Podman
    name: str
    root: Path
    sip_port: int
    management_port: int
    token: str

    @property
    def recordings(self) -> Path:
        return self.root / "recordings"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def session_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.recordings.glob("*/*/*/*/session.json"))

    def logs(self) -> str:
        result = self.podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self) -> dict[str, Any]:
        return self.podman.inspect("container", self.name)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """One run of the image's HEALTHCHECK (no systemd timers run it here)."""
        return self.podman("healthcheck", "run", self.name, check=False, timeout_s=60)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if '"event": "listening"' in self.logs():
                return
            if not self.inspect()["State"]["Running"]:
                break
            time.sleep(0.2)
        raise AssertionError(f"srs did not start in the container:\n{self.logs()}")


@pytest.fixture
def srs_container(podman: Podman, srs_image: str, tmp_path: Path) -> Iterator[SrsContainer]:
    root = tmp_path / "srs"
    for sub in ("recordings", "state"):
        (root / sub).mkdir(parents=True)
        os.chown(root / sub, SRS_UID, SRS_UID)  # the image's non-root user writes there
    rtp_min, rtp_max = pick_rtp_range()
    # Probes (a race): the image is driven by SRS_*_PORT as a deployment would be; with
    # sip.ephemeral_ports the ports would come from the listening event in `podman logs`.
    container = SrsContainer(podman, f"srs-test-{secrets.token_hex(4)}", root,
                             free_udp_tcp_port(), free_udp_tcp_port(), secrets.token_urlsafe(18))
    env = {
        "SRS_SIP_HOST": "127.0.0.1",
        "SRS_SIP_PORT": container.sip_port,
        "SRS_SIP_TLS_PORT": free_udp_tcp_port(),
        "SRS_MEDIA_HOST": "127.0.0.1",
        "SRS_MEDIA_ADVERTISED_ADDRESS": "127.0.0.1",
        "SRS_MEDIA_PORT_MIN": rtp_min,
        "SRS_MEDIA_PORT_MAX": rtp_max,
        "SRS_AUTH_TOKENS": container.token,
        "SRS_MANAGEMENT_PORT": container.management_port,
        # CI machines may have little disk; the storage guard has its own tests.
        "SRS_RECORDINGS_MIN_FREE_MB": 0,
    }
    args = ["run", "--detach", "--name", container.name, "--network", "host",
            "--volume", f"{container.recordings}:/var/lib/srs/recordings",
            "--volume", f"{container.state}:/var/lib/srs/state"]
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    try:
        podman(*args, srs_image)
        container.wait_listening()
        yield container
    finally:
        (root / "container.log").write_text(container.logs())
        podman("rm", "--force", "--time", "0", container.name, check=False)
