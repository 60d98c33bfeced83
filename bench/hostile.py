"""An authenticated call recorded while unauthenticated hosts attack the server.

    .venv/bin/python bench/hostile.py [--seconds 10] [--rate 2000] [--idle 1000] [--keep]

``srs serve`` runs in its own process on core 0.  While one authenticated call from
127.0.0.1 sends a 440 Hz and a 1 kHz tone (real time, 50 packets a second per stream):

* 127.0.0.2 sends forged INVITEs (no credential, each a new Call-ID) at ``--rate`` a
  second over UDP, from a separate process on core 1;
* 127.0.0.3 holds ``--idle`` idle TCP connections to the SIP port;
* 127.0.0.4 sends RTP with a 3 kHz tone to the call's media ports at the same pace.

It prints, side by side with the same call on a quiet server: the call's INVITE and BYE
answer times, the forged INVITEs sent and answered, the connections the idle host got,
and what was recorded: each track's dominant frequency, the share of its energy at 3 kHz,
and whether every sample of the first second equals what was sent.  Numbers are results;
the exit status is 1 only when the run could not be done.  Sends only to loopback.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from srs.codecs.g711 import pcmu_decode, pcmu_encode  # noqa: E402
from tests.sipclient import SipClient, rtp_packet, tone  # noqa: E402

TOKEN = "bench-token"
FORGER, HOARDER, OFF_PATH = "127.0.0.2", "127.0.0.3", "127.0.0.4"
TONES = (440.0, 1000.0)
OFF_PATH_HZ = 3000.0


def config(work: Path, seconds: float) -> Path:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    base = 20000 if low > 21000 else 10000
    path = work / "srs.toml"
    path.write_text(f"""\
[sip]
host = "0.0.0.0"
ephemeral_ports = true
tls_port = 0
first_message_timeout_s = {seconds + 60:.0f}
[auth]
tokens = ["{TOKEN}"]
[media]
host = "127.0.0.1"
port_min = {base}
port_max = {base + 400}
[recordings]
dir = "{work / 'recordings'}"
min_free_mb = 0
[management]
port = 0
[server]
state_dir = "{work / 'state'}"
[log]
level = "info"
format = "json"
""")
    return path


def start(work: Path, seconds: float) -> tuple[subprocess.Popen[bytes], int, int]:
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "srs", "serve",
                             "--config", str(config(work, seconds))], stdout=log,
                            stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"srs exited: {(work / 'server.log').read_text()[-2000:]}")
        for line in (work / "server.log").read_text().splitlines():
            if line.startswith("{") and '"listening"' in line:
                event = json.loads(line)
                return proc, int(event["udp"]), int(event["tcp"])
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("srs logged no listening event in 30 s")


def forge(port: int, rate: float, seconds: float, sent: Any, answered: Any) -> None:
    """Forged INVITEs at ``rate`` a second, each a new dialog, no credential."""
    os.sched_setaffinity(0, {1})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((FORGER, 0))
    sock.setblocking(False)
    local = sock.getsockname()[1]
    template = ("INVITE sip:srs@127.0.0.1:{port} SIP/2.0\r\n"
                "Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{n}\r\nMax-Forwards: 70\r\n"
                "From: <sip:x@{host}>;tag={n}\r\nTo: <sip:srs@127.0.0.1>\r\n"
                "Call-ID: forged-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    started = time.monotonic()
    count = got = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while count < due:
            data = template.format(port=port, host=FORGER, local=local, n=uuid.uuid4().hex)
            try:
                sock.sendto(data.encode(), ("127.0.0.1", port))
                count += 1
            except BlockingIOError:
                break
        got += _drain(sock)
        time.sleep(0.002)
    time.sleep(0.5)
    sent.value, answered.value = count, got + _drain(sock)


def _drain(sock: socket.socket) -> int:
    """How many datagrams were waiting (the answers to what was forged)."""
    count = 0
    try:
        while True:
            sock.recv(65535)
            count += 1
    except BlockingIOError:
        return count


def hoard(port: int, count: int) -> tuple[list[socket.socket], int]:
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((HOARDER, 0))
        try:
            sock.connect(("127.0.0.1", port))
            held.append(sock)
        except OSError:
            sock.close()
    time.sleep(1.0)
    alive = 0
    for sock in held:  # the server closes what it refused at accept
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return held, alive


def call(sip_port: int, seconds: float, off_path: bool) -> dict[str, Any]:
    client = SipClient("127.0.0.1", sip_port, token=TOKEN)
    started = time.monotonic()
    dialog, answer = client.invite()
    invite_ms = (time.monotonic() - started) * 1000
    if answer.status != 200:
        raise SystemExit(f"the authenticated INVITE got {answer.status}")
    ports = dialog.ports
    mine = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in ports]
    theirs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    theirs.bind((OFF_PATH, 0))
    packets = int(seconds * 50)
    sent: list[list[np.ndarray]] = [[] for _ in ports]
    t0 = time.monotonic()
    for i in range(packets):
        for k, (sock, port) in enumerate(zip(mine, ports, strict=True)):
            payload = pcmu_encode(tone(TONES[k], i * 160, 160))
            sent[k].append(pcmu_decode(payload))
            sock.sendto(rtp_packet(i, i * 160, 0x1000 + k, payload), ("127.0.0.1", port))
            if off_path:
                noise = pcmu_encode(tone(OFF_PATH_HZ, i * 160, 160, amplitude=16000))
                theirs.sendto(rtp_packet(i, i * 160, 0x2000 + k, noise), ("127.0.0.1", port))
        time.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
    started = time.monotonic()
    bye = client.bye(dialog)
    bye_ms = (time.monotonic() - started) * 1000
    for sock in [*mine, theirs]:
        sock.close()
    client.close()
    return {"call_id": dialog.call_id, "invite_ms": invite_ms, "bye_ms": bye_ms,
            "bye": bye.status, "sent": [np.concatenate(s) for s in sent]}


def check(recordings: Path, result: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for doc_path in recordings.glob("*/*/*/*/session.json"):
            doc = json.loads(doc_path.read_text())
            if doc["call_id"] == result["call_id"] and doc["status"] != "recording":
                return _tracks(doc_path.parent, doc, result["sent"])
        time.sleep(0.1)
    raise SystemExit("the call's session was not finalised within 30 s")


def _tracks(directory: Path, doc: dict[str, Any], sent: list[np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {"status": doc["status"], "tracks": []}
    for k, label in enumerate(("inbound", "outbound")):
        samples, _ = sf.read(directory / f"{label}.wav", dtype="int16")
        spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
        near = np.abs(freqs - OFF_PATH_HZ) < 20
        expected = sent[k][:8000]
        nonzero = np.flatnonzero(samples)
        lead = int(np.flatnonzero(expected)[0])  # the tone starts at sin(0) = 0
        first = int(nonzero[0]) - lead if len(nonzero) else 0
        exact = bool(np.array_equal(samples[first:first + len(expected)], expected))
        out["tracks"].append({
            "label": label, "peak_hz": float(freqs[np.argmax(spectrum)]),
            "off_path_energy": float(spectrum[near].sum() / max(spectrum.sum(), 1e-9)),
            "first_second_exact": exact,
            "dropped": next(s["packets"]["dropped"] for s in doc["streams"]
                            if s["label"] == label)})
    return out


def run(seconds: float, rate: float, idle: int, attacked: bool, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="srs-hostile-"))
    proc, sip_port, tcp_port = start(work, seconds)
    held: list[socket.socket] = []
    forger = None
    sent, answered = multiprocessing.Value("l", 0), multiprocessing.Value("l", 0)
    try:
        alive = 0
        if attacked:
            held, alive = hoard(tcp_port, idle)
            forger = multiprocessing.Process(target=forge,
                                             args=(sip_port, rate, seconds + 2, sent, answered))
            forger.start()
            time.sleep(1.0)
        result = call(sip_port, seconds, attacked)
        if forger is not None:
            forger.join()
        recorded = check(work / "recordings", result)
        return {"attacked": attacked, "invite_ms": result["invite_ms"],
                "bye_ms": result["bye_ms"], "bye": result["bye"],
                "forged_sent": sent.value, "forged_answered": answered.value,
                "forged_rate": sent.value / (seconds + 2), "idle_held": alive,
                "idle_tried": idle if attacked else 0, **recorded}
    finally:
        for sock in held:
            sock.close()
        if forger is not None and forger.is_alive():
            forger.kill()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/hostile.py")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="forged INVITEs a second")
    parser.add_argument("--idle", type=int, default=1000, help="idle TCP connections")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet = run(args.seconds, args.rate, args.idle, False, args.keep)
    attacked = run(args.seconds, args.rate, args.idle, True, args.keep)
    if args.json:
        print(json.dumps([quiet, attacked], indent=1))
        return 0
    for row in (quiet, attacked):
        name = "attacked" if row["attacked"] else "quiet"
        print(f"{name:9} INVITE {row['invite_ms']:6.1f} ms  BYE {row['bye_ms']:6.1f} ms "
              f"({row['bye']})  status {row['status']}")
        if row["attacked"]:
            print(f"{'':9} forged INVITEs {row['forged_sent']:,} at "
                  f"{row['forged_rate']:,.0f}/s, answered {row['forged_answered']:,}; idle "
                  f"TCP held {row['idle_held']} of {row['idle_tried']}")
        for t in row["tracks"]:
            print(f"{'':9} {t['label']:8} peak {t['peak_hz']:7.1f} Hz, 3 kHz share "
                  f"{t['off_path_energy']:.2e}, first second exact: {t['first_second_exact']}"
                  f", dropped {t['dropped']}")
    print(f"INVITE time attacked/quiet: {attacked['invite_ms'] / quiet['invite_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
