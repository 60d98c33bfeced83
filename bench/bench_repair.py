"""Start-up repair over an archive of finished sessions, with and without the index.

Run: ``.venv/bin/python bench/bench_repair.py [sessions]`` (default 10000).  Writes that
many finished sessions (a ``session.json`` each, status ``complete``, in the dated
layout, 100 a day) into a temporary directory, then times
:func:`srs.recording.repair.repair_recordings` as a start without the index does it (every
sidecar opened and read), the first start with it (the same, and the index written) and
the starts after (the index read, no sidecar opened).  Each is best of three, and
the page cache is warm in all of them: on a cold disk the difference is larger.  Prints
milliseconds and the ratio; it never asserts on time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from timing import best_of

from srs.recording.layout import create_session_dir
from srs.recording.repair import repair_recordings
from srs.recording.sidecar import EndReason, SessionStatus, write_sidecar
from tests.recording.sidecars import STARTED_AT, recording_sidecar


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    done = replace(recording_sidecar(), status=SessionStatus.COMPLETE, ended_at=STARTED_AT,
                   end_reason=EndReason.BYE)
    with tempfile.TemporaryDirectory() as tmp:
        recordings, index = Path(tmp) / "rec", Path(tmp) / "state" / "repair-index"
        for i in range(count):
            layout = create_session_dir(recordings, STARTED_AT + timedelta(days=i // 100),
                                        f"s{i}")
            write_sidecar(layout.sidecar, done)
        plain = best_of(3, lambda: repair_recordings(recordings))
        start = time.perf_counter()
        first = repair_recordings(recordings, index=index)
        first_s = time.perf_counter() - start
        indexed = best_of(3, lambda: repair_recordings(recordings, index=index))
        report = repair_recordings(recordings, index=index)
    assert first.sessions_seen == count and report.sessions_indexed == count
    print(f"{count} finished sessions, {count // 100} days")
    print(f"without the index:       {plain * 1000:8.1f} ms")
    print(f"first start with it:     {first_s * 1000:8.1f} ms (reads all, writes the index)")
    print(f"later starts with it:    {indexed * 1000:8.1f} ms")
    print(f"ratio without / with:    {plain / indexed:8.1f}")


if __name__ == "__main__":
    main()
