"""The tick's file work per stream-second: what the worker thread spends beside the packets.

Run: ``.venv/bin/python bench/bench_tick.py [streams] [seconds]`` (default 200 streams,
10 s).  For ``streams`` files in a temporary directory it times, per stream and second of
audio, CPU (``thread_time``) and wall time of:

* ``StreamOutput.write`` of one second of 20 ms PCMU packets (decode, lay out, append, the
  flush that writes the samples and patches the WAV header);
* the same second with no packets (silence written ``floor`` late: hold, a quiet sender);
* the session sidecar rewrite (write, fsync, rename, fsync of the directory), which
  happens every ``SIDECAR_EVERY_TICKS`` ticks per session of two streams, given per
  stream-second.

No assertions: timing goals live here, not in tests (docs/architecture.md, "Hot path").
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from srs import codecs
from srs.recording.output import StreamOutput
from srs.recording.policy import SIDECAR_EVERY_TICKS
from srs.recording.sidecar import replace_atomically
from srs.rtp.track import Placed

RATE = 8000
PACKETS_PER_S = 50
SIDECAR_BYTES = 4096  # a two-stream session's session.json, about


def second_of_packets(second: int) -> list[Placed]:
    payload = bytes(range(160))
    return [Placed((second * PACKETS_PER_S + i) * 160, 0, payload, 0xABCD,
                   (second * PACKETS_PER_S + i) * 160) for i in range(PACKETS_PER_S)]


def timed(label: str, work: Callable[[], None], units: int) -> None:
    cpu, wall = time.thread_time(), time.perf_counter()
    work()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    print(f"{label:<44} {cpu / units * 1e6:7.1f} us CPU {wall / units * 1e6:8.1f} us wall")


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print(f"{streams} streams x {seconds} s, Python {sys.version.split()[0]}; per stream-second:")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outputs = [StreamOutput(root / f"s{i}.wav", {0: codecs.PCMU}, RATE, RATE)
                   for i in range(streams)]
        batches = [second_of_packets(s) for s in range(2 * seconds)]

        def audio() -> None:
            for second in range(seconds):
                horizon = (second + 1) * RATE
                for output in outputs:
                    output.write(batches[second], horizon, horizon)

        def silence() -> None:
            for second in range(seconds, 2 * seconds):
                horizon = (second + 1) * RATE
                for output in outputs:
                    output.write([], horizon, horizon)

        data = b"x" * SIDECAR_BYTES
        sessions = max(1, streams // 2)
        rewrites = max(1, seconds // SIDECAR_EVERY_TICKS)
        (root / "sessions").mkdir()
        dirs = [root / "sessions" / str(i) for i in range(sessions)]
        for directory in dirs:
            directory.mkdir()

        def sidecars() -> None:
            for _ in range(rewrites):
                for directory in dirs:
                    replace_atomically(directory / "session.json", data)

        timed("write 1 s of packets (decode, lay out, flush)", audio, streams * seconds)
        timed("write 1 s of silence", silence, streams * seconds)
        # rewrites per session cover rewrites * SIDECAR_EVERY_TICKS seconds of two streams
        timed(f"sidecar rewrite (every {SIDECAR_EVERY_TICKS} s, 2 streams)", sidecars,
              sessions * 2 * rewrites * SIDECAR_EVERY_TICKS)
        for output in outputs:
            output.finish(2 * seconds * RATE)


if __name__ == "__main__":
    main()
