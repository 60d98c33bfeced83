"""A stream whose file hits a storage error is still finalised (closed, playable)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import soundfile as sf

SCRIPT = textwrap.dedent('''
    import resource, signal, sys
    from pathlib import Path
    from srs import codecs
    from srs.recording.output import StreamOutput
    from srs.recording.wav import RecordingIOError
    from srs.rtp.track import TrackTimeline
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    timeline = TrackTimeline(0.0, 8000)
    out = StreamOutput(Path(sys.argv[1]), {0: codecs.PCMU}, 8000, 8000)
    failed_at = None
    for second in range(1, 8):
        placed = []
        for i in range((second - 1) * 50, second * 50):
            packet = bytes([0x80, 0, i >> 8, i & 255]) + (160 * i).to_bytes(4, "big") + bytes(4) + bytes([0x90]) * 160
            placed += timeline.receive(packet, 0.02 * i)
        try:
            out.write(placed + timeline.drain(second), timeline.wall_offset(second - 0.4), 0)
        except RecordingIOError:
            failed_at = failed_at or second
    out.add_last(timeline.flush())
    out.finish(timeline.finish(7.0))
    print(failed_at, out.failed is not None, out.writer.closed)
''')


def test_finish_after_a_storage_error_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    failed_at, failed, closed = result.stdout.split()
    assert int(failed_at) >= 1 and failed == "True" and closed == "True"
    data, rate = sf.read(path, dtype="int16")  # what reached the disk is playable
    assert rate == 8000 and 0 < len(data) <= 10000
