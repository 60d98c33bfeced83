"""Live audio out: how long audio takes from arriving at srs to leaving on the WebSocket.

N two-stream calls (the C sender's paced 20 ms PCMU, as ``capacity.py`` sends them) are
recorded with ``stream.url`` pointing at a Media Streams consumer in its own process; each
``media`` message's arrival at the consumer is taken against when the packet completing
its chunk arrived at srs: the session's origin (``started_at`` in the sidecar, on the
wall clock, to the ms) plus where srs placed that packet (the first packet where it
arrived, whose position the consumer finds where the tone begins; the rest 20 ms apart).
So the figure includes srs's receive path, the feed's pump (every 20 ms), encoding, the
queue, the loopback socket and the consumer's own read; not the sender's queueing.
Printed per row: the latency median, p90, p99 and max, the chunks the consumer got
against those the sender's packets make, the audio srs dropped for the consumer, and
srs's CPU.  One run, numbers side by side; nothing is asserted.

    .venv/bin/python bench/live_latency.py --calls 50,150,300 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity as cap


def _consume(ports: Any, stop: Any, out_path: str) -> None:
    """The consumer process: read every message, keep (arrival, timestamp) of the media."""
    from websockets.asyncio.server import ServerConnection, serve

    records: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        record: dict[str, Any] = {"call_id": None, "recv": [], "ts": [], "first_ms": None}
        records.append(record)
        recv, stamps = record["recv"], record["ts"]
        async for message in ws:
            now = time.time()
            if isinstance(message, str) and message.startswith('{"event":"media"'):
                at = message.index('"timestamp":"') + 13
                stamp = int(message[at:message.index('"', at)])
                stamps.append(stamp)
                recv.append(now)
                if record["first_ms"] is None:  # where the first packet's audio begins
                    at = message.index('"payload":"') + 11
                    ulaw = base64.b64decode(message[at:message.index('"', at)])
                    tone = [i for i, b in enumerate(ulaw) if b not in (0xFF, 0x7F)]
                    if tone:
                        record["first_ms"] = stamp + tone[0] / 8
            elif isinstance(message, str) and message.startswith('{"event":"start"'):
                record["call_id"] = json.loads(message)["start"]["srs"]["callId"]

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_queue=64) as server:
            ports.put(server.sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.1)
        Path(out_path).write_text(json.dumps(records))

    asyncio.run(main())


def run(calls: int, seconds: float, workers: int | None, work: Path, *,
        stream: bool = True) -> dict[str, Any]:
    procs = cap.Processes()
    sender, _ = cap.build(work)
    ports_q: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    out_path = work / "consumer.json"
    consumer = multiprocessing.Process(target=_consume, args=(ports_q, stop, str(out_path)))
    consumer.start()
    try:
        consumer_port = ports_q.get(timeout=30)
        config = cap.write_config(work, calls, seconds, workers)
        if stream:  # else the same calls unstreamed: what streaming costs, by CPU
            config.write_text(config.read_text()
                              + f'[stream]\nurl = ["ws://127.0.0.1:{consumer_port}/bench"]\n')
        server, sip_port = cap.start_server(procs, work, config, None)
        signalling = cap.Signalling(sip_port)
        try:
            time.sleep(0.5)
            active = [signalling.invite(n) for n in range(calls)]
            ports = [p for call in active for p in call.ports]
            with cap.Window(server.pid) as window:
                window_start = time.time()
                sent = cap.run_sender(procs, sender, ports, seconds, window)
                window_end = time.time()
                cap.wait_idle(window, ports)
            for call in active:
                signalling.bye(call)
            docs = cap.wait_complete(work / "recordings", calls, timeout_s=60 + 0.2 * calls)
        finally:
            signalling.close()
            procs.stop(server)
    finally:
        stop.set()
        consumer.join(30)
        if consumer.is_alive():
            consumer.terminate()
        procs.stop_all()
    records = json.loads(out_path.read_text())
    origin = {d["call_id"]: datetime.fromisoformat(d["started_at"].replace("Z", "+00:00"))
              .timestamp() for d in docs}
    latencies = []
    for record in records:
        base = origin.get(record["call_id"])
        first = record["first_ms"]
        if base is None or first is None:
            continue
        # srs places a stream's first packet where it arrived (ms after the origin) and
        # the rest by their timestamps, 20 ms apart: the packet that completes the chunk
        # at ts (its last sample, ts + 19.875 ms) arrived at first + 20 k ms.
        ts = np.array(record["ts"], dtype=np.float64)
        k = np.floor((ts + 20 - 0.125 - first) / 20)
        due = base + (first + 20 * k) / 1000
        # Only the sending window: before the first packet and after the last, srs sends
        # silence on its own schedule (half a second late), which is not arrival latency.
        inside = (due >= window_start + 0.1) & (due <= window_end - 0.1)
        latencies.append((np.array(record["recv"]) - due)[inside])
    lat_ms = 1000 * np.concatenate(latencies) if latencies else np.zeros(0)
    outs = [o for d in docs for o in d.get("streams_out", ())]
    return {
        "calls": calls, "workers": workers or "auto", "seconds": seconds,
        # The chunks the sender's packets make inside the measured part of the window.
        "chunks_expected": 2 * calls * round((window_end - window_start - 0.2)
                                             * cap.PACKETS_PER_S),
        "chunks_received": len(lat_ms),
        "sender_kept_pace": sent["kept_pace"],
        "latency_ms": {q: round(float(np.percentile(lat_ms, p)), 1) if len(lat_ms) else None
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "dropped_ms": sum(o["media_ms_dropped"] for o in outs),
        "reconnects": sum(o["reconnects"] for o in outs),
        "core_pct": round(100 * window.cpu_s / window.wall_s, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="300", help="comma-separated; one row each")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the same calls without streaming")
    args = parser.parse_args(argv)
    rows = []
    for calls in (int(c) for c in args.calls.split(",")):
        with tempfile.TemporaryDirectory(prefix="srs-live-") as tmp:
            row = run(calls, args.seconds, args.workers, Path(tmp))
        if not args.no_baseline:
            with tempfile.TemporaryDirectory(prefix="srs-live-") as tmp:
                plain = run(calls, args.seconds, args.workers, Path(tmp), stream=False)
            row["core_pct_unstreamed"] = plain["core_pct"]
            row["cpu_ratio"] = round(row["core_pct"] / max(plain["core_pct"], 0.1), 2)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'calls':>6} {'workers':>7} {'chunks got/sent':>17} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'dropped ms':>10} {'srs CPU %':>9} "
          f"{'unstreamed %':>12} {'ratio':>6}")
    for r in rows:
        lat = r["latency_ms"]
        print(f"{r['calls']:>6} {r['workers']!s:>7} "
              f"{r['chunks_received']:>8}/{r['chunks_expected']:<8} {lat['p50']!s:>7} "
              f"{lat['p90']!s:>7} {lat['p99']!s:>7} {lat['max']!s:>7} {r['dropped_ms']:>10} "
              f"{r['core_pct']:>9} {r.get('core_pct_unstreamed', '-')!s:>12} "
              f"{r.get('cpu_ratio', '-')!s:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
