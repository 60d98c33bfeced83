"""The timeline of one recorded track: where each RTP payload goes in the recording.

Every track of a recording session shares one origin (``origin_s``, the session clock's
start).  A position on a track is a sample offset from that origin at the track's clock
rate.  A track's final length is the session's wall-clock duration in samples, whatever
arrived; loss, silence suppression (DTX/CN gaps), hold and a late start are silence.

Placement rules (all positions in samples at ``clock_rate_hz``):

* **Anchor.**  The first packet of a stream, in sequence order, goes where its arrival
  time puts it (``round((arrival_s - origin_s) * clock_rate_hz)``, never below 0): a late
  start becomes leading silence.  Later packets go at the anchor plus their (unwrapped,
  RFC 3550 §5.1) timestamp difference to the anchor packet: RTP time, not arrival time, so
  jitter does not smear the audio and timestamp gaps (DTX, hold) become silence.
* **Re-anchor** at the arrival position, counted in ``resyncs`` by reason, when
  ``ssrc_change`` -- the track followed a new SSRC (RFC 3550 §8.2, sender restart or
  re-INVITE); ``timestamp_backward`` -- the timestamp went back in sequence order (a
  sender or SBC splicing a new stream under the old SSRC); ``timestamp_jump`` -- the
  position predicted by the timestamp and the arrival position disagree by more than
  ``resync_threshold_s`` (default 1 s); ``clock_rate_change`` -- the payload type changed
  to one with another clock rate, whose timestamps are not comparable.

  Why 1 s: normal disagreement is the delay variation since the anchor packet, which
  jitter buffers bound at a few hundred ms; timestamp restarts and jumps are random 32-bit
  values, and a sender that stops its timestamps during hold disagrees by the hold time,
  both far above 1 s; a sender clock off by 100 ppm needs about 3 hours to drift 1 s.
  A smaller bound would re-anchor on every delay spike, a larger one keeps a broken
  timeline longer.  Between re-anchors a track stays within the first packet's delay
  variation of the wall clock.
* **Overlap.**  Positions can go back after a re-anchor, or when a sender's timestamps
  advance by less than its packet length.  The timeline reports positions as they are;
  :class:`~srs.rtp.assembler.PcmAssembler` never rewinds: audio that would overlap what is
  already laid out loses its overlapping head (counted in ``trimmed_samples``), so the
  first arrival wins.
* **Late.**  A packet behind what the reorder buffer already released is dropped (``late``).
* **Events.**  ``telephone-event`` payload types (RFC 4733) go through the reorder buffer
  (they share the sequence space) but never move the anchor; they are placed at their
  event start timestamp and marked ``is_event``.
* **Codec change.**  A new payload type at the same clock rate changes nothing (PCMU to
  CN and back is normal); ``Placed.payload_type`` says which decoder applies.  A new clock
  rate re-anchors and is counted, and positions stay in the track's clock rate; whoever
  writes PCM at one sample rate must start a new file (``PcmAssembler`` skips payload types
  it has no codec for and counts them).
* **Payload types.**  Once told what the m-line offered (:meth:`accept_payload_types`),
  a track places only offered payload types that srs can decode, and events.  An offered
  type srs cannot decode is dropped as ``undecodable_payload``; an unoffered one as
  ``unoffered_payload`` -- except PCMU (0) and PCMA (8), whose meaning RFC 3551 §6 fixes
  without any SDP: those are placed and counted (``unoffered_static``).  They are dropped
  after the reorder buffer, so they leave no gap in the sequence numbers.

``TrackTimeline`` is pure and per packet, runs on the event loop and has no clock of its
own; the worker-thread side that turns placed payloads into PCM is
:mod:`srs.rtp.assembler`.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from srs.errors import RtpError, UsageError
from srs.rtp.packet import RTCP_RR, RTCP_SR, RtcpCompound, RtpPacket, is_rtcp
from srs.rtp.reorder import _SEEN_MASK, MAX_DEPTH_PACKETS, ReorderBuffer, unwrap_timestamp
from srs.rtp.stats import JitterEstimator, SsrcJitter

_SEQ_TS_SSRC = struct.Struct("!HII")  # RFC 3550 §5.1: octets 2-11 of the fixed header

__all__ = ["TELEPHONE_EVENT_BYTES", "TimelineConfig", "Placed", "TrackStats", "TrackTimeline",
           "UNOFFERED_STATIC", "compiled_walk", "use_compiled_walk"]

TELEPHONE_EVENT_BYTES = 4  # RFC 4733 §2.3: event, E/R/volume, duration
# RFC 3551 §6: static payload types whose meaning needs no SDP, and that srs decodes.
UNOFFERED_STATIC = frozenset({0, 8})


@dataclass(frozen=True, slots=True)
class TimelineConfig:
    """Tuning of a :class:`TrackTimeline`; the defaults suit 20 ms audio packets."""

    reorder_depth_packets: int = 5  # a gap is given up this many packets later ...
    reorder_hold_s: float = 0.1  # ... or after the oldest held packet waited this long
    resync_threshold_s: float = 1.0  # see the module docstring
    ssrc_switch_back_s: float = 1.0  # an earlier SSRC is followed again after this silence
    max_tracked_ssrcs: int = 32  # SSRCs remembered and measured per track

    def __post_init__(self) -> None:
        if not 1 <= self.reorder_depth_packets <= MAX_DEPTH_PACKETS:
            raise UsageError(f"reorder_depth_packets must be 1..{MAX_DEPTH_PACKETS}")
        for name in ("reorder_hold_s", "resync_threshold_s", "ssrc_switch_back_s"):
            if not getattr(self, name) >= 0.0:
                raise UsageError(f"{name} must be >= 0")
        if self.max_tracked_ssrcs < 1:
            raise UsageError("max_tracked_ssrcs must be >= 1")


@dataclass(slots=True)
class Placed:
    """"These payload bytes go at sample ``offset_samples`` of the track."

    Slotted and not frozen because one is made per packet (a frozen dataclass costs five
    times as much to build); treat it as read-only.  ``timestamp`` is the packet's RTP
    timestamp as received (for events, the event's start, RFC 4733 §2.3).
    """

    offset_samples: int
    payload_type: int
    payload: bytes
    ssrc: int
    timestamp: int
    is_event: bool = False


@dataclass(frozen=True, slots=True)
class TrackStats:
    """Counters of one track.  ``lost`` is RFC 3550 §A.3 (expected - received, summed over
    SSRCs and sequence epochs, never negative); ``reordered`` counts packets that arrived
    after a higher sequence number, ``late`` ones among them are not in the recording.
    ``dropped`` holds every packet not placed, by reason (``duplicate``, ``late``,
    ``bad_sequence``, ``stale_ssrc`` and the parse reasons of ``RtpError``)."""

    received: int
    lost: int
    duplicated: int
    reordered: int
    late: int
    dropped: Mapping[str, int]
    resyncs: Mapping[str, int]
    sequence_restarts: int
    ssrcs: tuple[int, ...]
    payload_types: tuple[int, ...]
    jitter_ms: Mapping[int, float]
    rtcp_packets: int
    sender_reports: int
    receiver_reports: int
    unoffered_static: int = 0  # PCMU/PCMA packets placed without being offered


@dataclass(slots=True)
class _Totals:
    """Counters of the reorder buffers of SSRCs the track has left."""

    duplicated: int = 0
    late: int = 0
    reordered: int = 0
    lost: int = 0
    bad_sequence: int = 0
    restarts: int = 0

    def add(self, buffer: ReorderBuffer[RtpPacket]) -> None:
        self.duplicated += buffer.duplicated
        self.late += buffer.late
        self.reordered += buffer.reordered
        self.lost += buffer.lost
        self.bad_sequence += buffer.bad_sequence
        self.restarts += buffer.restarts


class TrackTimeline:
    """Turns one track's RTP packets into :class:`Placed` payloads (see module docstring).

    Drive it with :meth:`receive` (datagrams) or :meth:`push` (parsed packets), call
    :meth:`drain` at :meth:`next_deadline`, and at the end :meth:`flush` then
    :meth:`finish`.
    """

    # Slotted: the per-packet path reads a dozen of these per packet, for hundreds of
    # tracks in turn (docs/architecture.md, "Hot path").
    __slots__ = (
        "origin_s",
        "clock_rate_hz",
        "config",
        "_event_pts",
        "_pt_rates",
        "_resync_samples",
        "_buffer",
        "_retired",
        "_ssrc",
        "_ssrcs",
        "_last_arrival_s",
        "_payload_types",
        "_jitter",
        "_ssrc_jitter",
        "_received",
        "_drops",
        "_placeable",
        "_offered",
        "_unoffered_static",
        "_resyncs",
        "_rtcp",
        "_reanchor_reason",
        "_anchor_offset",
        "_anchor_ts",
        "_last_ts",
        "_anchor_rate_hz",
        "_finished",
    )

    def __init__(
        self,
        origin_s: float,
        clock_rate_hz: int,
        *,
        event_payload_types: Iterable[int] = (),
        payload_clock_rates_hz: Mapping[int, int] | None = None,
        config: TimelineConfig = TimelineConfig(),
    ) -> None:
        if clock_rate_hz <= 0:
            raise UsageError(f"clock_rate_hz must be positive, not {clock_rate_hz}")
        self.origin_s = origin_s
        self.clock_rate_hz = clock_rate_hz
        self.config = config
        self._event_pts = frozenset(event_payload_types)
        self._pt_rates = dict(payload_clock_rates_hz or {})
        self._resync_samples = config.resync_threshold_s * clock_rate_hz
        self._buffer = self._new_buffer()
        self._retired = _Totals()
        self._ssrc: int | None = None
        self._ssrcs: dict[int, None] = {}  # seen, in order of first appearance (bounded)
        self._last_arrival_s = 0.0
        self._payload_types: dict[int, None] = {}
        self._jitter = SsrcJitter(
            clock_rate_hz,
            max_ssrcs=config.max_tracked_ssrcs,
            discontinuity_s=config.resync_threshold_s,
        )
        self._ssrc_jitter: JitterEstimator | None = None  # the current SSRC's
        self._received = 0
        self._drops: dict[str, int] = {}
        # Payload types placed as they come (None: every one, until accept_payload_types).
        self._placeable: frozenset[int] | None = None
        self._offered: frozenset[int] = frozenset()
        self._unoffered_static = 0
        self._resyncs: dict[str, int] = {}
        self._rtcp = [0, 0, 0]  # packets, sender reports, receiver reports
        # Anchor: position ``_anchor_offset`` is extended timestamp ``_anchor_ts``.  The
        # next audio packet re-anchors when a reason is set ("": the track's first anchor).
        self._reanchor_reason: str | None = ""
        self._anchor_offset = 0
        self._anchor_ts = 0
        self._last_ts = 0  # extended timestamp of the last audio packet placed
        self._anchor_rate_hz = clock_rate_hz  # timestamp clock rate of the anchored stream
        self._finished = False

    def accept_payload_types(self, offered: Iterable[int], decodable: Iterable[int],
                             event: int | None = None,
                             clock_rates_hz: Mapping[int, int] | None = None) -> None:
        """Add what an offer's m-line listed (RFC 3264 §5.1: a sender may use any of them),
        which of them srs decodes, the telephone-event type a new answer accepted and the
        ``a=rtpmap`` clock rate of each payload type; from now on other payload types are
        not placed."""
        if event is not None:
            self._event_pts |= {event}
        if clock_rates_hz:
            # Only rates other than the track's are kept: the per-packet path looks them
            # up only when there are any.
            for pt, rate in clock_rates_hz.items():
                if rate != self.clock_rate_hz:
                    self._pt_rates[pt] = rate
                else:
                    self._pt_rates.pop(pt, None)
        self._offered |= frozenset(offered)
        placeable = (self._placeable or frozenset()) | (self._offered & frozenset(decodable))
        self._placeable = placeable | self._event_pts

    @property
    def payload_clock_rates_hz(self) -> dict[int, int]:
        """The payload types whose ``a=rtpmap`` clock rate is not the track's, and theirs."""
        return dict(self._pt_rates)

    def _new_buffer(self) -> ReorderBuffer[RtpPacket]:
        return ReorderBuffer(self.config.reorder_depth_packets, self.config.reorder_hold_s)

    # -- input ---------------------------------------------------------------------------

    def receive(self, datagram: bytes, now: float) -> list[Placed]:
        """One datagram from the track's media port: RTCP is counted (RFC 5761 §4), RTP is
        parsed and pushed, anything malformed is dropped and counted by reason."""
        out: list[Placed] = []
        self.receive_into(datagram, now, out)
        return out

    def receive_into(self, datagram: bytes, now: float, out: list[Placed]) -> None:
        """:meth:`receive`, appending what it places to ``out``.

        The common case -- a plain RTP header (version 2, no padding, extension or CSRC),
        the current SSRC, the next sequence number with nothing held, a placeable audio
        payload type of the anchored clock rate, the timestamp moving forward within the
        resync threshold -- is placed here without building an :class:`RtpPacket`; the
        result, counters and statistics are exactly those of the general path
        (:meth:`_receive_general`), which everything else takes.
        """
        if len(datagram) >= 12 and datagram[0] == 0x80 and self._reanchor_reason is None:
            second = datagram[1]
            payload_type = second & 0x7F
            placeable = self._placeable
            # 192-223 in the second octet is RTCP (RFC 5761 §4).
            if (not 192 <= second <= 223 and payload_type not in self._event_pts
                    and (placeable is None or payload_type in placeable)
                    and not self._finished):
                sequence_number, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(datagram, 2)
                rate = self.clock_rate_hz
                pt_rates = self._pt_rates
                packet_rate = pt_rates.get(payload_type, rate) if pt_rates else rate
                if ssrc == self._ssrc and packet_rate == self._anchor_rate_hz:
                    last_ts = self._last_ts
                    # unwrap_timestamp(), inlined as in _place_one
                    ext = last_ts + ((timestamp - last_ts + 0x8000_0000) & 0xFFFF_FFFF)
                    ext -= 0x8000_0000
                    if ext >= last_ts:
                        delta = ext - self._anchor_ts
                        if packet_rate != rate:
                            delta = delta * rate // packet_rate
                        predicted = self._anchor_offset + delta
                        skew = (now - self.origin_s) * rate - predicted
                        if (-self._resync_samples <= skew <= self._resync_samples
                                and self._buffer.accept_next(sequence_number)):
                            self._received += 1
                            self._last_arrival_s = now
                            payload_types = self._payload_types
                            if payload_type not in payload_types and len(payload_types) < 128:
                                payload_types[payload_type] = None
                            jitter = self._ssrc_jitter
                            if jitter is not None:
                                jitter.update(now, timestamp)
                            self._last_ts = ext
                            out.append(Placed(predicted, payload_type, datagram[12:], ssrc,
                                              timestamp))
                            return
        placed = self._receive_general(datagram, now)
        if placed:
            out.extend(placed)

    def receive_many(self, datagrams: list[bytes], now: float, out: list[Placed]) -> None:
        """:meth:`receive_into` for each of ``datagrams``, all arrived at ``now``, in order:
        with the compiled walk (``srs/rtp/_rtpwalk.c``, :func:`compiled_walk`) the common
        case is placed in C and only the others take :meth:`receive_into`; the result,
        counters and statistics are the same either way."""
        walk = _walk
        if walk is None or type(now) is not float or type(datagrams) is not list:
            for datagram in datagrams:
                self.receive_into(datagram, now, out)
            return
        index, count = 0, len(datagrams)
        while index < count:
            index = walk(self, datagrams, index, now, out)
            if index < count:
                self.receive_into(datagrams[index], now, out)
                index += 1

    def _receive_general(self, datagram: bytes, now: float) -> list[Placed]:
        """:meth:`receive` for every datagram: parse, then :meth:`push`."""
        try:
            if is_rtcp(datagram):
                self._count_rtcp(RtcpCompound.parse(datagram))
                return []
            packet = RtpPacket.parse(datagram)
        except RtpError as error:
            self.count_drop(error.drop_reason)
            return []
        return self.push(packet, now)

    def _count_rtcp(self, compound: RtcpCompound) -> None:
        counts = self._rtcp
        for packet in compound.packets:
            counts[0] += 1
            if packet.packet_type == RTCP_SR:
                counts[1] += 1
            elif packet.packet_type == RTCP_RR:
                counts[2] += 1

    def count_drop(self, reason: str) -> None:
        """Count a packet dropped before it reached the track (e.g. SRTP auth failure)."""
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def push(self, packet: RtpPacket, now: float) -> list[Placed]:
        """One parsed RTP packet that arrived at ``now``; returns what can be placed."""
        if self._finished:
            raise UsageError("push() after finish()")
        self._received += 1
        out: list[Placed] | None = None
        ssrc = packet.ssrc
        if ssrc != self._ssrc:
            if ssrc in self._ssrcs and now - self._last_arrival_s < self.config.ssrc_switch_back_s:
                # In-flight packets of the SSRC the track just left: not a switch back.
                self.count_drop("stale_ssrc")
                return []
            out = []
            self._switch_ssrc(ssrc, out)
        self._last_arrival_s = now
        payload_type = packet.payload_type
        is_event = payload_type in self._event_pts
        if is_event and len(packet.payload) < TELEPHONE_EVENT_BYTES:
            # Unreadable as an event (RFC 4733 §2.3): dropped here, never placed.
            self.count_drop("telephone_event")
            return out or []
        if payload_type not in self._payload_types and len(self._payload_types) < 128:
            self._payload_types[payload_type] = None
        jitter = self._ssrc_jitter
        if jitter is not None and not is_event:
            jitter.update(now, packet.timestamp)
        released = self._buffer.push(packet.sequence_number, packet, now)
        if out is None:
            placeable = self._placeable
            if len(released) == 1 and (placeable is None
                                       or released[0][0].payload_type in placeable):
                return [self._place_one(*released[0])]
            out = []
        self._place(released, out)
        return out

    def restart(self, reason: str) -> list[Placed]:
        """A new RTP session on this track (an m-line offered again after it was stopped,
        RFC 3264 §8.2): what is held is placed and returned, sequence state starts afresh
        and the next packet re-anchors at its arrival, counted under ``reason``."""
        out: list[Placed] = []
        self._new_epoch(reason, out)
        return out

    def _new_epoch(self, reason: str, out: list[Placed]) -> None:
        released = self._buffer.flush()
        if released:
            self._place(released, out)
        self._retired.add(self._buffer)
        self._buffer = self._new_buffer()
        if self._reanchor_reason is None:
            self._reanchor_reason = reason

    def _switch_ssrc(self, ssrc: int, out: list[Placed]) -> None:
        if self._ssrc is not None:
            self._new_epoch("ssrc_change", out)
        self._ssrc = ssrc
        self._ssrc_jitter = self._jitter.estimator(ssrc)
        if len(self._ssrcs) < self.config.max_tracked_ssrcs:
            self._ssrcs[ssrc] = None

    # -- placement -----------------------------------------------------------------------

    def wall_offset(self, now: float) -> int:
        """The position of time ``now`` on the track (may be negative before the origin)."""
        return round((now - self.origin_s) * self.clock_rate_hz)

    def _place(self, released: list[tuple[RtpPacket, float]], out: list[Placed]) -> None:
        placeable = self._placeable
        for packet, arrival_s in released:
            if placeable is None or packet.payload_type in placeable or self._unoffered(packet):
                out.append(self._place_one(packet, arrival_s))

    def _unoffered(self, packet: RtpPacket) -> bool:
        """A payload type that is not placed as it comes: count it; True to place it."""
        payload_type = packet.payload_type
        if payload_type in self._offered:
            self.count_drop("undecodable_payload")
            return False
        if payload_type in UNOFFERED_STATIC and self.clock_rate_hz == 8000:
            self._unoffered_static += 1
            return True
        self.count_drop("unoffered_payload")
        return False

    def _place_one(self, packet: RtpPacket, arrival_s: float) -> Placed:
        payload_type = packet.payload_type
        if payload_type in self._event_pts:
            return self._place_event(packet, arrival_s)
        rate = self.clock_rate_hz
        packet_rate = self._pt_rates.get(payload_type, rate) if self._pt_rates else rate
        reason = self._reanchor_reason
        if reason is None:
            if packet_rate != self._anchor_rate_hz:
                reason = "clock_rate_change"
            else:
                last_ts = self._last_ts
                # unwrap_timestamp(), inlined: this is the per-packet path.
                ext = last_ts + ((packet.timestamp - last_ts + 0x8000_0000) & 0xFFFF_FFFF)
                ext -= 0x8000_0000
                if ext < last_ts:
                    reason = "timestamp_backward"
                else:
                    delta = ext - self._anchor_ts
                    if packet_rate != rate:
                        delta = delta * rate // packet_rate
                    predicted = self._anchor_offset + delta
                    skew = (arrival_s - self.origin_s) * rate - predicted
                    if -self._resync_samples <= skew <= self._resync_samples:
                        self._last_ts = ext
                        return Placed(
                            predicted, payload_type, packet.payload, packet.ssrc, packet.timestamp
                        )
                    reason = "timestamp_jump"
        if reason:  # "" is the first anchor of the track: not a resync
            self._resyncs[reason] = self._resyncs.get(reason, 0) + 1
        self._reanchor_reason = None
        self._anchor_offset = offset = max(0, self.wall_offset(arrival_s))
        self._anchor_ts = self._last_ts = packet.timestamp
        self._anchor_rate_hz = packet_rate
        return Placed(offset, payload_type, packet.payload, packet.ssrc, packet.timestamp)

    def _place_event(self, packet: RtpPacket, arrival_s: float) -> Placed:
        rate = self.clock_rate_hz
        event_rate = self._pt_rates.get(packet.payload_type, rate)
        wall = self.wall_offset(arrival_s)
        offset = wall  # without a timeline to read the timestamp against, arrival will do
        if self._reanchor_reason is None and event_rate == self._anchor_rate_hz:
            delta = unwrap_timestamp(packet.timestamp, self._last_ts) - self._anchor_ts
            if event_rate != rate:
                delta = delta * rate // event_rate
            predicted = self._anchor_offset + delta
            # An event starts at most 0xFFFF timestamp units (its longest duration, RFC 4733
            # §2.5.1.3) before it arrives; a start outside that is a broken timestamp.
            earliest = wall - self._resync_samples - 0xFFFF * rate // event_rate
            if earliest <= predicted <= wall + self._resync_samples:
                offset = predicted
        return Placed(
            max(0, offset), packet.payload_type, packet.payload, packet.ssrc, packet.timestamp, True
        )

    # -- timers and the end --------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`drain` should be called next, or ``None``."""
        return self._buffer.next_deadline()

    def drain(self, now: float) -> list[Placed]:
        """Release packets that waited in the reorder buffer for ``reorder_hold_s``."""
        out: list[Placed] = []
        released = self._buffer.drain(now)
        if released:
            self._place(released, out)
        return out

    def settled_offset(self, now: float) -> int:
        """A position before which no later :meth:`push`/:meth:`drain` can place audio.

        A packet is placed no earlier than ``resync_threshold_s`` before its arrival
        position, and (after :meth:`drain` at ``now``) nothing held arrived more than
        ``reorder_hold_s`` before ``now``.  Audio up to here can be written out for good.
        """
        lag_s = self.config.reorder_hold_s + self.config.resync_threshold_s
        return max(0, self.wall_offset(now - lag_s))

    def flush(self) -> list[Placed]:
        """Release everything the reorder buffer holds (end of the stream)."""
        out: list[Placed] = []
        released = self._buffer.flush()
        if released:
            self._place(released, out)
        return out

    def finish(self, now: float) -> int:
        """End the track; return its length in samples: the session's wall-clock duration."""
        if self._buffer.held:
            raise UsageError("finish() with packets still held: call flush() first")
        self._finished = True
        return max(0, self.wall_offset(now))

    def stats(self) -> TrackStats:
        buffer = self._buffer
        retired = self._retired
        late = retired.late + buffer.late
        duplicated = retired.duplicated + buffer.duplicated
        bad_sequence = retired.bad_sequence + buffer.bad_sequence
        counted = {"duplicate": duplicated, "late": late, "bad_sequence": bad_sequence}
        dropped = self._drops | {reason: n for reason, n in counted.items() if n}
        return TrackStats(
            received=self._received,
            lost=retired.lost + buffer.lost,
            duplicated=duplicated,
            reordered=retired.reordered + buffer.reordered,
            late=late,
            dropped=MappingProxyType(dropped),
            resyncs=MappingProxyType(dict(self._resyncs)),
            sequence_restarts=retired.restarts + buffer.restarts,
            ssrcs=tuple(self._ssrcs),
            payload_types=tuple(self._payload_types),
            jitter_ms=self._jitter.jitter_ms(),
            rtcp_packets=self._rtcp[0],
            sender_reports=self._rtcp[1],
            receiver_reports=self._rtcp[2],
            unoffered_static=self._unoffered_static,
        )


_Walk = Callable[[TrackTimeline, list[bytes], int, float, list[Placed]], int]


def _load_walk() -> _Walk | None:
    """The compiled walk, bound to these classes; None when it is not built (no compiler at
    install time) or a class is not laid out as it reads them: receive_into does it all."""
    try:
        module = importlib.import_module("srs.rtp._rtpwalk")
        module.bind(TrackTimeline, ReorderBuffer, JitterEstimator, Placed, _SEEN_MASK)
    except (ImportError, TypeError):
        return None
    walk: _Walk = module.walk
    return walk


_walk = _load_walk()


def compiled_walk() -> bool:
    """True when :meth:`TrackTimeline.receive_many` places the common case in C."""
    return _walk is not None


def use_compiled_walk(enabled: bool) -> None:
    """Turn the compiled walk off (``False``) or back on where it is built (tests, bench)."""
    global _walk
    _walk = _load_walk() if enabled else None
