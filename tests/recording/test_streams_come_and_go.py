"""Streams that come and go: an m-line disabled by a re-INVITE (port 0, RFC 3264 §8.2)
and offered again resumes its own track and file; file handles stay bounded by the
number of m-lines however often that happens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from srs.codecs.g711 import pcmu_decode, pcmu_encode
from tests.recording.corehost import PEER, CoreHost, job_kinds
from tests.sipclient import rtp_packet, sdp_offer, tone

SENDER = (PEER.host, 40000)
BOTH = ["inbound", "outbound"]


def open_wavs(directory: Path) -> int:
    """WAV files under ``directory`` this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(directory)) and target.endswith(".wav")
    return count


def send(host: CoreHost, index: int, packets: int, seq: int) -> tuple[int, np.ndarray]:
    """``packets`` PCMU packets to stream ``index``; (first offset, the audio)."""
    stream = host.stream(index)
    start = round((host.now - 1000.0) * 8000)
    sent = []
    for n in range(seq, seq + packets):
        payload = pcmu_encode(tone(900.0, n * 160, 160) + 250)
        stream.receive(rtp_packet(n, n * 160, 0x4242, payload), SENDER, host.now)
        sent.append(pcmu_decode(payload))
        host.advance(0.02)
    return start, np.concatenate(sent)


def test_a_re_enabled_m_line_continues_its_own_file(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    dialog = host.invite(BOTH)
    host.advance(0.1)
    spans = [send(host, 1, 25, 0)]
    version = 2
    for cycle in range(5):
        off = sdp_offer([40000, 40002], BOTH, version=version).replace(
            "m=audio 40002", "m=audio 0")
        assert host.reinvite(dialog, off).status == 200
        host.advance(0.5)
        on = sdp_offer([40000, 40002], BOTH, version=version + 1)
        answer = host.reinvite(dialog, on)
        assert answer.status == 200 and "m=audio 0 " not in answer.body.decode()
        version += 2
        host.advance(0.5)
        spans.append(send(host, 1, 25, 1000 * (cycle + 1)))
        [directory] = host.sessions()
        assert open_wavs(directory) == 2
    assert [type(job).__name__ for job in host.jobs].count("SetUpFiles") == 1
    assert "OpenOutputs" not in job_kinds(host)  # the m-line resumed its set-up's file
    host.bye(dialog)
    [directory] = host.sessions()
    assert open_wavs(directory) == 0
    assert sorted(p.name for p in directory.glob("*.wav")) == ["inbound.wav", "mix.wav",
                                                                "outbound.wav"]
    doc = json.loads((directory / "session.json").read_text())
    assert [s["file"] for s in doc["streams"]] == ["inbound.wav", "outbound.wav"]
    assert doc["streams"][1]["packets"]["received"] == 25 * 6
    track, _ = sf.read(directory / "outbound.wav", dtype="int16")
    expected = np.zeros_like(track)
    for start, audio in spans:
        expected[start:start + len(audio)] = audio
    np.testing.assert_array_equal(track, expected)


def _off_then_on(host: CoreHost, dialog: object, labels: list[str], version: int) -> None:
    off = sdp_offer([40000, 40002], BOTH, version=version).replace("m=audio 40002", "m=audio 0")
    assert host.reinvite(dialog, off).status == 200  # type: ignore[arg-type]
    host.advance(0.5)
    on = sdp_offer([40000, 40002], labels, version=version + 1)
    assert host.reinvite(dialog, on).status == 200  # type: ignore[arg-type]


def test_a_resumed_stream_takes_a_sender_that_restarts_its_sequence(tmp_path: Path) -> None:
    """The re-enabled m-line is a new RTP session: its sequence numbers may start again
    below the old ones (same SSRC) and every packet is recorded."""
    host = CoreHost(tmp_path)
    dialog = host.invite(BOTH)
    host.advance(0.1)
    spans = [send(host, 1, 50, 0)]
    _off_then_on(host, dialog, BOTH, 2)
    spans.append(send(host, 1, 50, 0))
    host.bye(dialog)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    packets = doc["streams"][1]["packets"]
    assert (packets["received"], packets["duplicated"], packets["late"]) == (100, 0, 0)
    track, _ = sf.read(directory / "outbound.wav", dtype="int16")
    for start, audio in spans:
        np.testing.assert_array_equal(track[start:start + len(audio)], audio)


def test_a_slot_offered_again_with_another_label_is_a_new_stream(tmp_path: Path) -> None:
    """RFC 3264 §8.1: a re-used port-0 slot is a new stream; with a new label it is another
    party's, in its own file."""
    host = CoreHost(tmp_path)
    dialog = host.invite(BOTH)
    host.advance(0.1)
    send(host, 1, 25, 0)
    _off_then_on(host, dialog, ["inbound", "supervisor"], 2)
    [supervisor] = [s for s in host.streams.values() if s.index == 1]
    assert supervisor.answered.label == "supervisor"
    send(host, 1, 25, 5000)
    host.bye(dialog)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    assert [(s["label"], s["file"], s["packets"]["received"]) for s in doc["streams"]] == [
        ("inbound", "inbound.wav", 0), ("outbound", "outbound.wav", 25),
        ("supervisor", "supervisor.wav", 25)]
