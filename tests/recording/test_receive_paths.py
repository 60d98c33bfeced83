"""Every receive path records the same files: StreamState.receive per datagram, and
StreamState.receive_many per wake-up with the compiled timeline walk (srs/rtp/_rtpwalk.c)
and with the pure-Python one.

One call, recorded three times from the same datagrams at the same arrival times: loss,
reordering, duplicates, bursts read in one wake-up, a codec switch (PCMU to PCMA), L16 at
16 kHz beside PCMU (a per-payload-type clock rate), DTMF, a timestamp jump, a new SSRC and
a stray from the old one, RTCP, garbage; plain RTP and SRTP (with forged packets).  The
WAVs and the sidecars must be identical byte for byte.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest
import soundfile as sf

from srs.rtp import track
from srs.rtp.packet import RtcpCompound, RtcpPacket
from srs.rtp.srtp import SUITES
from srs.rtp.track import TrackStats
from tests.recording.corehost import CoreHost
from tests.sipclient import crypto_attribute, rtp_packet, sdp_offer

SUITE = "AES_CM_128_HMAC_SHA1_80"
KEYS = (bytes(range(30)), bytes(range(30, 60)))
SOURCES = (("127.0.0.1", 40000), ("127.0.0.1", 40002))
# L16 at 16 kHz on the second m-line: a payload type whose clock is not the track's.
L16_RTPMAP = "a=rtpmap:96 L16/16000\r\n"


def pcmu(seq: int) -> bytes:
    return bytes((seq * 7 + i) & 0xFF for i in range(160))


def wake_ups(index: int) -> Iterator[tuple[float, list[bytes]]]:
    """(seconds since the first, datagrams read together) for stream ``index``."""
    ssrc = 0x1000 + index
    t = 0.0
    seq = 100
    ts = 5000

    def packet(pt: int = 0, payload: bytes | None = None, *, marker: bool = False,
               s: int | None = None, stamp: int | None = None, source: int = ssrc) -> bytes:
        return rtp_packet(seq if s is None else s, ts if stamp is None else stamp, source,
                          pcmu(seq) if payload is None else payload, pt=pt, marker=marker)

    def step(samples: int = 160) -> None:
        nonlocal seq, ts
        seq = (seq + 1) & 0xFFFF
        ts = (ts + samples) & 0xFFFF_FFFF

    for n in range(60):  # clean, every third wake-up a burst of three
        burst = [packet()]
        step()
        if n % 3 == 0:
            burst += [packet(), packet(s=(seq + 1) & 0xFFFF, stamp=ts + 160)]
            step()
            step()
        t += 0.02 * len(burst)
        yield t, burst
    step()  # a lost packet
    first = packet()
    step()
    yield t + 0.04, [packet(), first]  # reordered within one wake-up
    t += 0.06
    step()
    yield t, [packet(), packet()]  # a duplicate
    step()
    for _ in range(30):  # PCMA, the same clock
        t += 0.02
        yield t, [packet(pt=8)]
        step()
    for k in range(6):  # a key press: RFC 4733 events, end flag on the last
        t += 0.02
        flags = 0x80 if k == 5 else 0
        yield t, [packet(pt=101, payload=bytes((5, flags | 10)) + (160 * (k + 1)).to_bytes(2, "big"),
                         marker=k == 0, stamp=ts)]
        seq = (seq + 1) & 0xFFFF
    ts = (ts + 960) & 0xFFFF_FFFF
    if index == 1:
        for _ in range(25):  # L16/16000: re-anchors (clock_rate_change) and back
            t += 0.02
            yield t, [packet(pt=96, payload=bytes(640))]
            step(320)
    for _ in range(20):
        t += 0.02
        yield t, [packet()]
        step()
    ts = (ts + 8000 * 30) & 0xFFFF_FFFF  # a timestamp jump
    rtcp = bytes(RtcpCompound((RtcpPacket(200, 0, ssrc, bytes(20)),)))
    for n in range(20):
        t += 0.02
        yield t, [packet(), rtcp] if n == 3 else [packet()]
        step()
    stray = packet()  # in flight from the old SSRC when the new one starts
    seq, ts = 7000, 90000  # a new SSRC
    for n in range(40):
        t += 0.02
        burst = [packet(source=ssrc + 0x100)]
        if n == 2:
            burst.append(stray)
        if n == 5:
            burst.append(b"\x80\x00garbage")
        yield t, burst
        step()


def protect_all(session: pylibsrtp.Session, datagrams: list[bytes]) -> dict[bytes, bytes]:
    """Each packet as SRTP (SRTCP), protected once and in sequence order per SSRC as a
    sender does (a duplicate or a reordered packet is one protected before); garbage as
    it is."""
    rtp = sorted({d for d in datagrams if len(d) > 12 and not 192 <= d[1] <= 223},
                 key=lambda d: (d[8:12], d[2:4]))
    out = {d: session.protect(d) for d in rtp}
    out |= {d: session.protect_rtcp(d) for d in datagrams if len(d) > 12 and 192 <= d[1] <= 223}
    return out


def record(directory: Path, path: str, srtp: bool,
           monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, bytes], list[TrackStats]]:
    """The call, received along ``path``: every file of its session directory, and the
    counters of both tracks."""
    counter = itertools.count(1)  # the same Call-ID, tags and branches in every recording
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(counter)))
    directory.mkdir()
    host = CoreHost(directory)
    crypto = [crypto_attribute(SUITE, key) for key in KEYS] if srtp else []
    offer = sdp_offer([40000, 40002], ["inbound", "outbound"], codecs="0 8 96 101",
                      extra=L16_RTPMAP, crypto=crypto)
    dialog = host.invite(sdp=offer)
    streams = [host.stream(0), host.stream(1)]
    senders = [pylibsrtp.Session(policy=pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=SUITES[SUITE].profile)) for key in KEYS] if srtp else None
    track.use_compiled_walk(path == "compiled")
    try:
        start = host.now + 0.3
        events = sorted((start + t, index, datagrams) for index in (0, 1)
                        for t, datagrams in wake_ups(index))
        protected: list[dict[bytes, bytes]] = []
        if senders is not None:
            protected = [protect_all(senders[i], [d for _, index, ds in events if index == i
                                                  for d in ds]) for i in (0, 1)]
        for n, (at, index, datagrams) in enumerate(events):
            host.advance(at - host.now)
            if senders is not None:
                datagrams = [protected[index].get(d, d) for d in datagrams]
                if n % 17 == 0:  # a forged copy ahead of the real one: fails authentication
                    datagrams = [datagrams[0][:-4] + b"\x00\x00\x00\x00", *datagrams]
            stream = streams[index]
            if path == "per-datagram":
                for data in datagrams:
                    stream.receive(data, SOURCES[index], host.now)
            else:
                stream.receive_many(datagrams, SOURCES[index], host.now)
        host.advance(0.5)
        stats = [stream.timeline.stats() for stream in streams]
        host.bye(dialog)
        host.advance(5.0)
    finally:
        track.use_compiled_walk(True)
    [session] = host.sessions()
    files = {str(p.relative_to(directory)): p.read_bytes()
             for p in sorted(session.rglob("*")) if p.is_file()}
    return files, stats


PATHS = [
    "per-datagram",
    pytest.param("compiled", marks=pytest.mark.skipif(
        not track.compiled_walk(), reason="srs.rtp._rtpwalk is not built")),
    "python",
]


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
@pytest.mark.parametrize("path", PATHS)
def test_every_receive_path_records_the_same_files(tmp_path: Path, path: str, srtp: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference, reference_stats = record(tmp_path / "reference", "per-datagram", srtp,
                                        monkeypatch)
    got, stats = record(tmp_path / path, path, srtp, monkeypatch)
    assert sorted(got) == sorted(reference)
    for name, data in reference.items():
        assert got[name] == data, name
    assert stats == reference_stats
    # The scenario did what it says, on both tracks.
    for track_stats in stats:
        assert track_stats.lost >= 1 and track_stats.reordered >= 1
        assert {"ssrc_change", "timestamp_jump"} <= set(track_stats.resyncs)
        assert track_stats.dropped.get("stale_ssrc") == 1
        assert track_stats.rtcp_packets == 1
        if srtp:
            assert track_stats.dropped.get("srtp_auth", 0) >= 1, track_stats.dropped
            assert track_stats.dropped.get("srtp_replay", 0) >= 1, track_stats.dropped
        else:
            assert track_stats.duplicated >= 1
    assert "clock_rate_change" in stats[1].resyncs
    [doc_name] = [n for n in got if n.endswith("session.json")]
    doc = json.loads(got[doc_name])
    assert [e["label"] for e in doc["dtmf"]] == ["inbound", "outbound"]
    for name in ("inbound.wav", "outbound.wav"):
        [wav] = [n for n in got if n.endswith(name)]
        samples, rate = sf.read(tmp_path / path / wav, dtype="int16")
        assert rate == 8000 and np.count_nonzero(samples) > 8000
