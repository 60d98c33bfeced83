"""Media only from the call's sender: the source check in front of the latch, on the
recording core with real files (``media.source``, ``media.allow_cidrs``)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from srs.capture.decode import PacketDecoder
from srs.capture.reader import read_capture
from srs.codecs.g711 import pcmu_decode, pcmu_encode
from srs.rtp.sources import SourcePolicy
from tests.recording.corehost import PEER, CoreHost
from tests.sipclient import rtp_packet, sdp_offer, tone

SENDER = (PEER.host, 40000)  # the signalling source
OFFERED = ("127.0.0.1", 41000)  # the offer's c= address (tests.sipclient.sdp_offer)
OFF_PATH = ("203.0.113.66", 40000)


def send(host: CoreHost, packets: int, source: tuple[str, int], *, seq: int = 0,
         ssrc: int = 0x1111) -> np.ndarray:
    stream = host.stream(0)
    sent = []
    for n in range(packets):
        payload = pcmu_encode(tone(700.0, (seq + n) * 160, 160) + 300)
        stream.receive(rtp_packet(seq + n, (seq + n) * 160, ssrc, payload), source, host.now)
        sent.append(pcmu_decode(payload))
        host.advance(0.02)
    return np.concatenate(sent)


def finish(host: CoreHost, dialog: object) -> tuple[dict, np.ndarray]:
    host.bye(dialog)  # type: ignore[arg-type]
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    data, _ = sf.read(directory / "inbound.wav", dtype="int16")
    return doc, data


def test_an_off_path_sender_never_latches_and_is_counted(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"])
    host.advance(0.1)
    stream = host.stream(0)
    # It sends first, and again after the real sender's silence: it never gets in.
    for n in range(30):
        stream.receive(rtp_packet(n, n * 160, 0x6666, b"\x00" * 160), OFF_PATH, host.now)
    assert stream.latched is None
    start = host.now
    audio = send(host, 50, SENDER)
    host.advance(1.0)
    for n in range(20):
        stream.receive(rtp_packet(500 + n, 0, 0x6666, b"\x00" * 160), OFF_PATH, host.now)
    assert stream.latched == SENDER
    doc, track = finish(host, dialog)
    [record] = doc["streams"]
    assert record["packets"]["dropped"] == {"foreign_source": 50}
    assert record["packets"]["received"] == 50 and record["ssrcs"] == [0x1111]
    offset = round((start - 1000.0) * 8000)
    np.testing.assert_array_equal(track[offset:offset + len(audio)], audio)
    assert not track[:offset].any() and not track[offset + len(audio):].any()
    [finished] = host.finished()
    assert finished.streams[0].dropped["foreign_source"] == 50  # what the metrics count


def test_relatch_moves_within_the_accepted_set(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"])
    host.advance(0.1)
    first = send(host, 25, SENDER)
    host.advance(0.6)  # the sender goes quiet ...
    second_start = host.now
    second = send(host, 25, OFFERED, seq=25, ssrc=0x2222)  # ... and comes back from c=
    assert host.stream(0).latched == OFFERED
    doc, track = finish(host, dialog)
    assert doc["streams"][0]["packets"]["dropped"] == {}
    offset = round((second_start - 1000.0) * 8000)
    np.testing.assert_array_equal(track[offset:offset + len(second)], second)
    assert np.count_nonzero(track) == np.count_nonzero(first) + np.count_nonzero(second)


def test_signalling_only_refuses_the_offer_address_and_cidrs_add(tmp_path: Path) -> None:
    policy = SourcePolicy.from_names(["signalling"], [ipaddress.ip_network("203.0.113.0/24")])
    host = CoreHost(tmp_path, {"media_sources": policy})
    host.invite(["inbound"])
    stream = host.stream(0)
    stream.receive(rtp_packet(0, 0, 1, b"\xff" * 160), OFFERED, host.now)
    assert stream.latched is None
    stream.receive(rtp_packet(1, 160, 1, b"\xff" * 160), OFF_PATH, host.now)
    assert stream.latched == OFF_PATH
    assert stream.timeline.stats().dropped == {"foreign_source": 1}


def test_any_takes_every_source(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"media_sources": SourcePolicy.from_names(["any"])})
    host.invite(["inbound"])
    stream = host.stream(0)
    stream.receive(rtp_packet(0, 0, 1, b"\xff" * 160), OFF_PATH, host.now)
    assert stream.latched == OFF_PATH


def test_a_reinvite_moves_the_offer_address(tmp_path: Path) -> None:
    policy = SourcePolicy.from_names(["offer"])
    host = CoreHost(tmp_path, {"media_sources": policy})
    dialog = host.invite(["inbound"])
    moved = sdp_offer([40000], ["inbound"], version=2).replace("127.0.0.1", "203.0.113.66")
    assert host.reinvite(dialog, moved).status == 200
    stream = host.stream(0)
    stream.receive(rtp_packet(0, 0, 1, b"\xff" * 160), OFFERED, host.now)
    assert stream.latched is None
    stream.receive(rtp_packet(1, 160, 1, b"\xff" * 160), OFF_PATH, host.now)
    assert stream.latched == OFF_PATH


def test_an_offer_without_a_usable_address_keeps_the_previous_one(tmp_path: Path) -> None:
    """A re-INVITE putting the call on hold with c=0.0.0.0 (RFC 3264 §8.4, the old way)
    names no sender: the sender the first offer named is still accepted."""
    policy = SourcePolicy.from_names(["offer"])
    host = CoreHost(tmp_path, {"media_sources": policy})
    dialog = host.invite(["inbound"])
    first = send(host, 25, OFFERED)
    hold = sdp_offer([40000], ["inbound"], version=2).replace(
        "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    assert host.reinvite(dialog, hold).status == 200
    second = send(host, 50, OFFERED, seq=25)
    doc, data = finish(host, dialog)
    packets = doc["streams"][0]["packets"]
    assert (packets["received"], packets["dropped"]) == (75, {})
    audio = np.concatenate([first, second])
    start = int(np.flatnonzero(data)[0])
    np.testing.assert_array_equal(data[start:start + len(audio)], audio)


def test_a_captured_session_keeps_no_off_path_packet(tmp_path: Path) -> None:
    """recordings.capture writes what the session took, not what an off-path host sent:
    a flood of refused packets grows no file."""
    host = CoreHost(tmp_path, {"capture": True})
    dialog = host.invite(["inbound"])
    stream = host.stream(0)
    for n in range(200):
        stream.receive(rtp_packet(n, n * 160, 0x6666, b"\x00" * 160), OFF_PATH, host.now)
    send(host, 10, SENDER)
    finish(host, dialog)
    [directory] = host.sessions()
    decoder = PacketDecoder()
    with read_capture(directory / "capture.pcap") as reader:
        sources = {getattr(e, "src", None) for p in reader for e in decoder.decode(p)}
    assert SENDER[0] in sources and OFF_PATH[0] not in sources
