"""ReorderBuffer and the 16/32-bit unwrap arithmetic (RFC 3550 §A.1, §A.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import UsageError
from srs.rtp.reorder import ReorderBuffer, unwrap_sequence, unwrap_timestamp


@pytest.mark.parametrize(
    ("sequence_number", "reference", "expected"),
    [
        (5, 3, 5),
        (3, 5, 3),
        (0, 65535, 65536),  # forward across the wrap
        (65535, 65536, 65535),  # backward across the wrap
        (65530, 65536 * 3 + 2, 65536 * 2 + 65530),
        (0x8000 + 10, 10, 0x8000 + 10 - 65536),  # exactly half way back is backward
        (0x7FFF + 10, 10, 0x7FFF + 10),
    ],
)
def test_unwrap_sequence(sequence_number: int, reference: int, expected: int) -> None:
    assert unwrap_sequence(sequence_number, reference) == expected


@pytest.mark.parametrize(
    ("timestamp", "reference", "expected"),
    [
        (160, 0xFFFF_FF60, 0x1_0000_0000 + 160),
        (0xFFFF_FF60, 0x1_0000_00A0, 0xFFFF_FF60),
        (1000, 500, 1000),
    ],
)
def test_unwrap_timestamp(timestamp: int, reference: int, expected: int) -> None:
    assert unwrap_timestamp(timestamp, reference) == expected


def seqs(released: list[tuple[int, float]]) -> list[int]:
    return [item for item, _ in released]


def feed(buffer: ReorderBuffer[int], order: list[int], now: float = 0.0) -> list[int]:
    out: list[int] = []
    for seq in order:
        out += seqs(buffer.push(seq & 0xFFFF, seq, now))
    return out


def test_start_waits_for_depth_then_releases_in_order() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=3, hold_s=1.0)
    assert feed(buffer, [11, 10, 12]) == []
    assert feed(buffer, [13]) == [10, 11, 12, 13]
    assert feed(buffer, [14]) == [14]
    assert (buffer.received, buffer.reordered, buffer.lost, buffer.held) == (5, 1, 0, 0)


def test_start_released_by_hold_time() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=5, hold_s=0.1)
    buffer.push(7, 7, 1.0)
    assert buffer.next_deadline() == pytest.approx(1.1)
    assert buffer.drain(1.05) == []
    assert buffer.drain(1.1) == [(7, 1.0)]
    assert buffer.next_deadline() is None


def test_gap_given_up_at_depth() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=3, hold_s=10.0)
    feed(buffer, [0, 1, 2, 3])
    assert feed(buffer, [5, 6]) == []  # 4 missing
    assert feed(buffer, [7]) == [5, 6, 7]  # 7 - 4 >= 3: give up on 4
    assert buffer.lost == 1
    assert feed(buffer, [4]) == []
    assert (buffer.late, buffer.lost, buffer.reordered) == (1, 0, 1)


def test_gap_given_up_after_hold_on_push() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=5, hold_s=0.1)
    feed(buffer, [0, 1, 2, 3, 4, 5])
    assert seqs(buffer.push(7, 7, 0.0)) == []
    assert seqs(buffer.push(8, 8, 0.05)) == []
    assert seqs(buffer.push(9, 9, 0.1)) == [7, 8, 9]


def test_late_filler_arrival_fills_the_gap_before_expiry() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=5, hold_s=0.1)
    feed(buffer, [0, 1, 2, 3, 4, 5])
    buffer.push(7, 7, 0.0)
    assert seqs(buffer.push(6, 6, 0.5)) == [6, 7]
    assert (buffer.late, buffer.lost) == (0, 0)


def test_duplicates_held_released_and_late() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=3, hold_s=10.0)
    assert feed(buffer, [0, 1, 2, 3, 3, 1, 5, 5]) == [0, 1, 2, 3]
    assert buffer.duplicated == 3  # 3 (emitted), 1 (emitted), 5 (held)
    assert feed(buffer, [8]) == [5]  # 8 - 4 >= 3: give up on 4
    feed(buffer, [4, 4])  # late, then a duplicate of the late one
    assert (buffer.late, buffer.duplicated) == (1, 4)
    assert buffer.lost == 2  # 6 and 7; 4 arrived (late) so it is not lost


def test_wrap_around_is_seamless() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=2, hold_s=10.0)
    order = [65533, 65534, 65535, 65536, 65538, 65537, 65539]
    assert feed(buffer, order) + seqs(buffer.flush()) == sorted(order)
    assert (buffer.lost, buffer.reordered, buffer.restarts) == (0, 1, 0)


def test_sequence_restart_after_two_sequential_packets() -> None:
    """RFC 3550 §A.1: a jump confirmed by the next packet restarts the sequence."""
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=2, hold_s=10.0)
    assert feed(buffer, [100, 101, 103]) == [100, 101]
    assert feed(buffer, [40000]) == []
    assert feed(buffer, [40001]) == [103]  # old epoch flushed; the new one starts holding
    assert feed(buffer, [40002]) == [40000, 40001, 40002]
    assert (buffer.restarts, buffer.bad_sequence, buffer.lost) == (1, 0, 1)


def test_stray_jump_is_dropped() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=2, hold_s=10.0)
    assert feed(buffer, [100, 101, 102]) == [100, 101, 102]
    assert feed(buffer, [40000, 103]) == [103]
    assert feed(buffer, [9000, 9000, 20000, 104]) == [104]
    assert (buffer.bad_sequence, buffer.duplicated, buffer.restarts) == (3, 1, 0)


def test_jump_back_beyond_misorder_is_bad_sequence() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=2, hold_s=10.0)
    feed(buffer, list(range(500, 700)))
    feed(buffer, [600])  # 99 behind 699: late or duplicate, not a jump
    assert buffer.duplicated == 1
    feed(buffer, [599, 701])  # 100 behind: a jump, then dropped by the next in-range packet
    assert buffer.bad_sequence == 1


def test_flush_drops_a_pending_jump() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=2, hold_s=10.0)
    assert feed(buffer, [1, 2, 3, 5, 30000]) == [1, 2, 3]
    assert seqs(buffer.flush()) == [5]
    assert buffer.bad_sequence == 1


def test_loss_accumulates_over_restarts() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth_packets=1, hold_s=10.0)
    feed(buffer, [0, 1, 3])  # 2 lost
    feed(buffer, [20000, 20001, 20004])  # 20002 and 20003 lost after the restart
    assert (buffer.lost, buffer.restarts) == (3, 1)


@pytest.mark.parametrize(("depth", "hold"), [(0, 0.1), (65, 0.1), (5, -1.0), (5, float("nan"))])
def test_bad_configuration(depth: int, hold: float) -> None:
    with pytest.raises(UsageError):
        ReorderBuffer(depth, hold)


@st.composite
def windowed_permutation(draw: st.DrawFn) -> tuple[int, int, list[list[int]]]:
    depth = draw(st.integers(1, 8))
    start = draw(st.integers(0, 0xFFFF))
    count = draw(st.integers(1, 60))
    sequence = list(range(start, start + count))
    windows: list[list[int]] = []
    position = 0
    while position < count:
        size = draw(st.integers(1, depth))
        windows.append(draw(st.permutations(sequence[position : position + size])))
        position += size
    return depth, start, windows


@settings(max_examples=300)
@given(windowed_permutation())
def test_permutation_within_depth_loses_nothing(case: tuple[int, int, list[list[int]]]) -> None:
    depth, start, windows = case
    buffer: ReorderBuffer[int] = ReorderBuffer(depth, hold_s=0.1)
    out: list[int] = []
    for number, window in enumerate(windows):
        out += feed(buffer, window, now=number * 0.02)
    out += seqs(buffer.flush())
    assert out == list(range(start, start + sum(len(w) for w in windows)))
    assert (buffer.late, buffer.duplicated, buffer.lost) == (0, 0, 0)


@settings(max_examples=300)
@given(
    st.integers(1, 8),
    st.lists(st.tuples(st.integers(0, 40), st.floats(0, 0.3)), max_size=80),
)
def test_output_is_increasing_and_every_packet_is_accounted(
    depth: int, arrivals: list[tuple[int, float]]
) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(depth, hold_s=0.1)
    out: list[int] = []
    now = 0.0
    for seq, step in arrivals:
        now += step
        out += [item for item, _ in buffer.push(seq, seq, now)]
    out += seqs(buffer.flush())
    assert out == sorted(set(out))
    assert len(out) + buffer.late + buffer.duplicated + buffer.bad_sequence == len(arrivals)
    assert buffer.lost >= 0
