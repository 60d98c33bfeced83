"""TrackTimeline: exact positions under every impairment the impairing sender makes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import UsageError
from srs.rtp.dtmf import TelephoneEvent
from srs.rtp.packet import RtpPacket
from srs.rtp.track import Placed, TimelineConfig, TrackTimeline
from tests.rtp.impair import Arrival, Sender, delay, delivered, duplicate, lose

ORIGIN = 1000.0
RATE = 8000
PTIME = 160  # samples per 20 ms packet


def run(
    arrivals: list[Arrival], timeline: TrackTimeline | None = None
) -> tuple[TrackTimeline, list[Placed]]:
    timeline = timeline or TrackTimeline(ORIGIN, RATE)
    placed: list[Placed] = []
    for arrival in arrivals:
        placed += timeline.push(arrival.packet, arrival.arrival_s)
    placed += timeline.flush()
    return timeline, placed


def layout(placed: list[Placed]) -> list[tuple[int, int]]:
    """(offset, index of the sending packet) for each audio payload."""
    return [(p.offset_samples, p.payload[0]) for p in placed if not p.is_event]


def clean(count: int, first: int = 0, offset: int = 0) -> list[tuple[int, int]]:
    return [(offset + i * PTIME, i) for i in range(first, first + count)]


def test_clean_stream_from_the_origin() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(50)
    timeline, placed = run(sender.arrivals)
    assert layout(placed) == clean(50)
    assert timeline.finish(ORIGIN + 1.0) == 8000
    stats = timeline.stats()
    counters = (stats.received, stats.lost, stats.duplicated, stats.reordered, stats.late)
    assert counters == (50, 0, 0, 0, 0)
    assert stats.ssrcs == (0x1234_5678,)
    assert stats.payload_types == (0,)
    assert dict(stats.dropped) == {} and dict(stats.resyncs) == {}
    assert stats.jitter_ms[0x1234_5678] == pytest.approx(0.0, abs=1e-6)


def test_late_start_is_leading_silence() -> None:
    sender = Sender(start_s=ORIGIN + 2.5, delay_s=0.03)
    sender.talk(10)
    _, placed = run(sender.arrivals)
    assert layout(placed) == clean(10, offset=20240)  # 2.53 s * 8000


def test_packets_before_the_origin_start_at_zero() -> None:
    sender = Sender(start_s=ORIGIN - 0.1)
    sender.talk(3)
    _, placed = run(sender.arrivals)
    assert layout(placed) == clean(3)


def test_loss_leaves_a_gap_at_the_right_place() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(20)
    timeline, placed = run(lose(sender.arrivals, 3, 4, 12))
    assert layout(placed) == [p for p in clean(20) if p[1] not in (3, 4, 12)]
    assert timeline.stats().lost == 3


def test_reordered_packet_within_depth_is_placed() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(20)
    timeline, placed = run(delay(sender.arrivals, 5, 0.045))
    assert layout(placed) == clean(20)
    stats = timeline.stats()
    assert (stats.reordered, stats.late, stats.lost) == (1, 0, 0)


def test_packet_behind_the_release_point_is_late() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(40)
    timeline, placed = run(delay(sender.arrivals, 5, 0.5))
    assert layout(placed) == [p for p in clean(40) if p[1] != 5]
    stats = timeline.stats()
    assert (stats.late, stats.lost, stats.reordered) == (1, 0, 1)
    assert dict(stats.dropped) == {"late": 1}


def test_duplicates_are_dropped_and_counted() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(20)
    arrivals = duplicate(duplicate(sender.arrivals, 7), 2, after_s=0.2)
    timeline, placed = run(arrivals)
    assert layout(placed) == clean(20)
    stats = timeline.stats()
    assert (stats.received, stats.duplicated, stats.lost) == (22, 2, 0)
    assert dict(stats.dropped) == {"duplicate": 2}


def test_sequence_wrap_at_65535() -> None:
    sender = Sender(start_s=ORIGIN, sequence_number=65530)
    sender.talk(20)
    timeline, placed = run(delay(sender.arrivals, 5, 0.03))  # 65535 arrives after 0
    assert layout(placed) == clean(20)
    assert (timeline.stats().lost, timeline.stats().sequence_restarts) == (0, 0)


def test_timestamp_wrap_at_2_32() -> None:
    sender = Sender(start_s=ORIGIN, timestamp=2**32 - 3 * PTIME)
    sender.talk(20)
    timeline, placed = run(sender.arrivals)
    assert layout(placed) == clean(20)
    assert dict(timeline.stats().resyncs) == {}


def test_jitter_does_not_move_audio() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(30)
    delays = [0.0, 0.013, 0.002, 0.031, 0.049, 0.007, 0.0, 0.022, 0.041, 0.003] * 3
    arrivals = delivered(
        [replace(a, arrival_s=round(a.arrival_s + d, 9)) for a, d in zip(sender.arrivals, delays, strict=False)]
    )
    timeline, placed = run(arrivals)
    assert layout(placed) == clean(30)
    stats = timeline.stats()
    assert (stats.lost, stats.late) == (0, 0)
    assert stats.reordered > 0
    assert 0.0 < stats.jitter_ms[sender.ssrc] < 50.0


def test_ssrc_change_follows_the_new_source_on_the_same_timeline() -> None:
    sender = Sender(start_s=ORIGIN, delay_s=0.03)
    sender.talk(10)
    sender.restart(ssrc=0xBEEF, sequence_number=7, timestamp=123_456_789)
    sender.talk(10)
    timeline, placed = run(sender.arrivals)
    assert layout(placed) == clean(20, offset=240)
    stats = timeline.stats()
    assert stats.ssrcs == (0x1234_5678, 0xBEEF)
    assert dict(stats.resyncs) == {"ssrc_change": 1}
    assert {p.ssrc for p in placed[10:]} == {0xBEEF}
    assert set(stats.jitter_ms) == {0x1234_5678, 0xBEEF}


def test_in_flight_packets_of_the_old_ssrc_are_stale() -> None:
    old = Sender(start_s=ORIGIN)
    old.talk(10)
    new = Sender(start_s=ORIGIN + 0.2, ssrc=0xBEEF, sequence_number=7, timestamp=9)
    new.talk(10)
    straggler = replace(old.arrivals[9], arrival_s=ORIGIN + 0.25)
    arrivals = [*old.arrivals[:9], *new.arrivals[:3], straggler, *new.arrivals[3:]]
    timeline, placed = run(arrivals)
    assert [o for o, _ in layout(placed)] == [i * PTIME for i in range(9)] + [
        1600 + i * PTIME for i in range(10)
    ]
    assert dict(timeline.stats().dropped) == {"stale_ssrc": 1}


def test_switch_back_to_an_earlier_ssrc_after_silence() -> None:
    first = Sender(start_s=ORIGIN)
    first.talk(5)
    second = Sender(start_s=ORIGIN + 0.1, ssrc=2, sequence_number=500, timestamp=0)
    second.talk(5)
    first.pause(2.0)
    first.talk(5)
    timeline, placed = run([*first.arrivals[:5], *second.arrivals, *first.arrivals[5:]])
    assert layout(placed) == [
        *clean(5),
        *clean(5, first=0, offset=800),  # the second source from 0.1 s
        *clean(5, first=5, offset=16000),  # the first again, 2 s later
    ]
    stats = timeline.stats()
    assert dict(stats.resyncs) == {"ssrc_change": 2}
    assert stats.ssrcs == (0x1234_5678, 2)


def test_silence_suppression_gap_with_comfort_noise() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(10)
    sender.send(b"\x40", payload_type=13)  # RFC 3389 CN at the start of the silence
    sender.pause(0.4)
    sender.talk(5)
    timeline, placed = run(sender.arrivals)
    assert [(p.offset_samples, p.payload_type) for p in placed] == [
        *[(i * PTIME, 0) for i in range(10)],
        (1600, 13),
        *[(1600 + 3200 + i * PTIME, 0) for i in range(5)],
    ]
    assert timeline.stats().payload_types == (0, 13)
    assert dict(timeline.stats().resyncs) == {}


def hold_running(sender: Sender) -> None:
    sender.pause(5.0)


def hold_frozen(sender: Sender) -> None:
    sender.pause(5.0, advance_timestamp=False)


def restart_timestamp(sender: Sender) -> None:
    sender.timestamp = 1_500_000_000  # a new random start, ahead of the old one


def step_back(sender: Sender) -> None:
    sender.timestamp -= 4000


def step_forward_half_a_second(sender: Sender) -> None:
    sender.timestamp += 4000  # below the 1 s bound


def step_forward_over_a_second(sender: Sender) -> None:
    sender.timestamp += 8001


@pytest.mark.parametrize(
    ("disturb", "second_offset", "resyncs"),
    [
        # Hold (a=inactive) while RTP time runs on: silence, no resync.
        (hold_running, 40000, {}),
        # Hold by a sender that freezes its timestamps: re-anchored on the wall clock.
        (hold_frozen, 40000, {"timestamp_jump": 1}),
        # Timestamp restart under the same SSRC.
        (restart_timestamp, 0, {"timestamp_jump": 1}),
        # A splice that steps RTP time back.
        (step_back, 0, {"timestamp_backward": 1}),
        # A forward step inside the bound is trusted: its silence is inserted.
        (step_forward_half_a_second, 4000, {}),
        (step_forward_over_a_second, 0, {"timestamp_jump": 1}),
    ],
)
def test_timestamp_disturbances(
    disturb: object, second_offset: int, resyncs: dict[str, int]
) -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(10)
    disturb(sender)  # type: ignore[operator]
    sender.talk(10)
    timeline, placed = run(sender.arrivals)
    assert layout(placed) == [*clean(10), *clean(10, first=10, offset=second_offset)]
    assert dict(timeline.stats().resyncs) == resyncs


def test_sequence_restart_under_the_same_ssrc() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(10)
    sender.sequence_number = 30000
    sender.talk(10)
    timeline, placed = run(sender.arrivals)
    assert layout(placed) == clean(20)
    stats = timeline.stats()
    assert (stats.sequence_restarts, stats.lost, dict(stats.dropped)) == (1, 0, {})


def test_telephone_events_are_placed_at_their_start_and_never_move_audio() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(10)
    event_start = sender.timestamp
    for duration, end in [(160, False), (320, False), (480, False)] + [(640, True)] * 3:
        payload = bytes(TelephoneEvent(5, end, 10, duration))
        sender.send(payload, payload_type=101, timestamp=event_start)
        sender.time_s += 0.0 if end else 0.02
    sender.timestamp += 640  # the audio resumes after the 80 ms key press
    sender.talk(5)
    timeline = TrackTimeline(ORIGIN, RATE, event_payload_types={101})
    _, placed = run(sender.arrivals, timeline)
    events = [p for p in placed if p.is_event]
    assert [(p.offset_samples, p.timestamp) for p in events] == [(1600, event_start)] * 6
    assert layout(placed) == [*clean(10), *[(2240 + i * PTIME, 16 + i) for i in range(5)]]
    assert dict(timeline.stats().resyncs) == {}
    assert list(timeline.stats().jitter_ms) == [sender.ssrc]


def test_a_telephone_event_too_short_to_read_is_dropped_before_placing() -> None:
    """RFC 4733 §2.3 payloads are four octets: a shorter one never reaches the DTMF
    detector (which cannot read it), it is counted (found by the rtp fuzz target)."""
    sender = Sender(start_s=ORIGIN)
    sender.talk(3)
    sender.send(b"\x05\x0a", payload_type=101, timestamp=sender.timestamp)
    sender.send(bytes(TelephoneEvent(5, True, 10, 160)), payload_type=101,
                timestamp=sender.timestamp)
    sender.talk(3)
    timeline = TrackTimeline(ORIGIN, RATE, event_payload_types={101})
    _, placed = run(sender.arrivals, timeline)
    assert [len(p.payload) for p in placed if p.is_event] == [4]
    assert dict(timeline.stats().dropped) == {"telephone_event": 1}
    assert len(layout(placed)) == 6


def test_codec_change_at_the_same_clock_rate_changes_nothing() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(5)
    sender.payload_type = 8
    sender.talk(5)
    timeline, placed = run(sender.arrivals)
    assert [(p.offset_samples, p.payload_type) for p in placed] == [
        (i * PTIME, 0 if i < 5 else 8) for i in range(10)
    ]
    assert timeline.stats().payload_types == (0, 8)
    assert dict(timeline.stats().resyncs) == {}


def test_clock_rate_change_reanchors_and_keeps_track_units() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(5)
    sender.payload_type = 96
    sender.samples_per_packet = 320  # 20 ms at 16 kHz
    sender.timestamp = 70_000
    sender.talk(5)
    timeline = TrackTimeline(ORIGIN, RATE, payload_clock_rates_hz={96: 16000})
    _, placed = run(sender.arrivals, timeline)
    assert [p.offset_samples for p in placed] == [i * PTIME for i in range(10)]
    assert dict(timeline.stats().resyncs) == {"clock_rate_change": 1}


SR = bytes.fromhex("80c80006 11223344 e1234567 89abcdef 0000c350 00000010 00000a00")


def test_receive_counts_rtcp_and_parse_failures() -> None:
    timeline = TrackTimeline(ORIGIN, RATE)
    assert timeline.receive(SR, ORIGIN) == []
    assert timeline.receive(bytes.fromhex("80c90001 cafebabe"), ORIGIN) == []
    assert timeline.receive(b"\x80\x00", ORIGIN) == []
    assert timeline.receive(bytes.fromhex("40000001 00000002 00000003"), ORIGIN) == []
    assert timeline.receive(bytes.fromhex("80c90002 cafebabe"), ORIGIN) == []
    timeline.count_drop("srtp_auth")
    packet = RtpPacket(0, 1, 2, 3, b"\xff" * 160)
    assert timeline.receive(bytes(packet), ORIGIN) == []  # held: start of the stream
    assert [p.payload for p in timeline.flush()] == [packet.payload]
    stats = timeline.stats()
    assert (stats.rtcp_packets, stats.sender_reports, stats.receiver_reports) == (2, 1, 1)
    assert dict(stats.dropped) == {"truncated": 1, "version": 1, "rtcp": 1, "srtp_auth": 1}
    assert stats.received == 1


def test_drain_releases_held_packets_at_the_deadline() -> None:
    timeline = TrackTimeline(ORIGIN, RATE)
    sender = Sender(start_s=ORIGIN)
    sender.talk(2)
    for arrival in sender.arrivals:
        assert timeline.push(arrival.packet, arrival.arrival_s) == []
    assert timeline.next_deadline() == pytest.approx(ORIGIN + 0.1)
    assert timeline.drain(ORIGIN + 0.09) == []
    assert layout(timeline.drain(ORIGIN + 0.1)) == clean(2)
    assert timeline.next_deadline() is None


def test_finish_and_misuse() -> None:
    timeline = TrackTimeline(ORIGIN, RATE)
    timeline.push(RtpPacket(0, 1, 2, 3, b"x"), ORIGIN)
    with pytest.raises(UsageError):
        timeline.finish(ORIGIN + 1)
    timeline.flush()
    assert timeline.finish(ORIGIN + 12.3456) == 98765
    with pytest.raises(UsageError):
        timeline.push(RtpPacket(0, 2, 2, 3, b"x"), ORIGIN + 13)
    assert TrackTimeline(ORIGIN, RATE).finish(ORIGIN - 5) == 0


def test_settled_offset_lags_by_hold_and_resync_bound() -> None:
    timeline = TrackTimeline(ORIGIN, RATE)
    assert timeline.settled_offset(ORIGIN + 0.5) == 0
    assert timeline.settled_offset(ORIGIN + 3.1) == 16000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reorder_depth_packets": 0},
        {"reorder_depth_packets": 65},
        {"reorder_hold_s": -0.1},
        {"resync_threshold_s": float("nan")},
        {"max_tracked_ssrcs": 0},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        TimelineConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_clock_rate() -> None:
    with pytest.raises(UsageError):
        TrackTimeline(ORIGIN, 0)


@st.composite
def permuted_windows(draw: st.DrawFn) -> tuple[int, list[list[Arrival]]]:
    """A stream cut into windows of at most the reorder depth, each arriving as a burst
    (one arrival time) in any order."""
    depth = draw(st.integers(1, 8))
    sender = Sender(
        start_s=ORIGIN + draw(st.floats(0, 5)),
        sequence_number=draw(st.integers(0, 0xFFFF)),
        timestamp=draw(st.integers(0, 2**32 - 1)),
    )
    sender.talk(draw(st.integers(1, 60)))
    windows: list[list[Arrival]] = []
    position = 0
    while position < len(sender.arrivals):
        size = draw(st.integers(1, depth))
        window = sender.arrivals[position : position + size]
        burst_s = window[-1].arrival_s + draw(st.floats(0, 0.04))
        windows.append([replace(a, arrival_s=burst_s) for a in draw(st.permutations(window))])
        position += size
    return depth, windows


@settings(max_examples=200, deadline=None)
@given(permuted_windows())
def test_any_permutation_within_the_depth_places_like_in_order(
    case: tuple[int, list[list[Arrival]]],
) -> None:
    depth, windows = case
    config = TimelineConfig(reorder_depth_packets=depth)
    in_order = [a for w in windows for a in sorted(w, key=lambda a: a.index)]
    shuffled = [a for w in windows for a in w]
    _, expected = run(in_order, TrackTimeline(ORIGIN, RATE, config=config))
    timeline, placed = run(shuffled, TrackTimeline(ORIGIN, RATE, config=config))
    assert placed == expected
    assert [p.payload[0] for p in placed] == [a.index % 256 for a in in_order]
    assert (timeline.stats().late, timeline.stats().lost) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),  # sequence number
            st.integers(0, 2**32 - 1),  # timestamp
            st.sampled_from([1, 2, 3]),  # SSRC
            st.sampled_from([0, 8, 13, 101]),  # payload type (101: events)
            st.floats(0, 2.0),  # time since the previous packet
        ),
        max_size=60,
    )
)
def test_hostile_streams_never_break_the_timeline(
    packets: list[tuple[int, int, int, int, float]],
) -> None:
    timeline = TrackTimeline(ORIGIN, RATE, event_payload_types={101})
    now = ORIGIN
    placed: list[Placed] = []
    for seq, ts, ssrc, payload_type, step in packets:
        now += step
        placed += timeline.push(RtpPacket(payload_type, seq, ts, ssrc, b"\x00\x00\x00\x00"), now)
        placed += timeline.drain(now)
    placed += timeline.flush()
    total = timeline.finish(now)
    stats = timeline.stats()
    assert all(p.offset_samples >= 0 for p in placed)
    # Nothing is placed more than the resync bound ahead of when it arrived.
    assert all(p.offset_samples <= total + RATE for p in placed)
    assert stats.received == len(packets)
    not_placed = sum(stats.dropped.values())
    assert len(placed) + not_placed == len(packets)
    assert min(stats.lost, stats.late, stats.duplicated, stats.reordered) >= 0


def test_event_with_a_broken_timestamp_is_placed_by_arrival() -> None:
    sender = Sender(start_s=ORIGIN)
    sender.talk(10)
    sender.send(bytes(TelephoneEvent(1, False, 10, 160)), payload_type=101, timestamp=10**9)
    timeline = TrackTimeline(ORIGIN, RATE, event_payload_types={101})
    _, placed = run(sender.arrivals, timeline)
    assert [(p.offset_samples, p.is_event) for p in placed[-1:]] == [(1600, True)]
