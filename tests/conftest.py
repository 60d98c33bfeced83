"""Shared fixtures: an srs server running in-process on loopback, on ports it chose."""

from __future__ import annotations

import asyncio
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from srs.config import Settings, load_settings
from srs.log import configure_logging
from srs.server.app import Application
from srs.server.tls import ensure_self_signed, server_context

TOKEN = "test-token-1234"
# media.workers of the servers the tests start: SRS_MEDIA_WORKERS, else the
# default (one per usable CPU).  `make test` runs the server tests with 1 and with 2.
MEDIA_WORKERS = int(os.environ.get("SRS_MEDIA_WORKERS", "0"))


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 (SIP uses the same number for both).

    A probe, and so a race with every other process: only for a peer that must be told
    its number before it starts (a Kamailio command line).  Servers of srs bind port 0
    (``sip.ephemeral_ports``) and report what they got; helper sockets bind 0 directly."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def rtp_range(size: int = 200) -> tuple[int, int]:
    """A random even RTP range below Linux's ephemeral ports (32768-60999), where client
    sockets bound to port 0 would collide with it."""
    base = random.randrange(20000, 32768 - size, 2)
    return base, base + size


def wait_for_event(
    process: subprocess.Popen[str], event: str, timeout_s: float = 15.0
) -> tuple[dict[str, Any], str]:
    """Read the JSON log a subprocess writes to its stdout pipe until ``event`` (such as
    ``listening``, which carries the ports it bound); returns the event and the text read.

    The pipe is read with ``os.read``, past the file object's buffer, so that a later
    ``communicate()`` reads the rest; prepend the text returned to what it gives."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the process closed its stdout: it exited
            data += chunk
            for line in data.decode(errors="replace").splitlines()[: data.count(b"\n")]:
                if line.startswith("{") and json.loads(line).get("event") == event:
                    return json.loads(line), data.decode(errors="replace")
    raise AssertionError(f"no {event!r} event within {timeout_s} s (exit code "
                         f"{process.poll()}); stdout:\n{data.decode(errors='replace')}")


@dataclass
class RunningServer:
    settings: Settings
    app: Application
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stop_event: asyncio.Event
    log_path: Path

    @property
    def sip_port(self) -> int:
        return self.app.transports.udp_port

    @property
    def tcp_port(self) -> int:
        return self.app.transports.tcp_port

    @property
    def tls_port(self) -> int:
        return self.app.transports.bound_tls_port

    @property
    def management_port(self) -> int:
        """0 unless started with ``management={"ephemeral_port": True}`` (or a port)."""
        return self.app.management.port if self.app.management is not None else 0

    @property
    def recordings(self) -> Path:
        return self.settings.recordings.dir

    def sessions(self) -> list[Path]:
        return sorted(p.parent for p in self.recordings.glob("*/*/*/*/session.json"))

    def wait_sidecar(
        self, status: str = "complete", count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            docs = [json.loads((d / "session.json").read_text()) for d in self.sessions()]
            done = [d for d in docs if d["status"] == status]
            if len(done) >= count:
                return done
            time.sleep(0.1)
        raise AssertionError(f"no {count} session(s) with status {status!r}; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def wait_event(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first log event named ``event`` with ``fields``, once the server logged it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.events():
                matches = all(entry.get(k) == v for k, v in fields.items())
                if entry.get("event") == event and matches:
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} event with {fields}; log:\n{self.log()}")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(timeout=30)
            assert not self.thread.is_alive(), "server did not stop"
        # The server's log file is closed now: later code in the test logs to stderr.
        configure_logging("debug", "console", stream=sys.stderr)


def start_server(tmp_path: Path, **sections: dict[str, Any]) -> RunningServer:
    port_min, port_max = rtp_range()
    overrides: dict[str, dict[str, Any]] = {
        "sip": {"host": "127.0.0.1", "ephemeral_ports": True},
        "auth": {"tokens": [TOKEN]},
        "media": {"host": "127.0.0.1", "port_min": port_min, "port_max": port_max,
                  "workers": MEDIA_WORKERS},
        "recordings": {"dir": str(tmp_path / "recordings"), "min_free_mb": 0},
        "management": {"port": 0},
        "server": {"state_dir": str(tmp_path / "state")},
        "log": {"format": "json", "level": "debug"},
    }
    for section, values in sections.items():
        if section == "management":
            overrides[section] = {}  # the caller's section replaces "off" (port 0) whole
        overrides.setdefault(section, {}).update(values)
    settings = load_settings(None, {}, overrides)
    log_path = tmp_path / "server.log"
    log_file = log_path.open("w", buffering=1)
    configure_logging("debug", "json", stream=log_file)
    cert, key, _ = ensure_self_signed(settings.server.state_dir)
    context = server_context(cert, key, settings.tls)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        app = Application(settings, tls_context=context)
        holder.update(app=app, loop=asyncio.get_running_loop(), stop=asyncio.Event())
        try:
            await app.start()
        finally:
            ready.set()
        await holder["stop"].wait()
        await app.shutdown()

    def run() -> None:
        import uvloop

        try:
            uvloop.run(main())
        finally:
            ready.set()
            log_file.close()

    thread = threading.Thread(target=run, name="srs-test-server", daemon=True)
    thread.start()
    assert ready.wait(15), "server did not start"
    assert "app" in holder, f"server failed:\n{log_path.read_text()}"
    assert holder["app"].transports.udp_port, f"server failed:\n{log_path.read_text()}"
    return RunningServer(settings, holder["app"], holder["loop"], thread, holder["stop"], log_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path)
    try:
        yield running
    finally:
        running.stop()
