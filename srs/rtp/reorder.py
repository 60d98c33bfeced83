"""Sequence-number arithmetic and the bounded reorder buffer of one RTP sequence space.

Pure and per packet (docs/architecture.md, "Hot path"): no numpy, no clock of its own;
arrival times are passed in as ``now``.

* Extended sequence numbers after RFC 3550 §A.1: a 16-bit number is unwrapped to the
  integer nearest the highest one seen, so wrap-around at 65535 is invisible to callers.
* Validity after RFC 3550 §A.1: a packet more than ``MAX_DROPOUT`` ahead of or more than
  ``MAX_MISORDER`` behind the highest sequence number is a jump.  The first such packet is
  held aside; if the next packet is its successor, the source restarted its sequence and
  the buffer restarts with both (where §A.1 would discard the first, we keep it: it is
  audio).  Otherwise it is dropped as ``bad_sequence``.
* Loss after RFC 3550 §A.3: expected minus received, per sequence epoch, never negative.

Ordering rules, with ``depth`` = ``depth_packets`` and ``hold`` = ``hold_s``:

* the next expected packet is released as soon as it is there, with any held run after it;
* a gap is given up (the packets after it released) when a packet ``depth`` or more ahead
  of the gap arrives, or when the oldest held packet has waited ``hold`` seconds;
* at the start of an epoch nothing is released until one of those two happens, so a
  stream whose first packets arrive out of order is not cut;
* behind the release point a packet is ``late`` (dropped), or ``duplicated`` if it was
  seen before.

So any permutation of a window of up to ``depth`` consecutive packets, all arriving before
the hold time runs out, comes out in sequence order with nothing dropped.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from srs.errors import UsageError

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MAX_DEPTH_PACKETS",
    "ReorderBuffer",
    "unwrap_sequence",
    "unwrap_timestamp",
]

MAX_DROPOUT = 3000  # RFC 3550 §A.1
MAX_MISORDER = 100  # RFC 3550 §A.1
# Packets seen behind the release point are remembered this far back, to tell a duplicate
# from a late packet.  Anything further back fails the MAX_MISORDER check first.
_SEEN_WINDOW = 128
_SEEN_MASK = (1 << _SEEN_WINDOW) - 1
MAX_DEPTH_PACKETS = 64

T = TypeVar("T")


def unwrap_sequence(sequence_number: int, reference: int) -> int:
    """The extended sequence number nearest ``reference`` whose low 16 bits are
    ``sequence_number`` (RFC 3550 §A.1: cycles counted implicitly)."""
    return reference + ((sequence_number - reference + 0x8000) & 0xFFFF) - 0x8000


def unwrap_timestamp(timestamp: int, reference: int) -> int:
    """The extended RTP timestamp nearest ``reference`` whose low 32 bits are ``timestamp``
    (RFC 3550 §5.1: the timestamp wraps at 2**32)."""
    return reference + ((timestamp - reference + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


class ReorderBuffer(Generic[T]):
    """Puts one RTP sequence space back in order; counts what it cannot.

    :meth:`push` and :meth:`drain` return ``(item, arrival_s)`` pairs in sequence order.
    Counters (read them, do not write them): ``received``, ``duplicated``, ``late``,
    ``reordered`` (arrived after a higher sequence number; includes the late ones),
    ``bad_sequence`` (dropped jumps), ``restarts`` (confirmed sequence restarts) and
    :attr:`lost`.
    """

    __slots__ = (
        "depth_packets",
        "hold_s",
        "received",
        "duplicated",
        "late",
        "reordered",
        "bad_sequence",
        "restarts",
        "_held",
        "_oldest_arrival_s",
        "_next",
        "_releasing",
        "_seen_bits",
        "_started",
        "_max_ext",
        "_min_ext",
        "_unique",
        "_lost_closed",
        "_candidate",
    )

    def __init__(self, depth_packets: int = 5, hold_s: float = 0.1) -> None:
        if not 1 <= depth_packets <= MAX_DEPTH_PACKETS:
            raise UsageError(f"depth_packets must be 1..{MAX_DEPTH_PACKETS}, not {depth_packets}")
        if not hold_s >= 0.0:
            raise UsageError(f"hold_s must be >= 0, not {hold_s}")
        self.depth_packets = depth_packets
        self.hold_s = hold_s
        self.received = 0
        self.duplicated = 0
        self.late = 0
        self.reordered = 0
        self.bad_sequence = 0
        self.restarts = 0
        self._lost_closed = 0
        self._candidate: tuple[int, T, float] | None = None
        self._held: dict[int, tuple[T, float]] = {}
        self._oldest_arrival_s = float("inf")
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._held.clear()
        self._oldest_arrival_s = float("inf")
        self._started = False  # a packet of this epoch was accepted
        self._releasing = False  # False at epoch start: nothing released yet
        self._next = 0  # the next sequence number to release, once releasing
        self._seen_bits = 0  # bit i: sequence (next - 1 - i) was seen
        self._max_ext = 0
        self._min_ext = 0
        self._unique = 0  # distinct sequence numbers received in this epoch

    @property
    def lost(self) -> int:
        """RFC 3550 §A.3 cumulative loss: expected minus received, clamped at zero."""
        if not self._started:
            return self._lost_closed
        expected = self._max_ext - self._min_ext + 1
        return self._lost_closed + max(0, expected - self._unique)

    @property
    def held(self) -> int:
        """How many packets wait in the buffer."""
        return len(self._held)

    def next_deadline(self) -> float | None:
        """When :meth:`drain` will release something, or ``None`` if nothing waits."""
        if not self._held:
            return None
        return self._oldest_arrival_s + self.hold_s

    def accept_next(self, sequence_number: int) -> bool:
        """The common case of :meth:`push` without an item: when ``sequence_number`` is
        the next one to release and nothing waits, count it as released and return True
        (the caller places the packet itself); otherwise change nothing and return False
        (the caller then uses :meth:`push`)."""
        next_ext = self._next
        if ((sequence_number - next_ext) & 0xFFFF or not self._releasing or self._held
                or self._candidate is not None):
            return False
        self.received += 1
        self._unique += 1
        self._max_ext = next_ext
        self._next = next_ext + 1
        self._seen_bits = ((self._seen_bits << 1) | 1) & _SEEN_MASK
        return True

    def push(self, sequence_number: int, item: T, now: float) -> list[tuple[T, float]]:
        """Take one packet; return whatever is now releasable, in sequence order."""
        self.received += 1
        next_ext = self._next
        if (
            (sequence_number - next_ext) & 0xFFFF == 0
            and self._releasing
            and not self._held
            and self._candidate is None
        ):
            # The common case, in order with nothing waiting (then next == max + 1).
            self._unique += 1
            self._max_ext = next_ext
            self._next = next_ext + 1
            self._seen_bits = ((self._seen_bits << 1) | 1) & _SEEN_MASK
            return [(item, now)]
        out: list[tuple[T, float]] = []
        max_ext = self._max_ext
        if not self._started:
            ext = sequence_number
            self._max_ext = self._min_ext = ext
            self._started = True
        else:
            ext = max_ext + ((sequence_number - max_ext + 0x8000) & 0xFFFF) - 0x8000
            delta = ext - max_ext
            if not -MAX_MISORDER < delta < MAX_DROPOUT:
                self._jump(sequence_number, item, now, out)
                return out
            if self._candidate is not None:
                # RFC 3550 §A.1: the stream went on where it was; the jump was a stray.
                self._candidate = None
                self.bad_sequence += 1
        self._accept(ext, item, now, out)
        return out

    def _accept(self, ext: int, item: T, now: float, out: list[tuple[T, float]]) -> None:
        """Place an in-range packet; ``_max_ext`` is already set for the epoch."""
        next_ext = self._next
        releasing = self._releasing
        max_ext = self._max_ext
        if releasing and ext < next_ext:
            bit = 1 << (next_ext - 1 - ext)
            if self._seen_bits & bit:
                self.duplicated += 1
            else:
                self._seen_bits |= bit
                self.late += 1
                self.reordered += 1
                self._unique += 1
            return
        held = self._held
        if ext in held:
            self.duplicated += 1
            return
        self._unique += 1
        if ext > max_ext:
            self._max_ext = max_ext = ext
        elif ext < max_ext:
            self.reordered += 1
            if ext < self._min_ext:
                self._min_ext = ext
        if releasing and ext == next_ext and not held:
            # In order after a pending jump was dropped: release at once.
            out.append((item, now))
            self._next = ext + 1
            self._seen_bits = ((self._seen_bits << 1) | 1) & _SEEN_MASK
            return
        held[ext] = (item, now)
        if now < self._oldest_arrival_s:
            self._oldest_arrival_s = now
        if releasing:
            self._release_in_order(out)
        self._release_expired(now, out)
        depth = self.depth_packets
        while held and max_ext - (self._next if self._releasing else min(held)) >= depth:
            self._skip_gap(out)

    def _jump(self, sequence_number: int, item: T, now: float, out: list[tuple[T, float]]) -> None:
        candidate = self._candidate
        if candidate is not None and sequence_number == candidate[0]:
            self.duplicated += 1
            return
        if candidate is not None and sequence_number == (candidate[0] + 1) & 0xFFFF:
            # RFC 3550 §A.1: two sequential packets after a jump; the source restarted.
            self._candidate = None
            out.extend(self.flush())
            self._lost_closed = self.lost
            self._start_epoch()
            self.restarts += 1
            first_seq, first_item, first_arrival = candidate
            self._max_ext = self._min_ext = first_seq
            self._started = True
            self._accept(first_seq, first_item, first_arrival, out)
            self._accept(first_seq + 1, item, now, out)
            return
        if candidate is not None:
            self.bad_sequence += 1
        self._candidate = (sequence_number, item, now)

    def _release_in_order(self, out: list[tuple[T, float]]) -> None:
        held = self._held
        next_ext = self._next
        bits = self._seen_bits
        while next_ext in held:
            out.append(held.pop(next_ext))
            next_ext += 1
            bits = ((bits << 1) | 1) & _SEEN_MASK
        self._next = next_ext
        self._seen_bits = bits
        self._oldest_arrival_s = min((a for _, a in held.values()), default=float("inf"))

    def _skip_gap(self, out: list[tuple[T, float]]) -> None:
        """Give up on the missing packets before the lowest held one."""
        lowest = min(self._held)
        if self._releasing:
            self._seen_bits = (self._seen_bits << (lowest - self._next)) & _SEEN_MASK
        self._releasing = True
        self._next = lowest
        self._release_in_order(out)

    def _release_expired(self, now: float, out: list[tuple[T, float]]) -> None:
        while self._held and self._oldest_arrival_s + self.hold_s <= now:
            self._skip_gap(out)

    def drain(self, now: float) -> list[tuple[T, float]]:
        """Release what has waited ``hold_s`` or longer (call at :meth:`next_deadline`)."""
        out: list[tuple[T, float]] = []
        self._release_expired(now, out)
        return out

    def flush(self) -> list[tuple[T, float]]:
        """Release everything held, in order (end of stream).  A pending jump is dropped."""
        out: list[tuple[T, float]] = []
        while self._held:
            self._skip_gap(out)
        if self._candidate is not None:
            self._candidate = None
            self.bad_sequence += 1
        return out
