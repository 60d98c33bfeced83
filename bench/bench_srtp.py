"""Per-packet cost of SRTP decryption, per suite: SrtpReceiver.unprotect against bare pylibsrtp.

Run: ``.venv/bin/python bench/bench_srtp.py [packets]`` (default 100000).  For each suite
srs decrypts, pylibsrtp protects ``packets`` 172-byte RTP packets (20 ms of G.711) of one
SSRC, then the bench times, best of five rounds, each on a fresh receiver:

* ``srs``   -- :meth:`srs.rtp.srtp.SrtpReceiver.unprotect` (what the receiver calls);
* ``bare``  -- ``pylibsrtp.Session.unprotect`` alone, the floor under it;
* ``rekey`` -- :meth:`srs.rtp.srtp.SrtpInbound.unprotect` during a rekey grace period
  with the new key in use (two contexts held, the right one tried first);

and prints microseconds per packet.  docs/architecture.md ("Hot path") quotes 2-5 us for
pylibsrtp's unprotect.  No assertions: timing goals live here, not in tests.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pylibsrtp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from srs.rtp.packet import RtpPacket
from srs.rtp.srtp import SUITES, SrtpInbound, SrtpReceiver, SrtpSuite

PAYLOAD_BYTES = 160
ROUNDS = 5


def protected_stream(suite: SrtpSuite, key: bytes, count: int) -> list[bytes]:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=suite.profile
    )
    sender = pylibsrtp.Session(policy)
    payload = bytes(range(PAYLOAD_BYTES))
    return [
        sender.protect(bytes(RtpPacket(0, i & 0xFFFF, (160 * i) & 0xFFFF_FFFF, 0xABCD, payload)))
        for i in range(count)
    ]


def best_us(
    makers: list[Callable[[], Callable[[bytes], bytes]]], packets: list[bytes]
) -> list[float]:
    """Best time per packet of each maker's unprotect; rounds interleave the makers so
    that a burst of load elsewhere on the machine does not favour one of them."""
    best = [float("inf")] * len(makers)
    for _ in range(ROUNDS):
        for index, make in enumerate(makers):
            unprotect = make()
            started = time.perf_counter()
            for datagram in packets:
                unprotect(datagram)
            best[index] = min(best[index], time.perf_counter() - started)
    return [elapsed / len(packets) * 1e6 for elapsed in best]


def bare(suite: SrtpSuite, key: bytes) -> Callable[[bytes], bytes]:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=suite.profile
    )
    return pylibsrtp.Session(policy).unprotect


def rekeyed(suite: SrtpSuite, key: bytes) -> Callable[[bytes], bytes]:
    old = SrtpReceiver(suite, secrets.token_bytes(suite.key_salt_bytes))
    inbound = SrtpInbound(old, grace_s=1e9, overlap_s=1e9)
    inbound.rekey(SrtpReceiver(suite, key), 0.0)
    return lambda datagram: inbound.unprotect(datagram, 1.0)


def ours(suite: SrtpSuite, key: bytes) -> Callable[[bytes], bytes]:
    return SrtpReceiver(suite, key).unprotect


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"{count} packets of {12 + PAYLOAD_BYTES} bytes, best of {ROUNDS}; us/packet")
    print(f"{'suite':<26} {'srs':>6} {'bare':>6} {'rekey':>6}")
    for suite in SUITES.values():
        key = secrets.token_bytes(suite.key_salt_bytes)
        packets = protected_stream(suite, key, count)
        makers = [partial(make, suite, key) for make in (ours, bare, rekeyed)]
        srs_us, bare_us, rekey_us = best_us(makers, packets)
        print(f"{suite.name:<26} {srs_us:6.2f} {bare_us:6.2f} {rekey_us:6.2f}")


if __name__ == "__main__":
    main()
