"""Per-packet cost of the pure media core: RtpPacket.parse + TrackTimeline.push, and the
datagram entries the server uses (TrackTimeline.receive_into, with its fast path, and
TrackTimeline.receive_many with the compiled walk of srs/rtp/_rtpwalk.c, one datagram a
call as 20 ms packets come, and four a call as a queued socket gives them).

Run: ``.venv/bin/python bench/bench_rtp_core.py [packets]`` (default 100000).  Prints
microseconds per packet for a clean 20 ms PCMU stream (the common case), for one with
1 % reordering (the buffer's slow path), and for the per-second batch work that follows
(G.711 decode and PCM layout), so a change to the hot path can be measured before and
after (docs/architecture.md, "Hot path").  No assertions: timing goals live here, not in tests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from srs import codecs
from srs.rtp import track
from srs.rtp.assembler import PcmAssembler
from srs.rtp.packet import RtpPacket
from srs.rtp.track import Placed, TrackTimeline

PAYLOAD_BYTES = 160  # 20 ms of G.711: a 172-byte RTP packet
# The receive paths hand their placements over about once a second, as a tick takes a
# stream's pending payloads: memory is reused, not grown by every packet of the run.
TICK_PACKETS = 50


def datagrams(count: int, *, swap_every: int = 0) -> list[tuple[bytes, float]]:
    """``count`` packets of one stream with arrival times; every ``swap_every``-th pair is
    delivered in swapped order."""
    payload = bytes(range(PAYLOAD_BYTES))
    out = [
        (
            bytes(RtpPacket(0, (1000 + i) & 0xFFFF, (160 * i) & 0xFFFF_FFFF, 0xABCD, payload)),
            i * 0.02,
        )
        for i in range(count)
    ]
    if swap_every:
        for i in range(0, count - 1, swap_every):
            (a, ta), (b, tb) = out[i], out[i + 1]
            out[i], out[i + 1] = (b, ta), (a, tb)
    return out


def per_packet_s(packets: list[tuple[bytes, float]]) -> tuple[float, list[Placed]]:
    """The general path: ``RtpPacket.parse`` then ``TrackTimeline.push``."""
    timeline = TrackTimeline(0.0, 8000)
    timeline.accept_payload_types((0, 101), (0,))  # as the server does for an m-line
    parse = RtpPacket.parse
    push = timeline.push
    placed: list[Placed] = []
    started = time.perf_counter()
    for data, now in packets:
        placed += push(parse(data), now)
    elapsed = time.perf_counter() - started
    placed += timeline.flush()
    return elapsed, placed


def receive_s(packets: list[tuple[bytes, float]]) -> float:
    """The live path: datagrams into ``TrackTimeline.receive_into`` (its fast path for the
    common case, the general path for the rest)."""
    timeline = TrackTimeline(0.0, 8000)
    timeline.accept_payload_types((0, 101), (0,))
    receive_into = timeline.receive_into
    placed: list[Placed] = []
    started = time.perf_counter()
    for data, now in packets:
        receive_into(data, now, placed)
        if len(placed) >= TICK_PACKETS:
            placed = []
    return time.perf_counter() - started


def receive_many_s(packets: list[tuple[bytes, float]], per_call: int) -> float:
    """``TrackTimeline.receive_many`` with ``per_call`` datagrams a call (each group at the
    arrival time of its first)."""
    timeline = TrackTimeline(0.0, 8000)
    timeline.accept_payload_types((0, 101), (0,))
    receive_many = timeline.receive_many
    groups = [([data for data, _ in packets[i:i + per_call]], packets[i][1])
              for i in range(0, len(packets), per_call)]
    placed: list[Placed] = []
    started = time.perf_counter()
    for batch, now in groups:
        receive_many(batch, now, placed)
        if len(placed) >= TICK_PACKETS:
            placed = []
    return time.perf_counter() - started


def parse_only_s(packets: list[tuple[bytes, float]]) -> float:
    parse = RtpPacket.parse
    started = time.perf_counter()
    for data, _ in packets:
        parse(data)
    return time.perf_counter() - started


def batch_s(placed: list[Placed]) -> float:
    assembler = PcmAssembler({0: codecs.PCMU}, 8000)
    per_second = 50
    started = time.perf_counter()
    for start in range(0, len(placed), per_second):
        assembler.add(placed[start : start + per_second])
        assembler.take(placed[min(start + per_second, len(placed)) - 1].offset_samples)
    return time.perf_counter() - started


ROUNDS = 5  # each case runs this often, interleaved with the others; the best round counts


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    clean = datagrams(count)
    swapped = datagrams(count, swap_every=100)
    print(f"{count} packets of {len(clean[0][0])} bytes, Python {sys.version.split()[0]},"
          f" best of {ROUNDS} interleaved rounds")
    _, placed = per_packet_s(clean)
    cases: dict[str, Callable[[], float]] = {
        "parse only": lambda: parse_only_s(clean),
        "parse + push, in order": lambda: per_packet_s(clean)[0],
        "parse + push, 1 % swapped pairs": lambda: per_packet_s(swapped)[0],
        "receive_into, in order": lambda: receive_s(clean),
        "receive_into, 1 % swapped pairs": lambda: receive_s(swapped),
        "decode + lay out, 1 s batches": lambda: batch_s(placed),
    }
    if track.compiled_walk():
        cases |= {
            "receive_many (compiled), 1 a call": lambda: receive_many_s(clean, 1),
            "receive_many (compiled), 1 % swapped": lambda: receive_many_s(swapped, 1),
            "receive_many (compiled), 4 a call": lambda: receive_many_s(clean, 4),
        }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(ROUNDS):
        for label, case in cases.items():
            best[label] = min(best[label], case())
    for label, elapsed in best.items():
        print(f"{label:<34} {elapsed / count * 1e6:6.2f} us/packet")
    print(f"{'':<34} receive_into / parse + push, in order:"
          f" {best['receive_into, in order'] / best['parse + push, in order']:.2f}")
    if track.compiled_walk():
        print(f"{'':<34} receive_many (compiled), 1 a call / receive_into, in order:"
              f" {best['receive_many (compiled), 1 a call'] / best['receive_into, in order']:.2f}")
    print(f"{'':<34} decode + lay out: {best['decode + lay out, 1 s batches'] / count * 50e6:.0f}"
          " us per second of audio")


if __name__ == "__main__":
    main()
