"""Capacity benchmark of the recording server: N concurrent two-stream SIPREC calls.

Run: ``.venv/bin/python bench/capacity.py --calls 300 --seconds 20`` (``--calls 50,150,300``
runs several sizes one after the other and prints one row each; ``--json`` prints the
results as JSON instead of the table).  ``--srtp`` makes every call SRTP, ``--workers 1,2``
runs each N once per ``[media] workers`` value, ``--codec PCMU,G722,opus`` once per codec
(``codec_media.py``), ``--find-capacity`` searches the largest N with zero loss for srs and
for the floor; bench/README.md has all the options.

For each N it

1. builds ``rtp_sender.c`` and ``floor_receiver.c`` with gcc into a temporary directory;
2. starts ``srs serve`` in its own process group, pinned to core 0 (``taskset -c 0``, or
   ``--server-cpus``; not pinned by default with more than one worker), on free ports of
   127.0.0.1, with JSON logs to a file and recordings in the temporary directory, and
   reads the RSS of the server and every process below it;
3. sets up N calls from this process (pinned to core 1), each a multipart INVITE with
   metadata and two m-lines offering the codec (RTP/SAVP with an ``a=crypto`` line each
   under ``--srtp``), and collects the 2N RTP ports of the answers;
4. runs the C sender on core 1 for SECONDS at 50 packets/s per stream (172-byte PCMU
   packets carrying a 1 kHz tone; for another codec the tone encoded by a real encoder,
   and under ``--srtp`` the packets protected here with the offered keys, both replayed
   from a file) and measures, over the sending window and the
   drain after it, the CPU time (utime + stime) and RSS of the server process and all its
   descendants (``proctree``: re-read every second, as workers may be restarted), the
   sender's own CPU and achieved rate, the kernel's UDP receive-buffer drops, the
   server's SIP response time (an OPTIONS every 200 ms: it waits behind whatever the
   event loop is doing, so it shows loop lag) and the INVITE -> 200 time of extra calls
   set up (and ended) at 2 a second;
5. sends BYE for every call, waits for every session.json to say ``complete`` and checks
   the packets received per stream against those sent, and every WAV: its rate against
   the codec's, its length against the session's, the amount of tone in it against the
   packets sent, and for a few an FFT that finds the 1 kHz tone;
6. measures the floor: the C receiver (epoll + recvmmsg, pinned to core 0) on 2N ports
   with the same sender (and the same packets) for the same SECONDS.

Loss is a result and is printed; the exit status is non-zero only when a server died or
the run could not be done (build failure, refused INVITE, ...); during ``--find-capacity``
such a run is a failed step instead.  Every process started here runs in its own process
group and is stopped in a ``finally`` block, also on Ctrl-C.  Traffic goes only to
127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: the test client lives in tests/

from codec_media import CODECS, BenchCodec, answered_format, unavailable  # noqa: E402
from codec_media import media as codec_media  # noqa: E402
from codec_media import parse as parse_codecs  # noqa: E402
from proctree import TreeWindow, memory_kb  # noqa: E402
from srtp_replay import SUITE, write_replay  # noqa: E402

from srs.sip.message import SipResponse  # noqa: E402
from tests.sipclient import (  # noqa: E402
    Call,
    SipClient,
    crypto_attribute,
    metadata,
    multipart,
    sdp_offer,
)

PACKETS_PER_S = 50  # 20 ms per packet, every codec
TONE_HZ = 1000
# The sender's tone is 8000*sin(2*pi*1000*i/8000): of every 8 samples 2 are zero, so each
# 160-sample G.711 packet puts exactly 120 samples of magnitude > TONE_THRESHOLD into a WAV.
TONE_SAMPLES_PER_PACKET = 120
TONE_THRESHOLD = 1000
# Through a lossy codec the tone is counted in 20 ms blocks of the WAV instead: a block of
# the tone has an RMS near 5,660 (3,000-5,800 decoded, by codec), of silence 0.  The tone
# of P packets covers P - 1 whole blocks and two partial ones; an encoder's first frame
# and a decoder's delay may cost one or two more.
TONE_BLOCK_RMS = 2000.0
TONE_BLOCK_SLACK = 3
PCMU = CODECS["pcmu"]
SERVER_CORE, LOAD_CORE = 0, 1
TOKEN = "bench-capacity-token"
DRAIN_S = 0.5  # after the sender stops, time for the receiver to empty its sockets
IDLE_CORE_SHARE = 0.15  # a server below this share of a core has caught up with its backlog
MAX_DRAIN_S = 30.0
SETTLE_S = 2.0  # after srs's sockets are empty: one tick's decode and writes, and a margin
PROBE_INTERVAL_S = 0.2
EXTRA_CALLS_PER_S = 2.0  # calls set up (and torn down) during the window, to time INVITE
EXTRA_CALL_HOLD_S = 1.0
PACE_SHARE = 0.99  # a sender below this share of the offered rate did not keep its pace
KEY_SALT_BYTES = 30  # AES_CM_128_HMAC_SHA1_80: 16-byte key, 14-byte salt (RFC 4568 §6.2.1)
LENGTH_TOLERANCE_S = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RunFailed(Exception):
    """The run could not be done (as opposed to a result such as loss)."""


# -- processes -------------------------------------------------------------------------


class Processes:
    """Every child in its own process group, stopped by :meth:`stop_all` in a finally."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[Any]] = []

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc, timeout_s=10.0)


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def core_busy_s() -> dict[int, float]:
    """Busy time of each core (everything but idle and iowait), in seconds."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return busy


def udp_counters() -> dict[str, int]:
    snmp = Path("/proc/net/snmp").read_text().splitlines()
    names, values = (line.split()[1:] for line in snmp if line.startswith("Udp:"))
    return dict(zip(names, (int(v) for v in values), strict=True))


class Window:
    """CPU of a process and all its descendants (``proctree``), the cores and the kernel's
    UDP counters over one window.  ``sample()`` about once a second."""

    def __init__(self, pid: int) -> None:
        self.tree = TreeWindow(pid)
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.loop_cpu_s = 0.0
        self.core_busy_s: dict[int, float] = {}
        self.udp: dict[str, int] = {}
        self.rss_max_kb = 0

    @property
    def per_second_cpu(self) -> list[float]:
        return self.tree.per_second_cpu

    def __enter__(self) -> Window:
        self._t0 = time.monotonic()
        self._cores0 = core_busy_s()
        self._udp0 = udp_counters()
        self.tree.start()
        return self

    def sample(self) -> None:
        self.tree.sample()

    def __exit__(self, *exc: object) -> None:
        self.tree.sample()
        self.wall_s = time.monotonic() - self._t0
        self.cpu_s = self.tree.cpu_s()
        self.loop_cpu_s = self.tree.loop_cpu_s()
        self.rss_max_kb = max(self.tree.rss_series_kb, default=0)
        cores1 = core_busy_s()
        self.core_busy_s = {c: cores1[c] - self._cores0.get(c, 0.0) for c in cores1}
        udp1 = udp_counters()
        self.udp = {k: udp1[k] - self._udp0.get(k, 0)
                    for k in ("InDatagrams", "RcvbufErrors", "InErrors")}


# -- building and sending ----------------------------------------------------------------


def build(work: Path) -> tuple[Path, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RunFailed("gcc not found: the sender and the floor receiver are built with it")
    out = []
    for name, libs in (("rtp_sender", ["-lm"]), ("floor_receiver", [])):
        binary = work / name
        result = subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary),
                                 str(ROOT / "bench" / f"{name}.c"), *libs],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RunFailed(f"gcc {name}.c failed:\n{result.stderr}")
        out.append(binary)
    return out[0], out[1]


def run_sender(procs: Processes, sender: Path, ports: Sequence[int], seconds: float,
               window: Window, replay: Path | None = None) -> dict[str, Any]:
    """Send for ``seconds`` to ``ports`` (the packets of ``replay`` if given); sample
    ``window`` once a second meanwhile.  Adds the achieved rate against the offered one."""
    argv = ["taskset", "-c", str(LOAD_CORE), str(sender), f"{seconds:g}"]
    if replay is not None:
        argv += ["--replay", str(replay)]
    proc = procs.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(f"127.0.0.1 {p}\n" for p in ports))
    proc.stdin.close()
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None:
        if time.monotonic() > deadline:
            procs.stop(proc)
            raise RunFailed("the RTP sender did not finish")
        time.sleep(1.0)
        window.sample()
    output = proc.stdout.read()
    procs.stop(proc)
    if proc.returncode != 0:
        raise RunFailed(f"the RTP sender exited with {proc.returncode}")
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    target = len(ports) * PACKETS_PER_S
    achieved = report["sent"] / max(report["wall_s"], 1e-9)
    expected = len(ports) * round(seconds * PACKETS_PER_S)
    report["target_pps"] = target
    report["achieved_pps"] = round(achieved)
    report["rate_share"] = round(achieved / target, 4)
    # It kept its pace when it sent every packet at (nearly) the offered rate.
    report["kept_pace"] = report["sent"] >= expected and achieved >= PACE_SHARE * target
    return report


# -- signalling ---------------------------------------------------------------------------


class Signalling:
    """One UDP SIP client; responses are matched by Call-ID and CSeq method."""

    def __init__(self, port: int, srtp: bool = False, codec: BenchCodec = PCMU) -> None:
        self.client = SipClient("127.0.0.1", port, "udp", token=TOKEN)
        self.srtp = srtp
        self.codec = codec
        self.keys: dict[str, list[bytes]] = {}  # Call-ID: the key offered per m-line

    def close(self) -> None:
        self.client.close()

    def response(self, call_id: str, method: str, timeout_s: float = 10.0) -> SipResponse:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no final response to {method}")
            try:
                message = self.client.receive(left)
            except TimeoutError:
                raise TimeoutError(f"no final response to {method}") from None
            if (isinstance(message, SipResponse) and message.status >= 200
                    and message.call_id == call_id and message.cseq.method == method):
                return message

    def invite(self, n: int, prefix: str = "bench") -> Call:
        """A two-stream call whose session (and directory) is ``{prefix}-{n:05d}``."""
        call = Call(f"{uuid.uuid4().hex}@bench", uuid.uuid4().hex[:8])
        labels = ("inbound", "outbound")
        keys = [os.urandom(KEY_SALT_BYTES) for _ in labels] if self.srtp else []
        crypto = [crypto_attribute(SUITE, key) for key in keys]
        # The offer's ports are not used: srs latches on the source of the first packet.
        offer = sdp_offer([40000, 40002], labels, crypto=crypto,
                          codecs=self.codec.payload_types(), formats=self.codec.formats())
        content_type, body = multipart(offer, metadata(labels, session_id=f"{prefix}-{n:05d}"))
        self.client.request("INVITE", call, body=body, content_type=content_type,
                            headers=[("Require", "siprec")])
        response = self.response(call.call_id, "INVITE")
        if response.status != 200:
            raise RunFailed(f"INVITE {n} answered {response.status} {response.reason}")
        call.to_tag = response.to.tag
        call.answer = response
        self.client.ack(call)
        if len(call.ports) != 2:
            raise RunFailed(f"INVITE {n}: the answer has {len(call.ports)} m-lines, not 2")
        if self.srtp and response.body.decode().count("RTP/SAVP") != 2:
            raise RunFailed(f"INVITE {n}: SRTP offered, the answer is not RTP/SAVP")
        answered = answered_format(response.body.decode())
        if answered != [str(self.codec.payload_type)] * 2:
            raise RunFailed(f"INVITE {n}: {self.codec.rtpmap} offered as payload type "
                            f"{self.codec.payload_type}, answered {answered} (does srs "
                            "decode it here?)")
        self.keys[call.call_id] = keys
        return call

    def bye(self, call: Call) -> int:
        call.cseq += 1
        self.client.request("BYE", call)
        return self.response(call.call_id, "BYE").status

    def options(self, timeout_s: float = 5.0) -> float | None:
        """Round-trip time of one OPTIONS, or None when no answer came."""
        call = Call(f"{uuid.uuid4().hex}@probe", uuid.uuid4().hex[:8])
        t0 = time.monotonic()
        self.client.request("OPTIONS", call)
        try:
            self.response(call.call_id, "OPTIONS", timeout_s)
        except TimeoutError:
            return None
        return time.monotonic() - t0


class Prober(threading.Thread):
    """OPTIONS every PROBE_INTERVAL_S: the server's SIP response time under load."""

    def __init__(self, port: int) -> None:
        super().__init__(name="options-probe", daemon=True)
        self.signalling = Signalling(port)
        self.stop_event = threading.Event()
        self.rtts: list[float] = []
        self.series: list[tuple[float, float | None]] = []  # (seconds into the window, rtt)
        self.unanswered = 0

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            while not self.stop_event.wait(PROBE_INTERVAL_S):
                sent_at = time.monotonic() - t0
                rtt = self.signalling.options()
                rtt_ms = None if rtt is None else round(rtt * 1000, 1)
                self.series.append((round(sent_at, 2), rtt_ms))
                if rtt is None:
                    self.unanswered += 1
                else:
                    self.rtts.append(rtt)
        finally:
            self.signalling.close()

    def summary(self) -> dict[str, Any]:
        rtts = np.array(self.rtts or [float("nan")]) * 1000
        return {"probes": len(self.rtts), "unanswered": self.unanswered,
                "p50_ms": round(float(np.median(rtts)), 2),
                "p95_ms": round(float(np.percentile(rtts, 95)), 2),
                "p99_ms": round(float(np.percentile(rtts, 99)), 2),
                "max_ms": round(float(np.max(rtts)), 2),
                "over_1s": int(np.count_nonzero(rtts > 1000)),
                "series_ms": self.series}


class CallProber(threading.Thread):
    """During the window, sets up EXTRA_CALLS_PER_S calls (no media) and ends each
    EXTRA_CALL_HOLD_S later: the INVITE -> 200 and BYE -> 200 times under load.  Their
    sessions are named ``extra-N`` and left out of the recording checks."""

    def __init__(self, port: int, srtp: bool, codec: BenchCodec) -> None:
        super().__init__(name="invite-probe", daemon=True)
        self.signalling = Signalling(port, srtp, codec)
        self.stop_event = threading.Event()
        self.invite_s: list[float] = []
        self.bye_s: list[float] = []
        self.failures: Counter[str] = Counter()
        self.calls = 0

    def run(self) -> None:
        held: list[tuple[float, Call]] = []
        try:
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                now = time.monotonic()
                while held and (held[0][0] <= now or self.stop_event.is_set()):
                    self._bye(held.pop(0)[1])
                if now >= next_at:
                    next_at += 1 / EXTRA_CALLS_PER_S
                    call = self._invite()
                    if call is not None:
                        held.append((time.monotonic() + EXTRA_CALL_HOLD_S, call))
                self.stop_event.wait(max(0.0, min(next_at, held[0][0] if held else next_at)
                                         - time.monotonic()))
            for _, call in held:
                self._bye(call)
        finally:
            self.signalling.close()

    def _invite(self) -> Call | None:
        self.calls += 1
        t0 = time.monotonic()
        try:
            call = self.signalling.invite(self.calls, prefix="extra")
        except (RunFailed, TimeoutError) as exc:
            self.failures[str(exc).split(":")[-1].strip()[:60]] += 1
            return None
        self.invite_s.append(time.monotonic() - t0)
        return call

    def _bye(self, call: Call) -> None:
        t0 = time.monotonic()
        try:
            status = self.signalling.bye(call)
        except TimeoutError:
            self.failures["BYE unanswered"] += 1
            return
        if status != 200:
            self.failures[f"BYE {status}"] += 1
        self.bye_s.append(time.monotonic() - t0)

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float], q: float) -> float:
            return round(float(np.percentile(np.array(values or [float("nan")]) * 1000, q)), 1)

        return {"calls": self.calls, "answered_200": len(self.invite_s),
                "failures": dict(self.failures),
                "invite_p50_ms": ms(self.invite_s, 50), "invite_p99_ms": ms(self.invite_s, 99),
                "invite_max_ms": ms(self.invite_s, 100), "bye_p50_ms": ms(self.bye_s, 50),
                "bye_max_ms": ms(self.bye_s, 100)}


# -- the server ---------------------------------------------------------------------------


def udp_rx_queued(ports: frozenset[int]) -> int:
    """Bytes the kernel holds unread for the UDP sockets bound to ``ports`` (the
    ``rx_queue`` column of /proc/net/udp, hexadecimal like the port)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) in ports:
            total += int(fields[4].split(":")[1], 16)
    return total


def wait_idle(window: Window, ports: Sequence[int]) -> tuple[float, float]:
    """After the sender stops: wait until srs has read every datagram its RTP sockets hold
    (``udp_rx_queued`` is 0), then until its processes use less than IDLE_CORE_SHARE of a
    core over DRAIN_S (the decode and writes of what it read last), at most SETTLE_S more:
    sessions without media still cost CPU every tick, so idle is not a reliable end on
    its own.  The window's CPU then covers every packet even when the server ran behind.
    Returns (time until the sockets were empty, time waited in all)."""
    t0 = time.monotonic()
    watched = frozenset(ports)
    while udp_rx_queued(watched) and time.monotonic() - t0 < MAX_DRAIN_S:
        time.sleep(0.25)
        window.sample()
    emptied = time.monotonic()
    while True:
        window.sample()
        cpu0 = window.tree.cpu_s()
        time.sleep(DRAIN_S)
        window.sample()
        now = time.monotonic()
        idle = (window.tree.cpu_s() - cpu0) / DRAIN_S < IDLE_CORE_SHARE
        if idle or now - emptied >= SETTLE_S or now - t0 > MAX_DRAIN_S:
            return emptied - t0, now - t0


def rtp_base(span: int) -> int:
    """An even base port with ``span`` ports above it, below the ephemeral range so that
    no client socket takes one of them."""
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    top = min(low, 65536) - span - 2
    if top <= 10000:
        raise RunFailed(f"no room for {span} RTP ports below the ephemeral range")
    return random.randrange(10000, top, 2)


def extra_calls(seconds: float) -> int:
    """The most calls the CallProber can set up while the sender sends (with a margin)."""
    return int((seconds + 10) * EXTRA_CALLS_PER_S) + 1


def write_config(work: Path, calls: int, seconds: float, workers: int | None) -> Path:
    """``[media] workers`` only when asked for: a server without the key runs as before."""
    extras = extra_calls(seconds)
    # 2 even ports a call, 3 offered: srs places each call's block of two at a random
    # start, which strands single free ports between blocks (only about 86 % of an exactly
    # sized range could be used), and released ports cool down before reuse.
    span = 6 * (calls + extras) + 200
    base = rtp_base(span)
    workers_line = "" if workers is None else f"workers = {workers}\n"
    config = work / "srs.toml"
    config.write_text(f"""\
[sip]
host = "127.0.0.1"
ephemeral_ports = true
tls_port = 0
[auth]
tokens = ["{TOKEN}"]
[media]
host = "127.0.0.1"
port_min = {base}
port_max = {base + span}
{workers_line}rtp_timeout_s = {max(600.0, 4 * seconds + 300):.0f}
[recordings]
dir = "{work / 'recordings'}"
min_free_mb = 0
[management]
port = 0
[server]
state_dir = "{work / 'state'}"
max_sessions = {calls + extras + 10}
[log]
level = "info"
format = "json"
""")
    return config


def pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c CPUS`` (inherited by every child).  Not pinned (None)
    is every core: a child would otherwise inherit this process's own core 1."""
    every = f"0-{(os.cpu_count() or 1) - 1}"
    return ["taskset", "-c", cpus if cpus is not None else every, *argv]


def start_server(procs: Processes, work: Path, config: Path,
                 cpus: str | None) -> tuple[subprocess.Popen[Any], int]:
    """The server and the UDP port it bound (from its ``listening`` event)."""
    log = (work / "server.log").open("w")
    err = (work / "server.stderr").open("w")
    proc = procs.start(pinned(cpus, [sys.executable, "-m", "srs", "serve", "--config",
                                     str(config)]), stdout=log, stderr=err, cwd=work)
    log.close()
    err.close()
    deadline = time.monotonic() + 30
    sip_port = 0
    while not sip_port:
        check_alive(proc, work)
        if time.monotonic() > deadline:
            raise RunFailed("the server logged no listening event within 30 s")
        time.sleep(0.05)
        text = (work / "server.log").read_text(errors="replace")
        for line in text.splitlines()[: text.count("\n")]:  # whole lines only
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                sip_port = int(json.loads(line)["udp"])
    probe = Signalling(sip_port)
    try:
        if probe.options(timeout_s=2.0) is None:
            raise RunFailed(f"the server did not answer OPTIONS on UDP {sip_port}")
        return proc, sip_port
    finally:
        probe.close()


def check_alive(proc: subprocess.Popen[Any], work: Path) -> None:
    if proc.poll() is not None:
        tail = (work / "server.stderr").read_text()[-3000:]
        raise RunFailed(f"the server exited with {proc.returncode}:\n{tail}")


def log_levels(work: Path) -> dict[str, int]:
    levels: Counter[str] = Counter()
    path = work / "server.log"
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        if line.startswith("{"):
            try:
                levels[json.loads(line).get("level", "?")] += 1
            except json.JSONDecodeError:
                levels["unparsed"] += 1
    return dict(levels)


# -- checking the recordings --------------------------------------------------------------


def is_main(doc: dict[str, Any]) -> bool:
    """A session of the N measured calls (not one of the CallProber's ``extra-`` ones)."""
    return "_bench-" in Path(doc["_dir"]).name  # the directory is <start time>_<session id>


def wait_complete(recordings: Path, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Every session.json, once ``count`` of the measured calls' say ``complete``."""
    deadline = time.monotonic() + timeout_s
    docs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        docs = []
        for path in sorted(recordings.glob("*/*/*/*/session.json")):
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # replaced atomically, but the glob may race a finished session
            doc["_dir"] = str(path.parent)
            docs.append(doc)
        if sum(d["status"] == "complete" and is_main(d) for d in docs) >= count:
            return docs
        time.sleep(0.25)
    return docs


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{w.getsampwidth() * 8}-bit samples")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data, w.getnchannels(), w.getframerate()


def tone_peak_hz(samples: np.ndarray, rate_hz: int) -> tuple[float, float]:
    """Frequency of the strongest FFT bin of one second of tone, and its share of energy."""
    loud = np.flatnonzero(np.abs(samples) > TONE_THRESHOLD)
    if loud.size < rate_hz:
        return 0.0, 0.0
    middle = (loud[0] + loud[-1]) // 2
    chunk = samples[middle - rate_hz // 2: middle + rate_hz // 2].astype(np.float64)
    power = np.abs(np.fft.rfft(chunk * np.hanning(chunk.size))) ** 2
    peak = int(np.argmax(power))
    share = float(power[max(0, peak - 2): peak + 3].sum() / power.sum())
    return peak * rate_hz / chunk.size, share


def tone_blocks(samples: np.ndarray, rate_hz: int) -> int:
    """20 ms blocks of the WAV (from its start) whose RMS is that of the tone."""
    size = rate_hz // PACKETS_PER_S
    blocks = samples[: samples.size // size * size].astype(np.float64).reshape(-1, size)
    return int(np.count_nonzero(np.sqrt((blocks ** 2).mean(axis=1)) > TONE_BLOCK_RMS))


def tone_problem(samples: np.ndarray, rate_hz: int, codec: BenchCodec, count: int,
                 per_stream: int) -> str | None:
    """How the tone in a WAV falls short of (or exceeds) the packets, or None.  G.711:
    exactly 120 samples above 1000 per packet; other codecs: one 20 ms block of tone per
    packet, within TONE_BLOCK_SLACK."""
    if codec.g711:
        have = int(np.count_nonzero(np.abs(samples) > TONE_THRESHOLD))
        per, slack, unit = TONE_SAMPLES_PER_PACKET, 0, "tone samples"
    else:
        have, per, slack, unit = tone_blocks(samples, rate_hz), 1, TONE_BLOCK_SLACK, "tone blocks"
    if have < per * count - slack:
        return f"received audio missing from WAV: {have} {unit} for {count} packets"
    if have < per * per_stream - slack:
        return f"sent audio missing (loss): {have} {unit}"
    if have > per * per_stream + slack:
        return f"more tone than sent: {have} {unit}"
    return None


def seconds_between(start: str, end: str) -> float:
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def check_recordings(docs: list[dict[str, Any]], calls: int, per_stream: int,
                     fft_checks: int, srtp: bool = False,
                     codec: BenchCodec = PCMU) -> dict[str, Any]:
    """Loss per stream and the state of every WAV; see the README for the definitions.
    With ``srtp`` every stream must also say it was decrypted with the offered suite.
    The WAVs are at the rate ``codec`` decodes to."""
    problems: Counter[str] = Counter()
    examples: list[str] = []
    received = lost_streams = tone_checked = 0
    counted: Counter[str] = Counter()  # the server's own per-stream counters, summed
    loss = 0
    streams = 0

    def bad(kind: str, where: str) -> None:
        problems[kind] += 1
        if len(examples) < 10:
            examples.append(f"{kind}: {where}")

    complete = [d for d in docs if d["status"] == "complete"]
    for _ in range(calls - len(complete)):
        bad("session not complete", "(missing or still recording)")
    fft_every = max(1, len(complete) * 2 // max(1, fft_checks))
    for doc in complete:
        directory = Path(doc["_dir"])
        session_s = seconds_between(doc["started_at"], doc["ended_at"])
        if len(doc["streams"]) != 2:
            bad("streams != 2", directory.name)
        for stream in doc["streams"]:
            name = f"{directory.name}/{stream['file']}"
            if srtp and stream.get("srtp") != SUITE:
                bad("stream not SRTP", f"{name}: srtp {stream.get('srtp')!r}")
            count = stream["packets"]["received"]
            received += count
            for key in ("lost", "duplicated", "reordered", "late"):
                counted[key] += stream["packets"][key]
            for key, value in stream["packets"]["dropped"].items():
                counted[f"dropped {key}"] += value
            streams += 1
            if count < per_stream:
                loss += per_stream - count
                lost_streams += 1
            try:
                samples, channels, rate = read_wav(directory / stream["file"])
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                bad("WAV unreadable", f"{name}: {exc}")
                continue
            length_s = samples.size / channels / rate
            if channels != 1 or rate != codec.wav_hz:
                bad("WAV format", f"{name}: {channels} ch {rate} Hz, {codec.wav_hz} wanted")
            if abs(length_s - session_s) > LENGTH_TOLERANCE_S:
                bad("WAV length != session", f"{name}: {length_s:.3f} s vs {session_s:.3f} s")
            if abs(length_s - stream["duration_s"]) > 0.01:
                bad("WAV length != session.json",
                    f"{name}: {length_s:.3f} vs {stream['duration_s']}")
            short = tone_problem(samples, rate, codec, count, per_stream)
            if short is not None:
                kind, _, what = short.partition(": ")
                bad(kind, f"{name}: {what}")
            if streams % fft_every == 1 or fft_every == 1:
                tone_checked += 1
                peak, share = tone_peak_hz(samples, rate)
                if abs(peak - TONE_HZ) > 2 or share < 0.9:
                    bad("no 1 kHz tone", f"{name}: peak {peak:.1f} Hz, {share:.0%} of energy")
        mix = doc.get("mix")
        if mix is None:
            bad("no mix", directory.name)
        else:
            try:
                samples, channels, mix_rate = read_wav(directory / mix["file"])
                mix_s = samples.size / 2 / mix_rate
                if (channels != 2 or mix_rate != codec.wav_hz
                        or abs(mix_s - session_s) > LENGTH_TOLERANCE_S):
                    bad("mix format or length", f"{directory.name}: {channels} ch "
                        f"{mix_rate} Hz {mix_s:.3f} s")
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                bad("mix unreadable", f"{directory.name}: {exc}")
    expected = calls * 2 * per_stream
    incomplete = sum(v for k, v in problems.items() if k not in ("no mix", "mix format or length",
                                                                   "mix unreadable"))
    return {
        "sessions_complete": len(complete),
        "streams": streams,
        "packets_expected": expected,
        "packets_received": received,
        "loss_packets": loss + (calls * 2 - streams) * per_stream,
        "loss_pct": round(100 * (loss + (calls * 2 - streams) * per_stream) / expected, 4),
        "streams_with_loss": lost_streams,
        "server_counters": dict(counted),
        "incomplete_wavs": incomplete,
        "tone_fft_checked": tone_checked,
        "problems": dict(problems),
        "problem_examples": examples,
    }


# -- one run ------------------------------------------------------------------------------


def profile_start(procs: Processes, pid: int, seconds: float, out: Path) -> subprocess.Popen[Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise RunFailed("--profile needs py-spy (pip install py-spy into the venv)")
    return procs.start(["taskset", "-c", str(LOAD_CORE), py_spy, "record", "--pid", str(pid),
                        "--duration", f"{max(1, int(seconds))}", "--rate", "200",
                        "--nonblocking", "--threads", "--subprocesses", "--format", "raw",
                        "-o", str(out)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the samples, by function, from py-spy's raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines() if path.exists() else ():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]  # noqa: E731
    return {"samples": [("total", total)], "self_pct": share(own),
            "inclusive_pct": share(inclusive)}


@dataclass(frozen=True)
class Options:
    """What every run of one invocation shares."""

    seconds: float
    fft_checks: int = 8
    srtp: bool = False
    workers: int | None = None  # None: no [media] workers key in the config
    server_cpus: str | None = str(SERVER_CORE)  # taskset -c list, None: not pinned
    profile_dir: Path | None = None
    codec: BenchCodec = PCMU

    def with_seconds(self, seconds: float) -> Options:
        return Options(seconds, self.fft_checks, self.srtp, self.workers, self.server_cpus,
                       codec=self.codec)

    @property
    def replays(self) -> bool:
        """Whether the sender sends prepared packets: SRTP, or any codec but PCMU (the one
        it builds itself)."""
        return self.srtp or self.codec is not PCMU


def write_media(path: Path, options: Options, streams: int,
                keys: Sequence[bytes] | None = None) -> float:
    """The replay file of ``options.seconds`` of the codec's tone to ``streams`` streams:
    under ``--srtp`` protected with ``keys`` (one per stream; without them plain RTP padded
    to the SRTP size, for the floor, which only counts), else plain RTP.  Returns the
    seconds it took (the encoding is done once per codec and length)."""
    t0 = time.monotonic()
    ticks = round(options.seconds * PACKETS_PER_S)
    media = codec_media(options.codec, ticks)
    plain: list[bytes | None] = [None] * streams
    if options.srtp:
        write_replay(path, plain if keys is None else list(keys), ticks, SUITE, media)
    else:
        write_replay(path, plain, ticks, None, media)
    return time.monotonic() - t0


def server_cpus(requested: str | None, workers: int | None) -> str | None:
    """The default pinning: one process on core 0 as always; several workers unpinned."""
    if requested is not None:
        return None if requested == "any" else requested
    return str(SERVER_CORE) if workers in (None, 1) else None


def run_server(procs: Processes, work: Path, sender: Path, calls: int,
               options: Options) -> dict[str, Any]:
    seconds = options.seconds
    profile = (options.profile_dir / f"capacity-{calls}.txt") if options.profile_dir else None
    config = write_config(work, calls, seconds, options.workers)
    server, sip_port = start_server(procs, work, config, options.server_cpus)
    signalling = Signalling(sip_port, options.srtp, options.codec)
    try:
        time.sleep(0.5)  # let the process tree settle (workers start with the server)
        memory_before = memory_kb(server.pid)
        t0 = time.monotonic()
        active = [signalling.invite(n) for n in range(calls)]
        setup_s = time.monotonic() - t0
        ports = [p for call in active for p in call.ports]
        replay, prepare_s = None, 0.0
        if options.replays:
            replay = work / "media.replay"
            keys = [key for call in active for key in signalling.keys[call.call_id]]
            prepare_s = write_media(replay, options, len(ports), keys if options.srtp else None)
        check_alive(server, work)
        prober = Prober(sip_port)
        caller = CallProber(sip_port, options.srtp, options.codec)
        spy = profile_start(procs, server.pid, seconds, profile) if profile else None
        prober.start()
        caller.start()
        try:
            with Window(server.pid) as window:
                sent = run_sender(procs, sender, ports, seconds, window, replay)
                caller.stop_event.set()  # extra calls only while the media flows
                memory_active = memory_kb(server.pid)
                backlog_s, drain_s = wait_idle(window, ports)
        finally:
            prober.stop_event.set()
            caller.stop_event.set()
            prober.join()
            caller.join()
        if spy is not None:
            spy.wait(30)
        check_alive(server, work)
        t0 = time.monotonic()
        bye_status = Counter(signalling.bye(call) for call in active)
        docs = wait_complete(work / "recordings", calls, timeout_s=60 + 0.2 * calls)
        finish_s = time.monotonic() - t0
        check_alive(server, work)
    except TimeoutError as exc:
        check_alive(server, work)
        raise RunFailed(f"the server did not answer: {exc}") from exc
    finally:
        signalling.close()
        procs.stop(server)
    per_stream = round(seconds * PACKETS_PER_S)
    checks = check_recordings([d for d in docs if is_main(d)], calls, per_stream,
                              options.fft_checks, options.srtp, options.codec)
    extras = [d for d in docs if not is_main(d)]
    received = checks["packets_received"]
    # The larger of the RSS sampled once a second over the window and the one read as the
    # sender stopped: all N calls were active for both.
    rss_active_kb = max(window.rss_max_kb, memory_active["rss_kb"])
    return {
        "workers": options.workers,
        "server_cpus": options.server_cpus or "any",
        "srtp": options.srtp,
        "codec": options.codec.name,
        "rtpmap": options.codec.rtpmap,
        "fmtp": options.codec.fmtp,
        "wav_hz": options.codec.wav_hz,
        "setup_s": round(setup_s, 2),
        "replay": options.replays,  # the sender sent prepared packets
        "prepare_s": round(prepare_s, 2),  # the codec's payloads and the replay file
        "finish_s": round(finish_s, 2),
        "bye": {str(k): v for k, v in bye_status.items()},
        "server_exit": server.returncode,
        "window_s": round(window.wall_s, 3),
        "drain_s": round(drain_s, 2),
        "backlog_s": round(backlog_s, 2),  # until the kernel held no unread RTP for srs
        "cpu_s": round(window.cpu_s, 3),
        "core_pct": round(100 * window.cpu_s / window.wall_s, 1),
        "core_pct_max_1s": round(100 * max(window.per_second_cpu, default=0.0), 1),
        "core_pct_series": [round(100 * c, 1) for c in window.per_second_cpu],
        "us_per_packet": round(1e6 * window.cpu_s / max(1, received), 2),
        # The whole window's CPU (drain included) per second of audio sent to one stream.
        "us_per_stream_second": round(1e6 * window.cpu_s / (2 * calls * seconds), 1),
        # The main thread of every srs process (each runs one event loop); the rest is
        # the worker threads (decode, writes).
        "loop_thread_pct": round(100 * window.loop_cpu_s / window.wall_s, 1),
        "loop_us_per_packet": round(1e6 * window.loop_cpu_s / max(1, received), 2),
        "processes": window.tree.rows(window.wall_s),
        "process_count_max": len(window.tree.seen),
        "memory": {"before_invite": memory_before, "active": memory_active,
                   "rss_active_kb": rss_active_kb,
                   "rss_per_call_kb": round((rss_active_kb - memory_before["rss_kb"]) / calls, 1),
                   "pss_per_call_kb": round((memory_active["pss_kb"] - memory_before["pss_kb"])
                                            / calls, 1)},
        "cores_busy_pct": {str(c): round(100 * b / window.wall_s, 1)
                           for c, b in window.core_busy_s.items()},
        "udp": window.udp,
        "sender": sent,
        "sip_rtt": prober.summary(),
        "invite_rtt": {**caller.summary(),
                       "sessions_complete": sum(d["status"] == "complete" for d in extras)},
        "log_levels": log_levels(work),
        **checks,
        **({"profile": profile_summary(profile)} if profile else {}),
    }


def run_floor(procs: Processes, work: Path, sender: Path, floor: Path, streams: int,
              seconds: float, replay: Path | None = None) -> dict[str, Any]:
    """The C receiver on ``streams`` ports, pinned to core 0, under the same sender (and,
    for an SRTP run, the same packets: it only counts them)."""
    for _ in range(5):
        base = rtp_base(2 * streams + 2)
        proc = procs.start(["taskset", "-c", str(SERVER_CORE), str(floor), "127.0.0.1", str(base),
                            str(streams), f"{seconds + 120:g}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        if '"ready"' in line:
            break
        procs.stop(proc)  # a port in use: try another base
    else:
        raise RunFailed("the floor receiver could not bind its ports")
    try:
        ports = [base + 2 * i for i in range(streams)]
        with Window(proc.pid) as window:
            sent = run_sender(procs, sender, ports, seconds, window, replay)
            time.sleep(DRAIN_S)
        _signal_group(proc, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        procs.stop(proc)
    report = json.loads(out.strip().splitlines()[-1])
    return {
        "packets": report["packets"],
        "loss_packets": sent["sent"] - report["packets"],
        "window_s": round(window.wall_s, 3),
        "cpu_s": round(window.cpu_s, 3),
        "core_pct": round(100 * window.cpu_s / window.wall_s, 1),
        "us_per_packet": round(1e6 * window.cpu_s / max(1, report["packets"]), 2),
        "udp": window.udp,
        "sender": sent,
    }


def floor_replay(work: Path, streams: int, options: Options) -> Path:
    """Packets of the codec's (and under ``--srtp`` the SRTP) size for a floor run of its
    own (the floor does not decrypt)."""
    path = work / f"floor-{streams}.replay"
    write_media(path, options, streams)
    return path


def run_one(procs: Processes, work: Path, binaries: tuple[Path, Path], calls: int,
            options: Options) -> dict[str, Any]:
    sender, floor = binaries
    streams = 2 * calls
    run_dir = work / (f"n{calls}-w{options.workers or 0}-{options.codec.name}-"
                      f"{uuid.uuid4().hex[:6]}")
    run_dir.mkdir()
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    server = run_server(procs, run_dir, sender, calls, options)
    replay = run_dir / "media.replay" if options.replays else None
    floor_result = run_floor(procs, run_dir, sender, floor, streams, options.seconds, replay)
    if replay is not None:
        replay.unlink()
    return {
        "calls": calls,
        "streams": streams,
        "seconds": options.seconds,
        "packets_per_s": streams * PACKETS_PER_S,
        "loadavg_before": loadavg,
        "server": server,
        "floor": floor_result,
        "ratio": round(server["us_per_packet"] / max(1e-9, floor_result["us_per_packet"]), 2),
    }


# -- zero-loss capacity -------------------------------------------------------------------


@dataclass
class Step:
    calls: int
    verdict: str  # "ok", "loss" (the receiver's limit), "sender" (the sender's) or "failed"
    detail: str
    result: dict[str, Any] = field(default_factory=dict)


def srs_step(procs: Processes, work: Path, sender: Path, calls: int,
             options: Options) -> Step:
    """One run; a run that could not be done is tried once more (with a fresh server and
    RTP range: another program on the machine may have held ports of the first)."""
    failures = []
    for _ in range(2):
        run_dir = work / (f"cap-srs-{calls}-w{options.workers or 0}-{options.codec.name}-"
                          f"{uuid.uuid4().hex[:6]}")
        run_dir.mkdir()
        try:
            r = run_server(procs, run_dir, sender, calls, options)
            break
        except RunFailed as exc:
            failures.append(str(exc).splitlines()[0][:200])
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    else:
        return Step(calls, "failed", "; then ".join(failures))
    sent = r["sender"]
    detail = (f"loss {r['loss_packets']}, bad WAVs {r['incomplete_wavs']}/{2 * calls}, sender "
              f"{100 * sent['rate_share']:.1f}% of {sent['target_pps']} pkt/s, srv "
              f"{r['core_pct']:.0f}% core, OPTIONS p99 {r['sip_rtt']['p99_ms']} ms")
    summary = {k: r[k] for k in ("loss_packets", "incomplete_wavs", "core_pct", "us_per_packet",
                                 "drain_s", "problems")}
    summary["sender"] = sent
    if r["loss_packets"] == 0 and r["incomplete_wavs"] == 0:
        verdict = "ok" if sent["kept_pace"] else "sender"
    else:
        verdict = "loss"
    return Step(calls, verdict, detail, summary)


def floor_step(procs: Processes, work: Path, binaries: tuple[Path, Path], calls: int,
               options: Options) -> Step:
    sender, floor = binaries
    replay = floor_replay(work, 2 * calls, options) if options.replays else None
    try:
        r = run_floor(procs, work, sender, floor, 2 * calls, options.seconds, replay)
    except RunFailed as exc:
        return Step(calls, "failed", str(exc).splitlines()[0][:200])
    finally:
        if replay is not None:
            replay.unlink()
    sent = r["sender"]
    detail = (f"loss {r['loss_packets']}, sender {100 * sent['rate_share']:.1f}% of "
              f"{sent['target_pps']} pkt/s, floor {r['core_pct']:.0f}% core")
    paced = "ok" if sent["kept_pace"] else "sender"
    return Step(calls, paced if r["loss_packets"] == 0 else "loss", detail, r)


def find_capacity(probe: Any, start: int, cap: int, steps: int, label: str) -> dict[str, Any]:
    """The largest N for which ``probe(N)`` is ``ok``: doubling from ``start`` until a step
    is not, then bisection, ``steps`` probes at most, to 5 % (or 10 calls).  A step where
    the sender could not keep its pace bounds the search like a failure but is reported as
    the sender's limit, not the receiver's."""
    log: list[Step] = []
    good, bad = 0, None  # largest ok, smallest not ok
    n = max(1, min(start, cap))
    while len(log) < steps:
        print(f"capacity: {label} {n} calls ...", file=sys.stderr, flush=True)
        step = probe(n)
        log.append(step)
        print(f"capacity:   {label} {n}: {step.verdict} ({step.detail})", file=sys.stderr,
              flush=True)
        if step.verdict == "ok":
            good = n
        else:
            bad = n
        if bad is None:
            if n >= cap:
                break
            n = min(2 * n, cap)
        else:
            if bad - good <= max(10, good // 20):
                break
            n = (good + bad) // 2
    limit = next((s for s in log if s.calls == bad), None)
    if bad is None:
        reason = (f"not reached: every step up to {good} calls passed (--capacity-max)"
                  if good >= cap else "not reached: the steps ran out while doubling")
    elif limit is not None and limit.verdict == "sender":
        reason = (f"the sender's: at {bad} calls it could not keep its pace "
                  f"({100 * limit.result['sender']['rate_share']:.1f}% of the offered rate)")
    elif limit is not None and limit.verdict == "failed":
        reason = f"the run failed at {bad} calls: {limit.detail}"
    else:
        reason = f"the receiver's: loss or incomplete WAVs at {bad} calls"
    return {"capacity_calls": good, "first_bad_calls": bad, "limit": reason,
            "bounded": bad is not None,
            "sender_limited": limit is not None and limit.verdict == "sender",
            "steps": [{"calls": s.calls, "verdict": s.verdict, "detail": s.detail,
                       "result": s.result} for s in log]}


# -- output -------------------------------------------------------------------------------

def _sender_us_per_packet(sender: dict[str, Any]) -> str:
    return f"{1e6 * sender['cpu_s'] / max(1, sender['sent']):.1f}"


def _options_ms(rtt: dict[str, Any]) -> str:
    return f"{rtt['p50_ms']:.1f}/{rtt['p95_ms']:.0f}/{rtt['p99_ms']:.0f}/{rtt['max_ms']:.0f}"


def _invite_ms(rtt: dict[str, Any]) -> str:
    return f"{rtt['invite_p50_ms']:.1f}/{rtt['invite_p99_ms']:.0f}/{rtt['invite_max_ms']:.0f}"


COLUMNS = [
    ("calls", lambda r: r["calls"]),
    ("workers", lambda r: "-" if r["server"]["workers"] is None else r["server"]["workers"]),
    ("procs", lambda r: r["server"]["process_count_max"]),
    ("srtp", lambda r: "yes" if r["server"]["srtp"] else "no"),
    ("codec", lambda r: r["server"]["codec"]),
    ("streams", lambda r: r["streams"]),
    ("pkt/s", lambda r: r["packets_per_s"]),
    ("srv us/pkt", lambda r: f"{r['server']['us_per_packet']:.1f}"),
    ("srv us/stream-s", lambda r: f"{r['server']['us_per_stream_second']:.0f}"),
    ("srv %core",
     lambda r: f"{r['server']['core_pct']:.0f} (max {r['server']['core_pct_max_1s']:.0f})"),
    ("loop %core", lambda r: f"{r['server']['loop_thread_pct']:.0f}"),
    ("loss pkts", lambda r: f"{r['server']['loss_packets']} ({r['server']['loss_pct']:.3g}%)"),
    ("rcvbuf drops", lambda r: r["server"]["udp"]["RcvbufErrors"]),
    ("late pkts", lambda r: r["server"]["server_counters"].get("late", 0)),
    ("bad WAVs", lambda r: f"{r['server']['incomplete_wavs']}/{r['streams']}"),
    ("floor us/pkt", lambda r: f"{r['floor']['us_per_packet']:.1f}"),
    ("ratio", lambda r: f"{r['ratio']:.1f}x"),
    ("sender us/pkt", lambda r: _sender_us_per_packet(r["server"]["sender"])),
    ("sender rate %", lambda r: f"{100 * r['server']['sender']['rate_share']:.1f}"),
    ("RSS MB", lambda r: f"{r['server']['memory']['rss_active_kb'] / 1024:.0f}"),
    ("KB/call", lambda r: f"{r['server']['memory']['rss_per_call_kb']:.0f}"),
    ("OPTIONS p50/p95/p99/max ms", lambda r: _options_ms(r["server"]["sip_rtt"])),
    ("INVITE p50/p99/max ms", lambda r: _invite_ms(r["server"]["invite_rtt"])),
]


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    cells = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return lines


def table(results: list[dict[str, Any]]) -> str:
    lines = render([name for name, _ in COLUMNS],
                   [[str(get(r)) for _, get in COLUMNS] for r in results])
    notes = []
    for r in results:
        s = r["server"]
        other = s["cores_busy_pct"]
        if s["server_cpus"] == str(SERVER_CORE):
            foreign = other.get(str(SERVER_CORE), 0.0) - s["core_pct"]
            pinning = (f"server pinned to core {SERVER_CORE} (other load on core "
                       f"{SERVER_CORE}: {foreign:.0f}%)")
        else:
            pinning = (f"server on cpus {s['server_cpus']} (not core {SERVER_CORE} alone: other "
                       f"load cannot be told apart; the sender shares core {LOAD_CORE})")
        memory = s["memory"]
        invites = s["invite_rtt"]
        notes.append(
            f"N={r['calls']} workers={s['workers'] if s['workers'] is not None else '(not set)'}"
            f"{' SRTP ' + SUITE if s['srtp'] else ''} {s['rtpmap']}"
            f"{' ' + s['fmtp'] if s['fmtp'] else ''} ({s['wav_hz']} Hz WAVs"
            f"{'; replay file prepared in ' + str(s['prepare_s']) + ' s' if s['replay'] else ''}"
            f"): {r['seconds']:g} s of sending + "
            f"{s['drain_s']} s drain ({s['backlog_s']} s until srs's sockets were empty); "
            f"set-up {s['setup_s']} s, finish {s['finish_s']} s; "
            f"{pinning}; sender on core {LOAD_CORE}; cores busy % {other}; srs processes "
            f"{s['process_count_max']}; RSS {memory['before_invite']['rss_kb'] / 1024:.0f} MB "
            f"before the first INVITE, {memory['rss_active_kb'] / 1024:.0f} MB with the calls "
            f"(PSS {memory['pss_per_call_kb']:.0f} KB/call); OPTIONS {s['sip_rtt']['probes']} "
            f"probes, {s['sip_rtt']['over_1s']} over 1 s, {s['sip_rtt']['unanswered']} "
            f"unanswered; extra calls {invites['answered_200']}/{invites['calls']} answered 200 "
            f"(BYE p50/max {invites['bye_p50_ms']}/{invites['bye_max_ms']} ms"
            f"{', failures ' + str(invites['failures']) if invites['failures'] else ''}); "
            f"sender {s['sender']['achieved_pps']}/{s['sender']['target_pps']} pkt/s, latest "
            f"tick {1000 * s['sender']['late_max_s']:.0f} ms late; floor loss "
            f"{r['floor']['loss_packets']}; server log levels {s['log_levels']}")
        notes.extend(f"    {example}" for example in s["problem_examples"][:5])
        if "profile" in s:
            top = ", ".join(f"{f} {p}" for f, p in s["profile"]["self_pct"][:8])
            notes.append(f"    py-spy self %: {top}")
    return "\n".join([*lines, "", *notes])


def _exact(entry: dict[str, Any]) -> bool:
    """Whether the search found the receiver's own limit; otherwise (no step failed, or
    the sender ran out of pace first) the receiver's capacity is at least what passed."""
    return bool(entry["bounded"]) and not entry["sender_limited"]


def _at_least(entry: dict[str, Any]) -> str:
    return ("" if _exact(entry) else ">= ") + str(entry["capacity_calls"])


def _ratio(top: dict[str, Any], bottom: dict[str, Any]) -> str:
    value = f"{top['capacity_calls'] / max(1, bottom['capacity_calls']):.2f}"
    prefix = {(True, True): "", (True, False): "<= ", (False, True): ">= "}
    return prefix.get((_exact(top), _exact(bottom)), "~") + value


def capacity_table(capacity: dict[str, Any]) -> str:
    """One row per workers value: srs's and the floor's zero-loss capacity and ratios."""
    floor = capacity["floor"]
    rows, first = [], None
    for entry in capacity["srs"]:
        first = entry if first is None else first
        rows.append([str(entry["workers"] if entry["workers"] is not None else "-"),
                     entry["codec"], _at_least(entry), _at_least(floor), _ratio(entry, floor),
                     "1.00" if entry is first else _ratio(entry, first), entry["limit"]])
    lines = render(["workers", "codec", "srs zero-loss calls", "floor zero-loss calls", "srs/floor",
                    "vs first row", "srs limit"], rows)
    lines.append("")
    lines.append(f"floor limit: {floor['limit']} (packets of {floor['codec']})")
    lines.append(f"steps of {capacity['step_seconds']:g} s; a step passes with zero loss, every "
                 f"WAV complete (srs) and the sender at >= {100 * PACE_SHARE:.0f}% of the "
                 "offered rate")
    for entry in [*capacity["srs"], floor]:
        who = "floor" if entry is floor else f"srs workers={entry['workers']} {entry['codec']}"
        lines.extend(f"    {who} {s['calls']}: {s['verdict']} ({s['detail']})"
                     for s in entry["steps"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default=None,
                        help="concurrent two-stream calls; a comma-separated list runs each "
                             "(default 300, or none with --find-capacity)")
    parser.add_argument("--seconds", type=float, default=20.0, help="sending window (default 20)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--json-out", type=Path, metavar="FILE",
                        help="also write the JSON to FILE (the table is printed)")
    parser.add_argument("--fft-checks", type=int, default=8,
                        help="WAVs checked for the 1 kHz tone by FFT (all are checked for content)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record the server with py-spy during the window into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--workers", default=None, metavar="N[,N...]",
                        help="put [media] workers = N in the server's config (left out when "
                             "not given); a list runs each, one row per value")
    parser.add_argument("--server-cpus", default=None, metavar="CPUS",
                        help="taskset -c list for srs and its children, or 'any' for no pinning "
                             f"(default {SERVER_CORE} with one process, 'any' with workers > 1)")
    parser.add_argument("--srtp", action="store_true",
                        help=f"offer RTP/SAVP ({SUITE}) and send SRTP")
    parser.add_argument("--codec", default="PCMU", metavar="NAME[,NAME...]",
                        help="the codec offered and sent (default PCMU); a list runs each, one "
                             f"row per codec: {', '.join(c.name for c in CODECS.values())}")
    parser.add_argument("--find-capacity", action="store_true",
                        help="search the largest N with zero loss and complete WAVs, for srs "
                             "(each --workers value) and for the floor receiver")
    parser.add_argument("--capacity-start", type=int, default=150,
                        help="first N of the search (default 150)")
    parser.add_argument("--capacity-max", type=int, default=3000,
                        help="largest N the search tries (default 3000)")
    parser.add_argument("--capacity-steps", type=int, default=8,
                        help="runs per search at most (default 8)")
    parser.add_argument("--step-seconds", type=float, default=10.0,
                        help="sending window of each search step (default 10)")
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in (args.calls or ("" if args.find_capacity else "300")).split(",")
                  if c]
        workers: list[int | None] = ([int(w) for w in args.workers.split(",")]
                                     if args.workers else [None])
    except ValueError:
        parser.error("--calls and --workers take integers, comma-separated")
    if any(c < 1 for c in counts) or args.seconds < 2 or args.step_seconds < 2:
        parser.error("--calls must be >= 1, --seconds and --step-seconds >= 2")
    if any(w is not None and w < 1 for w in workers):
        parser.error("--workers must be >= 1")
    try:
        codecs = parse_codecs(args.codec)
    except ValueError as exc:
        parser.error(f"--codec: {exc}")
    missing = [reason for reason in map(unavailable, codecs) if reason is not None]
    if missing:
        parser.error(f"--codec: no encoder here for the payloads: {'; '.join(missing)}")
    if 2 * max([*counts, args.capacity_max if args.find_capacity else 0]) > 8192:
        parser.error("the sender takes at most 8192 streams (4096 calls)")
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("capacity: needs two cores (server on 0, load on 1)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CORE})  # the signalling client and probes share core 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="srs-capacity-"))
    results: list[dict[str, Any]] = []
    capacity: dict[str, Any] = {}
    try:
        binaries = build(work)
        for w in workers:
            for codec in codecs:
                options = Options(args.seconds, args.fft_checks, args.srtp, w,
                                  server_cpus(args.server_cpus, w), args.profile, codec)
                print(f"capacity: srs server cpus {options.server_cpus or 'any (not pinned)'}, "
                      f"sender on core {LOAD_CORE}, workers "
                      f"{w if w is not None else '(not in the config)'}, codec {codec.name}",
                      file=sys.stderr, flush=True)
                for calls in counts:
                    print(f"capacity: {calls} calls for {args.seconds:g} s ...",
                          file=sys.stderr, flush=True)
                    results.append(run_one(procs, work, binaries, calls, options))
                if args.find_capacity:
                    step = options.with_seconds(args.step_seconds)
                    found = find_capacity(
                        lambda n, o=step: srs_step(procs, work, binaries[0], n, o),
                        args.capacity_start, args.capacity_max, args.capacity_steps,
                        f"srs workers={w} {codec.name}")
                    capacity.setdefault("srs", []).append(
                        {"workers": w, "codec": codec.name, **found})
        if args.find_capacity:
            # One floor search, with the packets of the first codec: it only counts them.
            step = Options(args.step_seconds, srtp=args.srtp, codec=codecs[0])
            capacity["floor"] = {"codec": codecs[0].name, **find_capacity(
                lambda n: floor_step(procs, work, binaries, n, step),
                args.capacity_start, args.capacity_max, args.capacity_steps, "floor")}
            capacity["step_seconds"] = args.step_seconds
    except RunFailed as exc:
        print(f"capacity: run failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if args.keep:
            print(f"capacity: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        everything = {"rows": results, "capacity": capacity} if capacity else results
        if args.json_out and (results or capacity):
            args.json_out.write_text(json.dumps(everything, indent=2) + "\n")
        if args.json and (results or capacity):
            print(json.dumps(everything, indent=2), flush=True)
        else:
            if results:
                print(table(results), flush=True)
            if "floor" in capacity:
                print(("\n" if results else "") + capacity_table(capacity), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
