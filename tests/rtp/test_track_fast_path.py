"""TrackTimeline.receive_into's fast path, and receive_many with and without the compiled
walk (srs/rtp/_rtpwalk.c), place exactly what the general path places.

Three timelines get the same random stream -- loss, reordering, duplicates, SSRC changes,
timestamp jumps and wraps, codec and clock-rate changes, events (some unreadable), RTCP,
other header forms, garbage, drains, new offers, restarts -- one through ``receive_into``
(fast path where it applies), one through ``receive_many`` (the datagrams of one arrival
time in one call, as the receiver hands over a socket's batch), one through the general
path alone.  Every placement, every deadline, and at the end every counter and statistic
must be equal, to the last bit of the jitter.
"""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srs.errors import UsageError
from srs.rtp import track
from srs.rtp.packet import RtcpCompound, RtcpPacket, RtpPacket
from srs.rtp.track import Placed, TimelineConfig, TrackStats, TrackTimeline

SSRCS = (0x1111, 0x2222, 0x3333)
PAYLOAD_TYPES = (0, 8, 13, 96, 101, 72, 127)
SEQ_STEPS = (1, 1, 1, 1, 1, 1, 0, 2, 3, -1, -2, -5, 150, 4000)
TS_STEPS = (160, 160, 160, 160, 0, 320, -1, -160, 80, 8000 * 3, 0x7FFF_FFFF, -8000 * 2)
DT_STEPS = (0.02, 0.02, 0.02, 0.0, 0.0, 0.001, 0.015, 0.03, 0.12, 2.5)

# "rtcp_range": the marker bit on payload type 72, which reads as RTCP type 200
FORMS = ("plain", "marker", "csrc", "extension", "padding", "rtcp_range")
# None in a field: the stream's current value (its SSRC, the run's payload type).
CLEAN = ("rtp", 1, 160, None, None, 160, 0.02, "plain")
FIELDS = {
    1: st.sampled_from(SEQ_STEPS),
    2: st.sampled_from(TS_STEPS),
    3: st.sampled_from(SSRCS),
    4: st.sampled_from(PAYLOAD_TYPES),
    5: st.sampled_from((0, 2, 4)),  # payload bytes (events need 4)
    6: st.sampled_from(DT_STEPS),
    7: st.sampled_from(FORMS),
}


@st.composite
def rtp_ops(draw: st.DrawFn) -> tuple[Any, ...]:
    """The stream's next clean packet with one or two things changed: every condition of
    the fast path is met but one (or two), the cases where the paths could part."""
    op = list(CLEAN)
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2)):
        op[field] = draw(FIELDS[field])
    return tuple(op)


rtp_op = rtp_ops()
other_op = st.one_of(
    st.tuples(st.just("rtcp"), st.sampled_from(DT_STEPS)),
    st.tuples(st.just("garbage"), st.binary(max_size=20), st.sampled_from(DT_STEPS)),
    st.tuples(st.just("drain"), st.sampled_from(DT_STEPS)),
    st.tuples(st.just("offer"), st.sets(st.sampled_from(PAYLOAD_TYPES)),
              st.sets(st.sampled_from((0, 8, 96))), st.sampled_from((None, 101))),
    st.tuples(st.just("restart")),
)
# A run of the common case: the next packet of the stream as a sender sends it.
# 0.0: a burst that queued in the socket, read in one wake-up.
clean_run = st.tuples(st.just("run"), st.integers(1, 60),
                      st.sampled_from((0.02, 0.02, 0.019, 0.021, 0.0)),
                      st.sampled_from((None, None, 0, 8, 96, 13)))  # None: keep the type
# Runs, changed packets and other events about 6 : 6 : 4.
streams = st.lists(
    st.integers(0, 15).flatmap(lambda k: clean_run if k < 6 else rtp_op if k < 12 else other_op),
    min_size=10, max_size=150)


def datagram(state: dict[str, Any], op: tuple[Any, ...]) -> bytes:
    _, dseq, dts, ssrc, payload_type, size, _, form = op
    state["seq"] = (state["seq"] + dseq) & 0xFFFF
    state["ts"] = (state["ts"] + dts) & 0xFFFF_FFFF
    payload = bytes((state["seq"] + i) & 0xFF for i in range(size))
    if form == "rtcp_range":
        payload_type = 72
    packet = RtpPacket(payload_type, state["seq"], state["ts"], ssrc, payload,
                       marker=form in ("marker", "rtcp_range"))
    if form == "csrc":
        packet.csrcs = (1, 2)
    elif form == "extension":
        packet.extension_profile, packet.extension_data = 0xBEDE, b"\x10\xff\x00\x00"
    elif form == "padding":
        packet.padding_bytes = 4
    return bytes(packet)


def as_tuples(placed: list[Placed]) -> list[tuple[Any, ...]]:
    return [(p.offset_samples, p.payload_type, p.payload, p.ssrc, p.timestamp, p.is_event)
            for p in placed]


def comparable(stats: TrackStats) -> tuple[Any, ...]:
    return (stats.received, stats.lost, stats.duplicated, stats.reordered, stats.late,
            dict(stats.dropped), dict(stats.resyncs), stats.sequence_restarts, stats.ssrcs,
            stats.payload_types, dict(stats.jitter_ms), stats.rtcp_packets,
            stats.sender_reports, stats.receiver_reports, stats.unoffered_static)


WALKS = [
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(
        not track.compiled_walk(), reason="srs.rtp._rtpwalk is not built")),
    pytest.param(False, id="python"),
]


@pytest.fixture(params=WALKS)
def walk(request: pytest.FixtureRequest) -> Iterator[bool]:
    """receive_many with the compiled walk, and with the pure-Python one."""
    track.use_compiled_walk(request.param)
    yield request.param
    track.use_compiled_walk(True)


# The fixture only picks the walk, the same for every input.
@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=streams,
    origin_s=st.sampled_from((0.0, 0.013, 100.5)),
    rates=st.sampled_from((None, {96: 16000, 101: 8000}, {0: 8000, 8: 8000})),
    threshold_s=st.sampled_from((1.0, 0.05)),
    offered_first=st.booleans(),
    start_seq=st.sampled_from((0, 65530, 1000)),
    start_ts=st.sampled_from((0, 0xFFFF_FF00, 12345)),
)
def test_fast_paths_equal_the_general_path(walk: bool, ops: list[tuple[Any, ...]],
                                           origin_s: float, rates: dict[int, int] | None,
                                           threshold_s: float, offered_first: bool,
                                           start_seq: int, start_ts: int) -> None:
    config = TimelineConfig(resync_threshold_s=threshold_s)
    fast, many, general = (TrackTimeline(origin_s, 8000, event_payload_types=(101,),
                                         payload_clock_rates_hz=rates, config=config)
                           for _ in range(3))
    timelines = (fast, many, general)
    if offered_first:
        for timeline in timelines:
            timeline.accept_payload_types((0, 101), (0,))
    state = {"seq": start_seq, "ts": start_ts}
    now = origin_s + 0.5
    rtcp = bytes(RtcpCompound((RtcpPacket(200, 0, 5, bytes(20)), RtcpPacket(202, 1, 5, b""))))
    expanded: list[tuple[Any, ...]] = []
    ssrc, payload_type = SSRCS[0], 0
    for op in ops:
        if op[0] == "run":
            payload_type = payload_type if op[3] is None else op[3]
            expanded += [("rtp", 1, 160, ssrc, payload_type, 160, op[2], "plain")] * op[1]
        elif op[0] == "rtp":
            full = list(op)
            full[3] = ssrc if op[3] is None else op[3]
            full[4] = payload_type if op[4] is None else op[4]
            expanded.append(tuple(full))
            if full[3] != SSRCS[2]:  # the last SSRC only strays in, one packet at a time
                ssrc = full[3]
        else:
            expanded.append(op)
    # The datagrams of one arrival time go to ``many`` together, when the time moves on.
    batch: list[bytes] = []
    expected: list[Placed] = []

    def hand_over() -> None:
        got: list[Placed] = []
        many.receive_many(batch, now, got)
        assert as_tuples(got) == as_tuples(expected)
        batch.clear()
        expected.clear()

    for op in expanded:
        kind = op[0]
        step = op[6] if kind == "rtp" else op[-1] if kind in ("rtcp", "garbage", "drain") else 1
        if batch and step:
            hand_over()
        now += step if kind != "restart" and kind != "offer" else 0.0
        if kind == "rtp" or kind == "rtcp" or kind == "garbage":
            data = datagram(state, op) if kind == "rtp" else rtcp if kind == "rtcp" else op[1]
            got: list[Placed] = []
            fast.receive_into(data, now, got)
            placed = general._receive_general(data, now)
            assert as_tuples(got) == as_tuples(placed)
            batch.append(data)
            expected.extend(placed)
            continue
        if batch:
            hand_over()
        if kind == "drain":
            assert as_tuples(fast.drain(now)) == as_tuples(many.drain(now)) \
                == as_tuples(general.drain(now))
        elif kind == "offer":
            for timeline in timelines:
                timeline.accept_payload_types(op[1], op[2], op[3])
        else:
            assert as_tuples(fast.restart("reoffer")) == as_tuples(many.restart("reoffer")) \
                == as_tuples(general.restart("reoffer"))
        assert fast.next_deadline() == many.next_deadline() == general.next_deadline()
    if batch:
        hand_over()
    assert as_tuples(fast.flush()) == as_tuples(many.flush()) == as_tuples(general.flush())
    assert fast.finish(now) == many.finish(now) == general.finish(now)
    assert comparable(fast.stats()) == comparable(many.stats()) == comparable(general.stats())
    clean = bytes(RtpPacket(0, (state["seq"] + 1) & 0xFFFF, state["ts"], SSRCS[0], bytes(160)))
    for timeline in timelines:  # nothing is placed after the end
        with pytest.raises(UsageError, match="after finish"):
            timeline.receive_into(clean, now, [])
        with pytest.raises(UsageError, match="after finish"):
            timeline.receive_many([clean], now, [])


def test_the_common_case_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean stream is placed without the general path after its first packets."""
    general_calls = 0
    general = TrackTimeline._receive_general

    def counting(self: TrackTimeline, data: bytes, now: float) -> list[Placed]:
        nonlocal general_calls
        general_calls += 1
        return general(self, data, now)

    monkeypatch.setattr(TrackTimeline, "_receive_general", counting)
    timeline = TrackTimeline(0.0, 8000)
    timeline.accept_payload_types((0,), (0,))
    placed: list[Placed] = []
    for i in range(200):
        data = bytes(RtpPacket(0, 7 + i, 160 * i, 0xABC, bytes(160)))
        timeline.receive_into(data, 0.5 + 0.02 * i, placed)
    # The first anchors, and the reorder buffer releases nothing until its depth is
    # reached at the start of an epoch; from then on every packet is the fast path.
    assert general_calls <= 6
    assert [p.offset_samples for p in placed] == [4000 + 160 * i for i in range(200)]
    assert timeline.stats().received == 200


def test_receive_many_places_a_clean_burst_in_c(walk: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiled walk a clean stream never reaches the Python per-packet path once
    anchored; without it every datagram does."""
    calls = 0
    receive_into = TrackTimeline.receive_into

    def counting(self: TrackTimeline, data: bytes, now: float, out: list[Placed]) -> None:
        nonlocal calls
        calls += 1
        receive_into(self, data, now, out)

    monkeypatch.setattr(TrackTimeline, "receive_into", counting)
    timeline = TrackTimeline(0.0, 8000)
    timeline.accept_payload_types((0,), (0,))
    placed: list[Placed] = []
    packets = [bytes(RtpPacket(0, 7 + i, 160 * i, 0xABC, bytes([i % 256]) * 160))
               for i in range(400)]
    for i in range(0, 400, 4):  # four packets a wake-up
        timeline.receive_many(packets[i:i + 4], 0.5 + 0.02 * i, placed)
    assert calls <= 8 if walk else calls == 400
    assert [p.offset_samples for p in placed] == [4000 + 160 * i for i in range(400)]
    assert [p.payload for p in placed] == [packet[12:] for packet in packets]
    assert timeline.stats().received == 400


def test_the_compiled_walk_is_built_where_there_is_a_compiler() -> None:
    """``make install`` builds srs/rtp/_rtpwalk.c where gcc and the Python headers are (a
    machine without them runs the Python path, which the tests above also cover)."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("gcc") is None or not headers.exists():
        pytest.skip("no compiler here")
    assert track.compiled_walk()
