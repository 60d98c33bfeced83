"""Fixtures for the end-to-end tests: a real ``srs serve`` process and real peers.

* ``free_udp_tcp_port()`` -- a port free for both UDP and TCP on 127.0.0.1 (a probe: for
  peers told their port on the command line; ``srs serve`` binds ports it reports);
* ``rtp_range`` -- ``(port_min, port_max)``: 200 ports at a random even offset, some checked free;
* ``srs_server`` -- a started server (see :class:`SrsServer`: ``stop()`` is SIGTERM and a
  clean exit, ``kill()`` a crash), its process group killed at teardown;
  ``srs_server_factory(**config)`` makes more, or ones with other settings, and
  :class:`ServerPool` does the same for module-scoped fixtures;
* ``tone_wav(freq_hz, seconds)`` -- a mono 16-bit 8 kHz sine WAV;
* ``two_tone_pcap`` -- (once per test session) a pcap of two G.711 µ-law RTP streams sent by
  ffmpeg in real time, 440 Hz to port B and 1000 Hz to port B+2, captured by dumpcap;
* :func:`run_sipp` -- one sipp call from a scenario in ``scenarios/``.

Every process started here runs in its own process group, and the group is killed at
teardown whatever the outcome of the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.e2e.pcap import read_pcap, rtp_payload_type, write_pcap
from tests.e2e.sipwire import sip_options

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
TOOL_PACKAGES = {
    "sipp": "sip-tester",
    "ffmpeg": "ffmpeg",
    "dumpcap": "wireshark-common (with tshark)",
    "editcap": "wireshark-common (with tshark)",
    "tshark": "tshark",
    "sox": "sox",
}


def require_tools(*names: str) -> None:
    """Skip the test, naming the Debian package, when a peer tool is not installed."""
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(
                f"{name} not installed (Debian package {TOOL_PACKAGES.get(name, name)}; "
                "scripts/install-test-deps.sh installs it)"
            )


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (raw sockets); CI runs as root")


# --------------------------------------------------------------------------- processes


def start_process(args: list[str], *, log_path: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a peer in its own process group, stdout and stderr into ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a process group started by :func:`start_process` and reap its leader."""
    if proc.poll() is None or sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait()


# --------------------------------------------------------------------------- ports


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_udp_tcp_port() -> int:
    """A port that both UDP and TCP can bind on 127.0.0.1 right now.

    A probe, so a race with other processes: only for peers (sipp, Kamailio, a container's
    published ports) that must be given their number before they start."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if _bindable(port, socket.SOCK_STREAM) and _bindable(port, socket.SOCK_DGRAM):
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def free_even_udp_block(count: int, low: int = 20000, high: int = 32768) -> int:
    """An even port B with B..B+count-1 free for UDP on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(low, high - count, 2)
        if all(_bindable(base + n, socket.SOCK_DGRAM) for n in range(count)):
            return base
    raise RuntimeError(f"no free block of {count} UDP ports in {low}-{high}")


@pytest.fixture(name="free_udp_tcp_port")
def free_udp_tcp_port_fixture() -> Callable[[], int]:
    return free_udp_tcp_port


def pick_rtp_range(size: int = 200) -> tuple[int, int]:
    for _ in range(100):
        low = random.randrange(20000, 32768 - size, 2)  # below the ephemeral ports
        # The server allocates from the bottom of its range: check the first blocks.
        if all(_bindable(low + n, socket.SOCK_DGRAM) for n in range(8)):
            return low, low + size - 1
    raise RuntimeError("no free RTP range in 20000-40000")


@pytest.fixture
def rtp_range() -> tuple[int, int]:
    return pick_rtp_range()


# --------------------------------------------------------------------------- the server


@dataclass
class SrsServer:
    """One ``srs serve`` configured under ``root``; ``start()`` may be called again after
    ``stop()`` or ``kill()`` (a restart on the same directories).  The server binds ports
    the system chooses (``sip.ephemeral_ports``); ``start()`` reads them from its
    ``listening`` event into ``sip_port`` (UDP and TCP), new ones at every start."""

    root: Path
    rtp_min: int
    rtp_max: int
    sip_port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    auth_header: str = "X-Auth-Token"
    extra_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def recordings_dir(self) -> Path:
        return self.root / "recordings"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config_path(self) -> Path:
        return self.root / "srs.toml"

    @property
    def log_path(self) -> Path:
        """The log of the current (latest) run."""
        return self.root / f"srs-run{self.starts}.log"

    def log_paths(self) -> list[Path]:
        return [self.root / f"srs-run{n}.log" for n in range(1, self.starts + 1)]

    def write_config(self) -> None:
        sections: dict[str, dict[str, Any]] = {
            "sip": {"host": "127.0.0.1", "ephemeral_ports": True, "tls_port": 0},
            "auth": {"header": self.auth_header, "tokens": [self.token]},
            "media": {
                "host": "127.0.0.1",
                "advertised_address": "127.0.0.1",
                "port_min": self.rtp_min,
                "port_max": self.rtp_max,
            },
            # min_free_mb 0: CI machines may have little disk; the guard has its own tests
            "recordings": {"dir": str(self.recordings_dir), "min_free_mb": 0},
            "server": {"state_dir": str(self.state_dir), "max_sessions": 20},
            "management": {"port": 0},  # parallel servers must not all take 8080
            "log": {"level": "debug", "format": "json"},
        }
        for name, values in self.extra_config.items():
            sections.setdefault(name, {}).update(values)
        self.config_path.write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items()) + "\n"
                for name, values in sections.items()
            )
        )

    def start(self, *extra_args: str) -> None:
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.starts += 1
        # The settings come from the file alone: no SRS_* variable of the caller leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SRS_")}
        self.proc = start_process(
            [sys.executable, "-m", "srs", "serve", "--config", str(self.config_path), *extra_args],
            log_path=self.log_path,
            env=env,
            cwd=self.root,
        )
        listening = self._wait_listening()
        self.sip_port = listening["udp"]
        response = sip_options(self.sip_port, timeout_s=2.0)
        if response is None or response.status != 200:
            self.kill()
            got = "nothing" if response is None else f"{response.status} {response.reason}"
            pytest.fail(f"OPTIONS to UDP {self.sip_port} got {got}, not 200; "
                        f"log:\n{self.log_tail()}")

    def _wait_listening(self) -> dict[str, Any]:
        """The ``listening`` event of this run, once it is in the log."""
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"listening"' in line:
                    event: dict[str, Any] = json.loads(line)
                    if event.get("event") == "listening":
                        return event
            if self.proc.poll() is not None:
                pytest.fail(f"srs serve exited with {self.proc.returncode} before listening; "
                            f"log:\n{self.log_tail()}")
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"srs serve logged no listening event within {READY_TIMEOUT_S} s; "
                    f"log:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        assert self.proc is not None, "not started"
        kill_group(self.proc, signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            pytest.fail(f"srs serve did not exit within {timeout_s} s of SIGTERM")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash)."""
        if self.proc is not None:
            kill_group(self.proc)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths() if p.exists())

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every run (other lines are skipped)."""
        events = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Wait for a JSON log event that satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.log_events():
                if predicate(event):
                    return event
            time.sleep(0.05)
        pytest.fail(f"no such log event within {timeout_s} s; log:\n{self.log_tail()}")

    def session_dirs(self) -> list[Path]:
        """Session directories: <recordings>/YYYY/MM/DD/<start>_<id>/."""
        return sorted(p for p in self.recordings_dir.glob("*/*/*/*") if p.is_dir())

    def wait_sessions(
        self, count: int, status: str = "complete", timeout_s: float = 20.0
    ) -> list[tuple[Path, dict[str, Any]]]:
        """Wait until ``count`` session directories hold a session.json with ``status``."""
        deadline = time.monotonic() + timeout_s
        found: list[tuple[Path, dict[str, Any]]] = []
        while time.monotonic() < deadline:
            found = []
            for directory in self.session_dirs():
                sidecar = read_sidecar(directory)
                if sidecar is not None and sidecar.get("status") == status:
                    found.append((directory, sidecar))
            if len(found) >= count:
                return found
            time.sleep(0.1)
        states = {str(d): (read_sidecar(d) or {}).get("status") for d in self.session_dirs()}
        pytest.fail(
            f"expected {count} session(s) with status {status!r} within {timeout_s} s; "
            f"found {states}; log:\n{self.log_tail()}"
        )


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((directory / "session.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class ServerPool:
    """Servers made under one directory; ``kill_all()`` at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[SrsServer] = []

    def make(self, *, start: bool = True, **extra_config: dict[str, Any]) -> SrsServer:
        root = self.root / f"srs{len(self.servers) + 1}"
        root.mkdir(parents=True)
        rtp_min, rtp_max = pick_rtp_range()
        server = SrsServer(root, rtp_min, rtp_max, extra_config=extra_config)
        self.servers.append(server)
        if start:
            server.start()
        return server

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def srs_server_factory(tmp_path: Path) -> Iterator[Callable[..., SrsServer]]:
    """``make(start=True, **extra_config)``: servers under tmp_path, killed at teardown."""
    pool = ServerPool(tmp_path)
    try:
        yield pool.make
    finally:
        pool.kill_all()


@pytest.fixture
def srs_server(srs_server_factory: Callable[..., SrsServer]) -> SrsServer:
    """A running server on free ports with a fresh token (``.token``)."""
    return srs_server_factory()


# --------------------------------------------------------------------------- audio


def write_tone(path: Path, freq_hz: float, seconds: float, rate_hz: int = 8000) -> Path:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    samples = (0.5 * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)
    sf.write(path, samples, rate_hz, subtype="PCM_16")
    return path


@pytest.fixture
def tone_wav(tmp_path: Path) -> Callable[[float, float], Path]:
    def make(freq_hz: float, seconds: float) -> Path:
        return write_tone(tmp_path / f"tone-{freq_hz:g}Hz-{seconds:g}s.wav", freq_hz, seconds)

    return make


# --------------------------------------------------------------------------- the pcap


@dataclass(frozen=True)
class TwoTonePcap:
    """Two RTP streams: ``freqs_hz[0]`` to ``base_port``, ``freqs_hz[1]`` to ``base_port + 2``."""

    path: Path
    base_port: int
    freqs_hz: tuple[float, float]
    packets: tuple[int, int]  # RTP packets per stream
    duration_s: float  # first to last packet, plus one packet time


TONE_SECONDS = 3.0
PACKET_SAMPLES = 160
RTP_PACKET_BYTES = 12 + PACKET_SAMPLES


class _LineWatcher:
    """Collects a process's stderr lines on a thread, so a test can wait for one."""

    def __init__(self, stream: Any) -> None:
        self.text = ""
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            with self._cond:
                self.text += chunk.decode(errors="replace")
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout_s: float) -> bool:
        return self.wait_until(lambda text: re.search(pattern, text) is not None, timeout_s)

    def wait_until(self, predicate: Callable[[str], bool], timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.text), timeout_s)


def _last_count(dumpcap_stderr: str) -> int:
    counts = re.findall(r"Packets: (\d+)", dumpcap_stderr)
    return int(counts[-1]) if counts else 0


@pytest.fixture(scope="session")
def two_tone_pcap(tmp_path_factory: pytest.TempPathFactory) -> TwoTonePcap:
    """ffmpeg sends 440 Hz to B and 1000 Hz to B+2 in real time; dumpcap captures it."""
    require_tools("ffmpeg", "dumpcap", "editcap")
    require_root("capturing on the loopback interface with dumpcap")
    work = tmp_path_factory.mktemp("two_tone_pcap")
    freqs = (440.0, 1000.0)
    wavs = [write_tone(work / f"{int(f)}.wav", f, TONE_SECONDS) for f in freqs]
    base = free_even_udp_block(4)
    # Sinks on B..B+3 (RTP and RTCP) so that no ICMP unreachable disturbs ffmpeg.
    sinks = []
    for n in range(4):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", base + n))
        sinks.append(sink)
    capture = work / "capture.pcapng"
    dumpcap = subprocess.Popen(
        ["dumpcap", "-i", "lo", "-f", f"udp and (dst port {base} or dst port {base + 2})",
         "-w", str(capture)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        watcher = _LineWatcher(dumpcap.stderr)
        if not watcher.wait_for(r"Capturing on", 15):
            pytest.fail(f"dumpcap did not start capturing: {watcher.text}")
        # Prove the filter is live before sending: probes until dumpcap counts a packet.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _ in range(100):
                probe.sendto(b"probe", ("127.0.0.1", base))
                if watcher.wait_for(r"Packets: [1-9]", 0.2):
                    break
            else:
                pytest.fail(f"dumpcap never counted a probe packet: {watcher.text}")
        counted_before = _last_count(watcher.text)
        rtp_out = [
            "-acodec", "pcm_mulaw", "-ar", "8000", "-ac", "1",
            "-f", "rtp", "-payload_type", "0",
        ]
        ffmpeg = subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
             "-i", str(wavs[0]), "-i", str(wavs[1]),
             "-filter_complex",
             "[0:a]asetnsamples=n=160,arealtime[a];[1:a]asetnsamples=n=160,arealtime[b]",
             "-map", "[a]", *rtp_out, f"rtp://127.0.0.1:{base}?pkt_size={RTP_PACKET_BYTES}",
             "-map", "[b]", *rtp_out, f"rtp://127.0.0.1:{base + 2}?pkt_size={RTP_PACKET_BYTES}"],
            capture_output=True,
            timeout=60,
        )
        if ffmpeg.returncode != 0:
            pytest.fail(f"ffmpeg failed ({ffmpeg.returncode}): {ffmpeg.stderr.decode()}")
        # A closing probe, then wait until dumpcap has counted ffmpeg's 2 x 150 packets and
        # that probe before stopping it cleanly (SIGINT flushes the file).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.sendto(b"probe-end", ("127.0.0.1", base))
        total = counted_before + 2 * round(TONE_SECONDS * 8000 / PACKET_SAMPLES) + 1
        watcher.wait_until(lambda text: _last_count(text) >= total, 10)
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(15)
    finally:
        kill_group(dumpcap)
        for sink in sinks:
            sink.close()
    converted = work / "converted.pcap"
    subprocess.run(
        ["editcap", "-F", "pcap", str(capture), str(converted)], check=True, capture_output=True
    )
    # Keep only RTP: the probes were there to show the capture was running.
    pcap = read_pcap(converted)
    rtp = [r for r in pcap.records if rtp_payload_type(r.payload) is not None]
    if not rtp or not any(r.payload.startswith(b"probe-end") for r in pcap.records):
        pytest.fail("the capture lacks the RTP or the closing probe")
    pcap = type(pcap)(pcap.header, tuple(rtp))
    path = work / "two_tone.pcap"
    write_pcap(path, pcap)

    counts = pcap.dst_port_counts()
    expected = round(TONE_SECONDS * 8000 / PACKET_SAMPLES)
    packets = (counts[base], counts[base + 2])
    assert set(counts) == {base, base + 2}, counts
    assert all(expected - 3 <= n <= expected for n in packets), (packets, expected)
    assert all(len(r.payload) == RTP_PACKET_BYTES for r in pcap.records)
    assert all(rtp_payload_type(r.payload) == 0 for r in pcap.records)
    duration = pcap.records[-1].time_s - pcap.records[0].time_s + PACKET_SAMPLES / 8000
    return TwoTonePcap(path, base, freqs, packets, duration)


# --------------------------------------------------------------------------- sipp

SCENARIOS = Path(__file__).parent / "scenarios"
SIPP_TIMEOUT_S = 60


@dataclass(frozen=True)
class SippRun:
    returncode: int
    pid: int
    call_id: str  # of the first call
    messages: str  # -trace_msg
    errors: str  # -trace_err
    output: str  # stdout and stderr

    def report(self) -> str:
        return (
            f"sipp exit code {self.returncode}\n--- output:\n{self.output[-3000:]}\n"
            f"--- errors:\n{self.errors[-3000:]}\n--- messages:\n{self.messages[-6000:]}"
        )


def run_sipp(
    work: Path,
    scenario: str,
    server: SrsServer,
    *,
    transport: str = "u1",
    pcap: Path | None = None,
    keys: dict[str, str] | None = None,
) -> SippRun:
    """One sipp call from ``scenario`` to ``server``; returns when sipp exits.

    The scenario is copied into ``work`` (a new directory) with the pcap beside it as
    ``two_tone.pcap``, where sipp looks for it.  sipp's process group is killed on the way
    out, whatever happens.
    """
    require_tools("sipp")
    if pcap is not None:
        require_root("sipp's play_pcap_audio")
    work.mkdir(parents=True)
    shutil.copy(SCENARIOS / scenario, work / scenario)
    if pcap is not None:
        shutil.copy(pcap, work / "two_tone.pcap")
    cid_prefix = f"CAe2e{secrets.token_hex(4)}-"
    args = [
        "sipp", "-sf", str(work / scenario),
        "-i", "127.0.0.1", "-p", str(free_udp_tcp_port()),  # a probe: sipp is given its port
        "-mp", str(free_even_udp_block(4)),
        "-t", transport, "-m", "1", "-nostdin",
        "-cid_str", cid_prefix + "%u-%p@0.0.0.0",
        "-timeout", "40s", "-timeout_error",
        "-trace_msg", "-message_file", str(work / "messages.log"),
        "-trace_err", "-error_file", str(work / "errors.log"),
    ]
    for name, value in (keys or {}).items():
        args += ["-key", name, value]
    args.append(f"127.0.0.1:{server.sip_port}")
    output = work / "output.log"
    proc = start_process(args, log_path=output, cwd=work)
    try:
        proc.wait(SIPP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sipp still running after {SIPP_TIMEOUT_S} s: {output.read_text()}")
    finally:
        kill_group(proc)

    def text(name: str) -> str:
        path = work / name
        return path.read_text(errors="replace") if path.exists() else ""

    return SippRun(
        proc.returncode,
        proc.pid,
        f"{cid_prefix}1-{proc.pid}@0.0.0.0",
        text("messages.log"),
        text("errors.log"),
        text("output.log"),
    )
