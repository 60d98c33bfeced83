"""The compiled walk (srs/rtp/_rtpwalk.c) reads the timeline's slots as C integers and
writes them back in place: values the Python path handles with unbounded ints must not
wrap in C, a finalizer in a slot must not run while the walk still writes, and the walk's
own arguments are checked.  Each case is compared with the pure-Python walk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from srs.rtp import track
from srs.rtp.packet import RtpPacket
from srs.rtp.track import Placed, TrackTimeline

ROOT = Path(__file__).resolve().parents[2]
COMPILED = pytest.mark.skipif(not track.compiled_walk(), reason="srs.rtp._rtpwalk is not built")
WALKS = [pytest.param(True, id="compiled", marks=COMPILED), pytest.param(False, id="python")]


@pytest.fixture(params=WALKS)
def walk(request: pytest.FixtureRequest) -> Iterator[bool]:
    track.use_compiled_walk(request.param)
    yield request.param
    track.use_compiled_walk(True)


def packet(seq: int, timestamp: int, pt: int = 0) -> bytes:
    return bytes(RtpPacket(pt, seq, timestamp, 0x42, bytes(160)))


def steady(timeline: TrackTimeline, pt: int = 0, step: int = 160) -> list[Placed]:
    """Ten packets, so that the next one in order is the common case."""
    placed: list[Placed] = []
    for i in range(10):
        timeline.receive_many([packet(i, step * i, pt)], 0.02 * i, placed)
        placed += timeline.drain(0.02 * i)
    return placed


def test_counters_at_the_int64_edge_count_on(walk: bool) -> None:
    """A counter at 2**63 - 1 goes to 2**63, as a Python int does."""
    timeline = TrackTimeline(0.0, 8000)
    steady(timeline)
    edge = 2**63 - 1
    timeline._received = edge
    timeline._buffer.received = edge
    timeline._buffer._unique = edge
    placed: list[Placed] = []
    timeline.receive_many([packet(10, 1600)], 0.2, placed)
    assert [p.offset_samples for p in placed] == [1600]
    assert timeline.stats().received == edge + 1
    assert timeline._buffer.received == edge + 1


def test_a_timestamp_delta_scaled_past_int64_is_exact(walk: bool) -> None:
    """delta * rate // packet_rate with a product beyond int64 (a payload type whose clock
    is not the track's, far from its anchor) is the Python integer result."""
    rate = 1 << 22
    packet_rate = rate - 1
    timeline = TrackTimeline(0.0, rate, payload_clock_rates_hz={0: packet_rate})
    steady(timeline)
    last_ts = 1 << 40
    timeline._last_ts = last_ts
    timeline._anchor_ts = -last_ts
    timeline._anchor_offset = 0
    timeline._resync_samples = 1e300
    timestamp = (last_ts + 160) & 0xFFFF_FFFF
    placed: list[Placed] = []
    timeline.receive_many([packet(10, timestamp)], 0.2, placed)
    delta = (last_ts + 160) + last_ts
    assert [p.offset_samples for p in placed] == [delta * rate // packet_rate]


@COMPILED
def test_a_finalizer_in_a_slot_runs_after_the_walk_wrote_everything() -> None:
    """The walk releases the old values of the slots it writes only when it is done: a
    finalizer there that drops the SSRC's jitter estimator finds the packet placed in
    full, and the walk never writes to the freed estimator (PYTHONMALLOC=debug fills
    freed memory, so such a write crashes the child)."""
    script = textwrap.dedent("""
        from srs.rtp.stats import SsrcJitter
        from srs.rtp.track import TrackTimeline, compiled_walk
        from tests.rtp.test_walk_guards import packet, steady

        timeline = TrackTimeline(0.0, 8000)
        steady(timeline)
        seen = []

        class Finalizer:
            def __del__(self):
                jitter = timeline._ssrc_jitter
                seen.append((timeline._last_ts, timeline._last_arrival_s, jitter.packets))
                timeline._ssrc_jitter = None  # the estimator's last references
                timeline._jitter = SsrcJitter(8000)

        timeline._last_arrival_s = Finalizer()
        placed = []
        timeline.receive_many([packet(10, 1600)], 0.2, placed)
        print(compiled_walk(), seen, [p.offset_samples for p in placed])
    """)
    env = dict(os.environ, PYTHONMALLOC="debug", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "[(1600,", "0.2,", "11)]", "[1600]"]


@COMPILED
def test_the_walk_refuses_a_negative_start() -> None:
    """walk(timeline, datagrams, start, ...) reads datagrams[start:]: never before it."""
    from srs.rtp import _rtpwalk  # type: ignore[attr-defined]

    timeline = TrackTimeline(0.0, 8000)
    steady(timeline)
    with pytest.raises(ValueError, match="negative"):
        _rtpwalk.walk(timeline, [packet(10, 1600)], -1, 0.2, [])


def test_receive_many_takes_any_sequence_of_datagrams(walk: bool) -> None:
    """The compiled walk reads lists; a tuple goes through the Python path, placed the same."""
    timeline = TrackTimeline(0.0, 8000)
    steady(timeline)
    placed: list[Placed] = []
    timeline.receive_many((packet(10, 1600), packet(11, 1760)), 0.2, placed)  # type: ignore[arg-type]
    assert [p.offset_samples for p in placed] == [1600, 1760]
