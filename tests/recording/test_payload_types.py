"""Payloads srs cannot decode are never silent: payload types the m-line did not offer,
or that srs cannot decode, are dropped and counted by reason in session.json; PCMU and
PCMA sent without being offered are recorded (RFC 3551 §6) and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from srs.codecs.g711 import pcma_decode, pcma_encode, pcmu_decode, pcmu_encode
from srs.rtp.dtmf import TelephoneEvent
from tests.recording.corehost import PEER, CoreHost
from tests.sipclient import rtp_packet, sdp_offer, tone

SENDER = (PEER.host, 40000)


def run(tmp_path: Path, packets: list[tuple[int, bytes]], *, codecs: str = "0 101"
        ) -> tuple[dict, np.ndarray, int]:
    """Send (payload type, payload) packets 20 ms apart on one stream offered ``codecs``;
    the stream's sidecar record, its track and the first packet's offset."""
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=sdp_offer([40000], ["inbound"], codecs=codecs))
    host.advance(0.1)
    start = round((host.now - 1000.0) * 8000)
    stream = host.stream(0)
    for n, (pt, payload) in enumerate(packets):
        stream.receive(rtp_packet(n, n * 160, 0x1111, payload, pt=pt), SENDER, host.now)
        host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    [record] = json.loads((directory / "session.json").read_text())["streams"]
    track, _ = sf.read(directory / "inbound.wav", dtype="int16")
    return record, track, start


def voice(n: int) -> np.ndarray:
    return tone(500.0, n * 160, 160) + 200


def test_an_unoffered_dynamic_payload_type_is_dropped_with_its_reason(tmp_path: Path) -> None:
    record, track, _ = run(tmp_path, [(96, pcmu_encode(voice(n))) for n in range(100)])
    packets = record["packets"]
    assert packets["dropped"] == {"unoffered_payload": 100}
    assert packets["received"] == 100 and packets["lost"] == 0
    assert not track.any()


def test_unoffered_packets_leave_no_gap_in_the_offered_audio(tmp_path: Path) -> None:
    sent = [(96 if n % 5 == 4 else 0, pcmu_encode(voice(n))) for n in range(50)]
    record, track, start = run(tmp_path, sent)
    assert record["packets"]["dropped"] == {"unoffered_payload": 10}
    assert record["packets"]["lost"] == 0
    for n, (pt, payload) in enumerate(sent):
        at = start + n * 160
        expected = pcmu_decode(payload) if pt == 0 else np.zeros(160, dtype=np.int16)
        np.testing.assert_array_equal(track[at:at + 160], expected)


def test_pcma_sent_without_being_offered_is_decoded_and_counted(tmp_path: Path) -> None:
    sent = [(8, pcma_encode(voice(n))) for n in range(40)]
    record, track, start = run(tmp_path, sent)
    assert record["packets"]["unoffered_static"] == 40
    assert record["packets"]["dropped"] == {}
    audio = np.concatenate([pcma_decode(payload) for _, payload in sent])
    np.testing.assert_array_equal(track[start:start + len(audio)], audio)


def test_an_offered_codec_srs_cannot_decode_is_counted_not_silent(tmp_path: Path) -> None:
    # G.723 (static 4) offered beside PCMU: the answer takes PCMU, the sender uses G.723.
    record, track, _ = run(tmp_path, [(4, b"\x11" * 24) for _ in range(30)],
                           codecs="0 4 101")
    assert record["packets"]["dropped"] == {"undecodable_payload": 30}
    assert record["packets"]["unoffered_static"] == 0
    assert not track.any()


def test_payloads_the_decoder_refuses_are_dropped_and_counted(tmp_path: Path) -> None:
    """RFC 3551 §4.5.6: G.729 is 10-byte frames and at most one 2-byte SID; a 7-byte
    payload is neither, is dropped and counted in decode_errors, and the good ones around
    it are decoded."""
    sent = [(18, bytes(7) if n % 10 == 9 else bytes(20)) for n in range(30)]
    record, _, _ = run(tmp_path, sent, codecs="0 18 101")
    assert record["decode_errors"] == 3 and record["packets"]["dropped"] == {}
    assert record["sample_rate"] == record["clock_rate"] == 8000


def test_a_codec_first_offered_by_a_reinvite_is_decoded(tmp_path: Path) -> None:
    """RFC 3264 §8.3.2: a re-INVITE may change the codecs; the file decodes what the new
    offer maps from its next write on (here a PCMA call moved to PCMU under PT 96)."""
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=sdp_offer([40000], ["inbound"], codecs="8 101")
                         .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"))
    stream = host.stream(0)
    sent = []
    for n in range(10):
        payload = pcma_encode(voice(n))
        stream.receive(rtp_packet(n, n * 160, 1, payload, pt=8), SENDER, host.now)
        sent.append(pcma_decode(payload))
        host.advance(0.02)
    later = sdp_offer([40000], ["inbound"], codecs="96 101", version=2).replace(
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 PCMU/8000")
    answer = host.reinvite(dialog, later)
    assert answer.status == 200 and "RTP/AVP 96 101" in answer.body.decode()
    for n in range(10, 30):
        payload = pcmu_encode(voice(n))
        stream.receive(rtp_packet(n, n * 160, 1, payload, pt=96), SENDER, host.now)
        sent.append(pcmu_decode(payload))
        host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    [record] = json.loads((directory / "session.json").read_text())["streams"]
    assert record["packets"]["dropped"] == {} and record["packets"]["received"] == 30
    data, _ = sf.read(directory / "inbound.wav", dtype="int16")
    audio = np.concatenate(sent)
    start = int(np.flatnonzero(data)[0]) - int(np.flatnonzero(audio)[0])
    np.testing.assert_array_equal(data[start:start + len(audio)], audio)


def test_a_telephone_event_type_a_re_invite_moves_to_is_read_as_key_presses(
    tmp_path: Path,
) -> None:
    """The answer accepts the re-INVITE's telephone-event type (RFC 4733 §2.5.1.1), so the
    stream reads it: key presses, not undecodable packets."""
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"])
    later = sdp_offer([40000], ["inbound"], version=2, codecs="0 100").replace(
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-15")
    answer = host.reinvite(dialog, later)
    assert "a=rtpmap:100 telephone-event/8000" in answer.body.decode()
    stream = host.stream(0)
    seq = 0
    for key in (1, 2, 3):
        for k in range(5):
            event = bytes(TelephoneEvent(key, k == 4, 10, 160 * (k + 1)))
            stream.receive(rtp_packet(seq, 8000 * key, 9, event, pt=100), SENDER, host.now)
            seq += 1
            host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    assert [d["digit"] for d in doc["dtmf"]] == ["1", "2", "3"]
    assert doc["streams"][0]["packets"]["dropped"] == {}
