"""Scale-out: two ``srs serve`` nodes behind Kamailio's dispatcher, on loopback.

Kamailio runs deploy/kamailio/kamailio.cfg unchanged, pointed at the nodes by a generated
dispatcher list (tests/deploy/kamailio.py); ``srs call`` places every call at Kamailio's
port.  RTP does not pass through Kamailio: each node answers with its own 127.0.0.1 media
ports, so the audio goes straight to the node that took the call.

What is checked, from the nodes' recordings (``session.json``, WAVs) and logs:

* every Call-ID ``srs call`` printed is recorded exactly once, on one node, ``complete``
  with ``end_reason`` ``bye`` (the BYE followed the record-route to the right node), with
  as many RTP packets as the client sent and its tones (440 Hz inbound, 1000 Hz outbound);
* with both nodes healthy, round-robin gives each node half of the calls;
* a node at its session limit answers 503, and Kamailio's failure route sends the INVITE
  to the other node;
* a node that is gone (stopped with SIGTERM) does not answer; Kamailio gives up on it
  after ``NODE_TIMEOUT_MS`` and the INVITE lands on the other node.

Nothing here depends on OPTIONS probe timing: the full node keeps answering OPTIONS (it
stays in rotation and refuses each INVITE it gets), and for the gone node the probes are
slowed to one a minute, so only the failure route can take it out of rotation.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from tests.deploy.kamailio import dispatcher_list, kamailio_command
from tests.deploy.tools import tool
from tests.e2e.audio import dominant_frequency
from tests.e2e.conftest import (
    ServerPool,
    SrsServer,
    free_udp_tcp_port,
    kill_group,
    pick_rtp_range,
    read_sidecar,
    start_process,
)
from tests.e2e.sipwire import sip_options

RATE_HZ = 8000
TONES_HZ = {"inbound": 440.0, "outbound": 1000.0}  # what `srs call` sends by default
LOUD_PEAK = 10000  # the tones are at half scale: ~16000 after G.711; silence is a few units
READY_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 60.0
RECORDED_TIMEOUT_S = 20.0
SLOW_PROBES_S = 60  # longer than any test here: the dispatcher never probes a node

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- srs call


@dataclass(frozen=True)
class PlacedCall:
    number: int
    call_id: str
    call_sid: str
    sent: dict[str, int]  # packets per label


@dataclass(frozen=True)
class CallRun:
    returncode: int
    output: str  # stdout and stderr
    calls: dict[str, PlacedCall]  # by Call-ID

    def report(self) -> str:
        return f"srs call exited {self.returncode}; output:\n{self.output[-4000:]}"


_INVITE = re.compile(r"^call (\d+): INVITE \S+ over \w+, Call-ID (\S+), CallSid (CA[0-9a-f]{32})$",
                     re.M)
_SENT = re.compile(r"^call (\d+): sent (.+)$", re.M)


def parse_call_output(output: str) -> dict[str, PlacedCall]:
    sent: dict[int, dict[str, int]] = {}
    for number, counts in _SENT.findall(output):
        sent[int(number)] = {label: int(n) for n, label in
                             re.findall(r"(\d+) packets on ([\w-]+)", counts)}
    calls = {}
    for number, call_id, call_sid in _INVITE.findall(output):
        calls[call_id] = PlacedCall(int(number), call_id, call_sid, sent.get(int(number), {}))
    return calls


def srs_call_env() -> dict[str, str]:
    """The caller's environment without SRS_* (no SRS_CALL_TOKEN leaks in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SRS_")}


def start_srs_call(work: Path, name: str, port: int, token: str, *args: str
                   ) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = work / f"{name}.log"
    proc = start_process(
        [sys.executable, "-m", "srs", "call", f"sip:127.0.0.1:{port}", f"--token={token}", *args],
        log_path=log_path, env=srs_call_env(), cwd=work)
    return proc, log_path


def run_srs_call(work: Path, name: str, port: int, token: str, *args: str) -> CallRun:
    """``srs call`` to 127.0.0.1:port until it exits; its process group is killed on the way
    out whatever happens."""
    proc, log_path = start_srs_call(work, name, port, token, *args)
    try:
        proc.wait(CALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"srs call still running after {CALL_TIMEOUT_S} s:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}")
    finally:
        kill_group(proc)
    output = log_path.read_text(errors="replace")
    return CallRun(proc.returncode, output, parse_call_output(output))


# --------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    """Kamailio on ``port`` in front of ``nodes`` (all with the same token)."""

    work: Path
    nodes: list[SrsServer]
    port: int
    kamailio: subprocess.Popen[bytes]
    kamailio_log_path: Path
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.nodes[0].token

    def kamailio_log(self) -> str:
        return self.kamailio_log_path.read_text(errors="replace")

    def call(self, *args: str) -> CallRun:
        return run_srs_call(self.work, "srs-call", self.port, self.token, *args)

    def stats(self) -> dict[str, int]:
        """Kamailio's core counters (``kamcmd stats.get_statistics core:``), by name."""
        done = subprocess.run(
            [tool("kamcmd", "kamailio"), "-s", f"unix:{self.work / 'kamailio_ctl'}",
             "stats.get_statistics", "core:"], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stdout + done.stderr
        return {name.removeprefix("core:"): int(value)
                for name, value in re.findall(r"^(core:\w+) = (\d+)$", done.stdout, re.M)}

    def uri(self, node: SrsServer) -> str:
        """The node as it stands in the dispatcher list and Kamailio's log."""
        return f"sip:127.0.0.1:{node.sip_port};transport=udp"

    def close(self) -> None:
        for proc in self.others:
            kill_group(proc)
        kill_group(self.kamailio, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.kamailio.wait(10)
        kill_group(self.kamailio)


def disjoint_rtp_range(taken: list[tuple[int, int]]) -> tuple[int, int]:
    """An RTP range (below the ephemeral ports) that overlaps none of ``taken``."""
    for _ in range(100):
        low, high = pick_rtp_range()
        if all(high < other_low or low > other_high for other_low, other_high in taken):
            return low, high
    raise RuntimeError(f"no RTP range apart from {taken}")


def with_define(args: list[str], name: str, value: str) -> list[str]:
    """``args`` with the ``-A name=...`` define replaced (Kamailio refuses a second one)."""
    out = list(args)
    for i in range(1, len(out)):
        if out[i - 1] == "-A" and out[i].startswith(f"{name}="):
            out[i] = f"{name}={value}"
            return out
    raise AssertionError(f"kamailio_command sets no {name}")


def wait_kamailio_ready(cluster: Cluster) -> None:
    """Kamailio answers OPTIONS addressed to itself (kamailio.cfg's request_route)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if cluster.kamailio.poll() is not None:
            pytest.fail(f"kamailio exited with {cluster.kamailio.returncode}:\n"
                        f"{cluster.kamailio_log()[-4000:]}")
        response = sip_options(cluster.port, timeout_s=0.3)
        if response is not None and response.status == 200:
            return
    pytest.fail(f"kamailio did not answer OPTIONS within {READY_TIMEOUT_S} s:\n"
                f"{cluster.kamailio_log()[-4000:]}")


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``make(node_configs, probe_interval_s=None)``: one srs node per config (extra TOML
    sections, as for ``ServerPool.make``), all with the first node's token, and Kamailio
    in front of them.  Kamailio, the nodes and any process put in ``Cluster.others`` are
    killed at teardown, by process group."""
    kamailio = tool("kamailio", "kamailio")
    pool = ServerPool(tmp_path)
    clusters: list[Cluster] = []

    def make(node_configs: list[dict[str, dict[str, Any]]],
             probe_interval_s: int | None = None) -> Cluster:
        nodes = [pool.make(start=False, **config) for config in node_configs]
        taken: list[tuple[int, int]] = []
        for node in nodes:
            node.rtp_min, node.rtp_max = disjoint_rtp_range(taken)
            taken.append((node.rtp_min, node.rtp_max))
            node.token = nodes[0].token
            node.start()
        list_file = tmp_path / "dispatcher.list"
        list_file.write_text(dispatcher_list([("127.0.0.1", n.sip_port) for n in nodes]))
        port = free_udp_tcp_port()  # a probe: Kamailio is told its port on the command line
        args = kamailio_command(kamailio, tmp_path, port=port, list_file=list_file)
        if probe_interval_s is not None:
            args = with_define(args, "PROBE_INTERVAL_S", str(probe_interval_s))
        log_path = tmp_path / "kamailio.log"
        cluster = Cluster(tmp_path, nodes, port, start_process(args, log_path=log_path),
                          log_path)
        clusters.append(cluster)
        wait_kamailio_ready(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()
        pool.kill_all()


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Recording:
    node: int  # index into Cluster.nodes
    directory: Path
    sidecar: dict[str, Any]


def recordings(nodes: list[SrsServer]) -> list[Recording]:
    """Every session directory of every node, with its sidecar (``{}`` if unreadable)."""
    return [Recording(i, d, read_sidecar(d) or {})
            for i, node in enumerate(nodes) for d in node.session_dirs()]


def wait_recorded(cluster: Cluster, call_ids: set[str]) -> list[Recording]:
    """Wait until each Call-ID has a finished sidecar on some node; then every recording of
    every node (so that a second copy of a call, finished or not, is seen too)."""
    deadline = time.monotonic() + RECORDED_TIMEOUT_S
    while True:
        found = recordings(cluster.nodes)
        finished = {r.sidecar.get("call_id") for r in found
                    if r.sidecar.get("status") not in (None, "recording")}
        if call_ids <= finished:
            return found
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- node {i + 1}:\n{n.log_tail(30)}"
                             for i, n in enumerate(cluster.nodes))
            pytest.fail(f"not recorded within {RECORDED_TIMEOUT_S} s: "
                        f"{sorted(call_ids - finished)}\n{logs}")
        time.sleep(0.1)


def check_recorded_once(cluster: Cluster, run: CallRun, count: int) -> dict[str, Recording]:
    """Every call of ``run`` recorded exactly once, completely, by BYE, with the audio the
    client sent; returns the recordings by Call-ID."""
    assert run.returncode == 0, run.report()
    assert f"{count} call(s): {count} ok, 0 failed" in run.output, run.report()
    assert len(run.calls) == count, run.report()
    found = wait_recorded(cluster, set(run.calls))
    by_call: dict[str, list[Recording]] = {}
    for recording in found:
        by_call.setdefault(recording.sidecar.get("call_id", "?"), []).append(recording)
    once: dict[str, Recording] = {}
    for call_id, placed in run.calls.items():
        copies = by_call.get(call_id, [])
        assert len(copies) == 1, (
            f"call {placed.number} ({call_id}) recorded {len(copies)} times: "
            f"{[(r.node + 1, str(r.directory)) for r in copies]}")
        (recording,) = copies
        doc = recording.sidecar
        assert doc["status"] == "complete" and doc["end_reason"] == "bye", doc
        assert doc["twilio"]["call_sid"] == placed.call_sid
        # The INVITE reached the node through Kamailio, not straight from the client.
        assert (doc["source"]["address"], doc["source"]["port"]) == ("127.0.0.1", cluster.port)
        received = {s["label"]: s["packets"]["received"] for s in doc["streams"]}
        assert received == placed.sent, (call_id, received, placed.sent)
        assert all(n > 0 for n in received.values())
        once[call_id] = recording
    return once


def check_dialogs_went_through_kamailio(cluster: Cluster, count: int) -> dict[str, int]:
    """Kamailio received the client's INVITE, ACK and BYE of each call and relayed them to a
    node (the ACK statelessly, the BYE in a transaction the node answered 200): without
    record-routing the client would send its ACK and BYE straight to the node's Contact."""
    stats = cluster.stats()
    assert stats["rcv_requests_invite"] == count, stats
    assert stats["rcv_requests_ack"] >= count, stats
    assert stats["fwd_requests"] == stats["rcv_requests_ack"], stats
    assert stats["rcv_requests_bye"] == count, stats
    assert stats["rcv_replies_2xx_bye"] == count, stats
    return stats


def check_tones(recording: Recording) -> None:
    for label, freq_hz in TONES_HZ.items():
        samples, rate = sf.read(recording.directory / f"{label}.wav", dtype="int16")
        assert rate == RATE_HZ and len(samples) > 0
        assert abs(samples).max() > LOUD_PEAK, f"{recording.directory}/{label}.wav is silent"
        assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq_hz, abs=5)


def events(node: SrsServer, name: str) -> list[dict[str, Any]]:
    return [e for e in node.log_events() if e.get("event") == name]


# --------------------------------------------------------------------------- the tests


def test_calls_are_spread_over_the_nodes_and_each_recorded_once(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory([{}, {}])
    run = cluster.call("--calls", "10", "--rate", "5", "--duration", "2")
    once = check_recorded_once(cluster, run, 10)

    per_node = [sum(1 for r in once.values() if r.node == i) for i in range(2)]
    # Round-robin (DISPATCHER_ALG 4) over two nodes that took every INVITE they got.
    assert per_node == [5, 5], per_node
    for node in cluster.nodes:
        assert events(node, "invite_rejected") == []
    assert len(recordings(cluster.nodes)) == 10
    stats = check_dialogs_went_through_kamailio(cluster, 10)
    assert stats["rcv_replies_5xx_invite"] == 0, stats
    for recording in once.values():
        check_tones(recording)


def test_a_full_node_answers_503_and_the_call_lands_on_the_other(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory([{"server": {"max_sessions": 1}}, {}])
    full, other = cluster.nodes
    # One long call straight to the first node fills it.
    held, held_log = start_srs_call(cluster.work, "held-call", full.sip_port, cluster.token,
                                    "--duration", "60")
    cluster.others.append(held)
    started = full.wait_for_log(lambda e: e.get("event") == "session_started", timeout_s=15)

    run = cluster.call("--calls", "6", "--rate", "5", "--duration", "1")
    once = check_recorded_once(cluster, run, 6)
    assert {r.node for r in once.values()} == {1}, "a call was recorded on the full node"

    refused = [e for e in events(full, "invite_rejected") if e.get("call_id") in run.calls]
    # Round-robin offers the full node every other INVITE: at least one of six.
    assert refused, f"the full node saw none of the calls:\n{full.log_tail()}"
    stats = check_dialogs_went_through_kamailio(cluster, 6)
    assert stats["rcv_replies_5xx_invite"] >= len(refused), stats
    assert all(e["status"] == 503 and e["reason"] == "session limit reached" for e in refused)
    kamailio_log = cluster.kamailio_log()
    for event in refused:
        call_id = event["call_id"]
        assert event["src"] == f"127.0.0.1:{cluster.port}"
        assert f"{call_id}: trying the next srs node {cluster.uri(other)}" in kamailio_log
        check_tones(once[call_id])
    # The full node holds the one call that filled it and nothing else.
    assert [r.sidecar.get("call_id") for r in recordings([full])] == [started["call_id"]]
    assert held.poll() is None, held_log.read_text()


def test_a_stopped_node_times_out_and_the_call_lands_on_the_other(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory([{}, {}], probe_interval_s=SLOW_PROBES_S)
    alive, gone = cluster.nodes
    assert gone.stop() == 0, gone.log_tail()

    run = cluster.call("--calls", "6", "--rate", "5", "--duration", "1")
    once = check_recorded_once(cluster, run, 6)
    assert {r.node for r in once.values()} == {0}
    assert recordings([gone]) == []
    stats = check_dialogs_went_through_kamailio(cluster, 6)
    assert stats["rcv_replies_5xx_invite"] == 0, stats

    # Round-robin offered the gone node one of the first two INVITEs; only a timeout in
    # the failure route can have taken it out of rotation (no probe within the test).
    kamailio_log = cluster.kamailio_log()
    timed_out = [call_id for call_id in run.calls
                 if f"srs node {cluster.uri(gone)} did not answer {call_id}" in kamailio_log]
    assert timed_out, f"no INVITE timed out at the stopped node:\n{kamailio_log[-4000:]}"
    for call_id in timed_out:
        assert f"{call_id}: trying the next srs node {cluster.uri(alive)}" in kamailio_log
        check_tones(once[call_id])
