"""TCP reassembly: order, retransmissions, overlaps, wrap, SYN/FIN/RST, gaps and bounds."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from srs.capture.packets import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    CaptureEvent,
    Flow,
    StreamChunk,
    StreamClosed,
    StreamGap,
    TcpSegment,
)
from srs.capture.tcp import TcpLimits, TcpReassembler

A = Flow("192.0.2.1", 40000, "192.0.2.2", 5060)
MESSAGE = (
    b"INVITE sip:srs@192.0.2.2 SIP/2.0\r\nCall-ID: abc\r\nContent-Length: 10\r\n\r\n0123456789"
)
DATA = PSH_ACK = TCP_PSH | TCP_ACK


def run(
    segments: list[tuple[int, int, bytes]], limits: TcpLimits = TcpLimits()
) -> tuple[list[CaptureEvent], Counter[str]]:
    drops: Counter[str] = Counter()
    reassembler = TcpReassembler(drops, limits)
    events: list[CaptureEvent] = []
    for n, (seq, flags, payload) in enumerate(segments):
        events += reassembler.segment(float(n), TcpSegment(A, seq % 2**32, flags, payload))
    return events + reassembler.finish(99.0), drops


def stream_of(events: list[CaptureEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, StreamChunk))


def cut(data: bytes, isn: int, sizes: list[int]) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    for size in sizes:
        out.append((isn + 1 + pos, DATA, data[pos : pos + size]))
        pos += size
    return out


def test_in_order_with_handshake_fin_and_one_chunk_per_segment() -> None:
    isn = 1000
    segments = [(isn, TCP_SYN, b""), *cut(MESSAGE, isn, [20, 30, 100])]
    segments.append((isn + 1 + len(MESSAGE), TCP_FIN | TCP_ACK, b""))
    events, drops = run(segments)
    assert events == [
        StreamChunk(1.0, A, MESSAGE[:20]),
        StreamChunk(2.0, A, MESSAGE[20:50]),
        StreamChunk(3.0, A, MESSAGE[50:]),
        StreamClosed(4.0, A, "fin"),
    ]
    assert drops == {}


def test_out_of_order_is_released_when_the_hole_fills_and_merged() -> None:
    segments = [(5, TCP_SYN, b""), *cut(MESSAGE, 5, [10, 10, 10, 200])]
    segments = [segments[0], segments[2], segments[4], segments[3], segments[1]]
    events, drops = run(segments)
    assert events == [StreamChunk(4.0, A, MESSAGE)]
    assert drops == {}


def test_retransmissions_and_overlaps_keep_the_first_copy() -> None:
    isn = 7
    segments = [(isn, TCP_SYN, b""), *cut(MESSAGE, isn, [30]),
                (isn + 1, DATA, MESSAGE[:30]),  # a full retransmission
                (isn + 1 + 20, DATA, b"XXXXXXXXXX" + MESSAGE[30:60]),  # overlaps 10 bytes
                (isn + 1 + 60, DATA, MESSAGE[60:]),
                (isn, TCP_SYN, b"")]  # a retransmitted SYN changes nothing
    events, drops = run(segments)
    assert stream_of(events) == MESSAGE
    assert drops == {"tcp-retransmission": 1}


def test_sequence_numbers_wrap() -> None:
    isn = 2**32 - 25
    segments = [(isn, TCP_SYN, b""), *cut(MESSAGE, isn, [10, 10, 10, 10, 100])]
    segments[2], segments[4] = segments[4], segments[2]
    events, _ = run(segments)
    assert stream_of(events) == MESSAGE


def test_capture_started_mid_stream() -> None:
    events, _ = run([(123456, TCP_ACK, b""), (500, DATA, MESSAGE[:40]), (540, DATA, MESSAGE[40:])])
    assert stream_of(events) == MESSAGE


def test_fin_out_of_order_closes_after_the_last_byte() -> None:
    segments = [(0, TCP_SYN, b""), (1 + len(MESSAGE), TCP_FIN, b""), *cut(MESSAGE, 0, [50, 200])]
    events, _ = run(segments)
    assert events[-1] == StreamClosed(3.0, A, "fin")
    assert stream_of(events) == MESSAGE


def test_rst_closes_both_directions_and_discards_waiting_data() -> None:
    drops: Counter[str] = Counter()
    reassembler = TcpReassembler(drops)
    back = A.reversed()
    reassembler.segment(0.0, TcpSegment(A, 0, TCP_SYN, b""))
    reassembler.segment(0.1, TcpSegment(back, 900, TCP_SYN | TCP_ACK, b""))
    reassembler.segment(0.2, TcpSegment(A, 30, DATA, b"later"))
    events = reassembler.segment(0.3, TcpSegment(back, 901, TCP_RST, b"diagnostic"))
    assert events == [StreamClosed(0.3, back, "rst"), StreamClosed(0.3, A, "rst")]
    assert drops == {"tcp-discarded": 1} and reassembler.buffered_bytes == 0


def test_a_new_syn_on_the_same_ports_starts_a_new_stream() -> None:
    segments = [
        (0, TCP_SYN, b""), (1, DATA, b"first"), (5000, TCP_SYN, b""), (5001, DATA, b"second")
    ]
    events, _ = run(segments)
    assert events == [StreamChunk(1.0, A, b"first"), StreamClosed(2.0, A, "evicted"),
                      StreamChunk(3.0, A, b"second")]


def test_a_lost_segment_becomes_a_gap_when_the_flow_buffer_is_full() -> None:
    limits = TcpLimits(max_flow_buffer_bytes=600)
    segments = [(0, TCP_SYN, b""), *cut(bytes(range(256)) * 4, 0, [100] * 10)]
    del segments[2]  # bytes 100..199 never captured
    events, _ = run(segments, limits)
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert gaps == [StreamGap(gaps[0].timestamp, A, 100)]
    assert stream_of(events) == (bytes(range(256)) * 4)[:100] + (bytes(range(256)) * 4)[200:1000]


def test_a_gap_at_the_end_of_the_capture_is_reported_by_finish() -> None:
    segments = [(0, TCP_SYN, b""), (1, DATA, b"abc"), (10, DATA, b"xyz")]
    events, _ = run(segments)
    assert events == [
        StreamChunk(1.0, A, b"abc"), StreamGap(99.0, A, 6), StreamChunk(99.0, A, b"xyz")
    ]


def test_a_segment_far_ahead_resynchronises() -> None:
    segments = [(0, TCP_SYN, b""), (1, DATA, b"abc"), (1 + 10_000_000, DATA, b"xyz")]
    events, _ = run(segments, TcpLimits(max_flow_buffer_bytes=4096))
    assert events == [StreamChunk(1.0, A, b"abc"), StreamGap(2.0, A, 9_999_997),
                      StreamChunk(2.0, A, b"xyz")]


def test_total_buffer_and_flow_count_are_bounded() -> None:
    drops: Counter[str] = Counter()
    limits = TcpLimits(max_flows=50, max_flow_buffer_bytes=1 << 20, max_total_buffer_bytes=20_000)
    reassembler = TcpReassembler(drops, limits)
    for n in range(200):
        flow = Flow("192.0.2.1", 10000 + n, "192.0.2.2", 5060)
        reassembler.segment(0.0, TcpSegment(flow, 0, TCP_SYN, b""))
        reassembler.segment(0.0, TcpSegment(flow, 1000, DATA, bytes(900)))  # waits for 1..999
        assert reassembler.buffered_bytes <= 20_000
        assert reassembler.flow_count <= 50


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
    st.randoms(use_true_random=False),
    st.integers(0, 4),
)
def test_any_order_with_duplicates_gives_the_same_stream(
    sizes: list[int], isn: int, rnd: random.Random, duplicates: int
) -> None:
    data = bytes(rnd.randrange(256) for _ in range(sum(sizes)))
    segments = cut(data, isn, sizes)
    segments += [rnd.choice(segments) for _ in range(duplicates)]
    rnd.shuffle(segments)
    events, _ = run([(isn, TCP_SYN, b""), *segments])
    assert stream_of(events) == data
    assert not any(isinstance(e, StreamGap) for e in events)
