"""Writing a track while packets arrive late (an overloaded server reads them late)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from srs import codecs
from srs.recording.output import StreamOutput
from srs.recording.policy import SILENCE_LAG_S, TICK_S, WRITE_LAG_S
from srs.rtp.track import TrackTimeline
from tests.sipclient import constant_payload, rtp_packet

CODES = [0x80 + (i % 0x70) for i in range(200)]


def record(tmp_path: Path, delay_s: float, *, floor_lag_s: float | None) -> tuple[np.ndarray, StreamOutput]:
    """200 packets sent every 20 ms from t=0.5, each read ``delay_s`` late except the first
    (which anchors the track); ticks once a second as the session manager does."""
    timeline = TrackTimeline(0.0, 8000)
    output = StreamOutput(tmp_path / "t.wav", {0: codecs.PCMU}, 8000, 8000)
    arrivals = [(0.5 + 0.02 * i + (delay_s if i else 0.0), i) for i in range(200)]
    pending: list = []
    tick = TICK_S
    for arrival, i in [*arrivals, (10.0, None)]:
        while tick <= arrival:
            pending += timeline.drain(tick)
            horizon = max(0, timeline.wall_offset(tick - WRITE_LAG_S))
            floor = horizon if floor_lag_s is None else max(0, timeline.wall_offset(tick - floor_lag_s))
            output.write(pending, horizon, floor)
            pending = []
            tick += TICK_S
        if i is not None:
            pending += timeline.receive(rtp_packet(i, 160 * i, 7, constant_payload(CODES[i])), arrival)
    pending += timeline.flush()
    output.add_last(pending)
    output.finish(timeline.finish(10.0))
    data, _ = sf.read(tmp_path / "t.wav", dtype="int16")
    return data, output


# Within the timeline's 1 s resync bound (a larger delay re-anchors the track instead).
DELAY_S = 0.8


def test_late_packets_are_written_not_cut(tmp_path: Path) -> None:
    track, output = record(tmp_path, DELAY_S, floor_lag_s=SILENCE_LAG_S)
    assert output.assembler.trimmed_samples == 0
    start = 4000  # packet 0 arrived at 0.5 s
    for i in (0, 1, 50, 199):
        value = codecs.PCMU.decode(bytes([CODES[i]]))[0]
        assert (track[start + 160 * i : start + 160 * (i + 1)] == value).all(), i


def test_without_the_floor_rule_late_audio_would_be_cut(tmp_path: Path) -> None:
    # The horizon alone (write up to now - 0.4 s whatever arrived) cuts what comes 0.8 s
    # late: this is what the rule above prevents, and what trimmed_samples reports.
    _, output = record(tmp_path, DELAY_S, floor_lag_s=None)
    assert output.assembler.trimmed_samples > 0
