"""TCP stream reassembly from captured segments (RFC 9293), bounded.

Each direction of a connection is a :class:`~srs.capture.packets.Flow` with its own stream.
Sequence numbers are 32-bit and wrap (RFC 9293 §3.4); here every segment is placed at an
unbounded *stream position* (bytes since the stream began) by the signed 32-bit distance of
its sequence number from the next one expected, so wrap needs no special case.

* In-order bytes are handed out at once; bytes already handed out (retransmissions, the
  overlapping part of a repacketised segment) are dropped -- the first copy wins, as in most
  stacks.
* Out-of-order segments wait, at most ``max_flow_buffer_bytes`` per flow and
  ``max_total_buffer_bytes`` over all flows.  When a bound is reached the missing bytes are
  declared lost: a :class:`StreamGap` is emitted and the stream goes on from the earliest
  waiting byte.  A segment further ahead than a whole buffer does the same at once.
* A SYN (RFC 9293 §3.5) fixes the initial sequence number; a stream whose SYN was not
  captured starts at its first segment that carries data.  FIN closes the stream once every
  byte before it is out; RST closes both directions at once.
* At most ``max_flows`` streams are tracked; the least recently active is closed
  (``"evicted"``) to make room.

Drop counters: ``"tcp-retransmission"`` (segments wholly already delivered or duplicated),
``"tcp-discarded"`` (waiting segments thrown away by RST or eviction).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from srs.capture.packets import (
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    CaptureEvent,
    Flow,
    StreamChunk,
    StreamClosed,
    StreamGap,
    TcpSegment,
)

__all__ = ["TcpLimits", "TcpReassembler"]

_SEQ_MODULUS: Final = 1 << 32
_HALF_SEQ: Final = 1 << 31
# What a waiting segment costs beyond its bytes (dict entry, heap slot, bytes object): counted
# against the buffer bounds so that a flood of 1-byte segments is bounded too.
_SEGMENT_OVERHEAD_BYTES: Final = 128


@dataclass(frozen=True, slots=True)
class TcpLimits:
    max_flows: int = 10_000
    max_flow_buffer_bytes: int = 1 << 20
    max_total_buffer_bytes: int = 64 << 20


@dataclass(slots=True)
class _Stream:
    next_seq: int  # the 32-bit sequence number of the byte at ``position``
    syn_seq: int | None
    position: int = 0  # bytes delivered so far
    pending: dict[int, bytes] = field(default_factory=dict)  # stream position -> bytes
    heap: list[int] = field(default_factory=list)
    buffered: int = 0
    fin_position: int | None = None


def _signed(delta: int) -> int:
    """RFC 9293 §3.4 sequence-number comparison: a 32-bit difference as a signed distance."""
    delta %= _SEQ_MODULUS
    return delta - _SEQ_MODULUS if delta >= _HALF_SEQ else delta


class TcpReassembler:
    """Segments in, ordered stream events out."""

    def __init__(self, drops: Counter[str], limits: TcpLimits = TcpLimits()) -> None:
        self.drops = drops
        self.limits = limits
        self._streams: dict[Flow, _Stream] = {}
        self._buffered = 0

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    @property
    def flow_count(self) -> int:
        return len(self._streams)

    def segment(self, timestamp: float, segment: TcpSegment) -> list[CaptureEvent]:
        events: list[CaptureEvent] = []
        flow, flags, payload = segment.flow, segment.flags, segment.payload
        if flags & TCP_RST:
            # RFC 9293 §3.5.3: the connection is gone in both directions.  Data an RST may
            # carry (RFC 9293 §3.5.3, "RST segment text") is diagnostic, not stream bytes.
            for direction in (flow, flow.reversed()):
                if direction in self._streams:
                    self._close(direction, timestamp, "rst", events)
            return events
        stream = self._streams.pop(flow, None)
        seq = segment.seq
        if flags & TCP_SYN:
            if stream is not None and stream.syn_seq != seq:
                # A new connection on the same ports (the old one's FIN or RST was missed).
                self._streams[flow] = stream
                self._close(flow, timestamp, "evicted", events)
                stream = None
            if stream is None:
                stream = _Stream(next_seq=(seq + 1) % _SEQ_MODULUS, syn_seq=seq)
            seq = (seq + 1) % _SEQ_MODULUS  # RFC 9293 §3.4: the SYN occupies one number
        elif stream is None:
            if not payload:
                return events  # an ACK or a FIN of a stream we have seen no data of
            stream = _Stream(next_seq=seq, syn_seq=None)
        self._make_room(timestamp, events)
        self._streams[flow] = stream  # (re)inserted last: the dict is in LRU order
        position = stream.position + _signed(seq - stream.next_seq)
        if flags & TCP_FIN and stream.fin_position is None:
            stream.fin_position = position + len(payload)
        if payload:
            self._place(flow, stream, timestamp, position, payload, events)
        if stream.fin_position is not None and stream.position >= stream.fin_position:
            self._close(flow, timestamp, "fin", events)
        return _merged(events)

    def finish(self, timestamp: float) -> list[CaptureEvent]:
        """End of capture: hand out what waits behind gaps; streams stay open."""
        events: list[CaptureEvent] = []
        for flow, stream in self._streams.items():
            while stream.heap:
                self._skip_gap(flow, stream, timestamp, events)
        self._streams.clear()
        self._buffered = 0
        return _merged(events)

    # ------------------------------------------------------------------ internals

    def _place(
        self,
        flow: Flow,
        stream: _Stream,
        timestamp: float,
        position: int,
        payload: bytes,
        events: list[CaptureEvent],
    ) -> None:
        end = position + len(payload)
        if end <= stream.position:
            self.drops["tcp-retransmission"] += 1
            return
        limits = self.limits
        if position > stream.position + limits.max_flow_buffer_bytes:
            # Further ahead than we would ever buffer: the capture lost that much of the stream.
            while stream.heap:
                self._skip_gap(flow, stream, timestamp, events)
            self._gap(flow, stream, timestamp, position - stream.position, events)
        if position <= stream.position:
            self._deliver(flow, stream, timestamp, payload[stream.position - position :], events)
            self._drain(flow, stream, timestamp, events)
            return
        held = stream.pending.get(position)
        if held is not None and len(held) >= len(payload):
            self.drops["tcp-retransmission"] += 1
            return
        if held is None:
            heapq.heappush(stream.heap, position)
        else:
            self._account(stream, -len(held))
        stream.pending[position] = payload
        self._account(stream, len(payload))
        while stream.heap and (
            stream.buffered > limits.max_flow_buffer_bytes
            or self._buffered > limits.max_total_buffer_bytes
        ):
            self._skip_gap(flow, stream, timestamp, events)

    def _skip_gap(
        self, flow: Flow, stream: _Stream, timestamp: float, events: list[CaptureEvent]
    ) -> None:
        """Declare the bytes before the earliest waiting segment lost, and go on from it."""
        first = stream.heap[0]
        if first > stream.position:
            self._gap(flow, stream, timestamp, first - stream.position, events)
        self._drain(flow, stream, timestamp, events)

    def _gap(
        self,
        flow: Flow,
        stream: _Stream,
        timestamp: float,
        missing: int,
        events: list[CaptureEvent],
    ) -> None:
        events.append(StreamGap(timestamp, flow, missing))
        stream.position += missing
        stream.next_seq = (stream.next_seq + missing) % _SEQ_MODULUS

    def _deliver(
        self,
        flow: Flow,
        stream: _Stream,
        timestamp: float,
        data: bytes,
        events: list[CaptureEvent],
    ) -> None:
        stream.position += len(data)
        stream.next_seq = (stream.next_seq + len(data)) % _SEQ_MODULUS
        events.append(StreamChunk(timestamp, flow, data))

    def _drain(
        self, flow: Flow, stream: _Stream, timestamp: float, events: list[CaptureEvent]
    ) -> None:
        while stream.heap and stream.heap[0] <= stream.position:
            position = heapq.heappop(stream.heap)
            data = stream.pending.pop(position)
            self._account(stream, -len(data))
            if position + len(data) <= stream.position:
                self.drops["tcp-retransmission"] += 1
                continue
            self._deliver(flow, stream, timestamp, data[stream.position - position :], events)

    def _account(self, stream: _Stream, size: int) -> None:
        """Count a segment (``size`` > 0) or its release (``size`` < 0) in the bounds."""
        cost = size + _SEGMENT_OVERHEAD_BYTES if size > 0 else size - _SEGMENT_OVERHEAD_BYTES
        stream.buffered += cost
        self._buffered += cost

    def _close(
        self, flow: Flow, timestamp: float, reason: str, events: list[CaptureEvent]
    ) -> None:
        stream = self._streams.pop(flow)
        if stream.pending:
            self.drops["tcp-discarded"] += len(stream.pending)
        self._buffered -= stream.buffered
        events.append(StreamClosed(timestamp, flow, reason))

    def _make_room(self, timestamp: float, events: list[CaptureEvent]) -> None:
        while len(self._streams) >= self.limits.max_flows:
            self._close(next(iter(self._streams)), timestamp, "evicted", events)


def _merged(events: list[CaptureEvent]) -> list[CaptureEvent]:
    """Adjacent chunks of one flow joined into one (in linear time)."""
    out: list[CaptureEvent] = []
    run: list[StreamChunk] = []
    for event in events:
        if isinstance(event, StreamChunk) and run and run[0].flow == event.flow:
            run.append(event)
            continue
        _join(run, out)
        run = []
        if isinstance(event, StreamChunk):
            run.append(event)
        else:
            out.append(event)
    _join(run, out)
    return out


def _join(run: list[StreamChunk], out: list[CaptureEvent]) -> None:
    if len(run) == 1:
        out.append(run[0])
    elif run:
        out.append(StreamChunk(run[0].timestamp, run[0].flow, b"".join(c.data for c in run)))
