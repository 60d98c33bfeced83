"""``srs replay CAPTURE --target``: a session srs captured, re-sent live to another srs.

The first in-process server records a call with ``recordings.capture`` on; its
capture.pcap is replayed with the real command line to a second in-process server, whose
recording is compared with the first: tones by FFT, packet counters, lengths, metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from srs.capture.writer import PcapWriter
from srs.cli.main import main
from srs.replay.plan import plan_capture, rewrite_offer
from srs.sdp.description import SessionDescription
from srs.siprec.multipart import BodyPart, MultipartBody, split_siprec_body
from tests.conftest import TOKEN, RunningServer, start_server
from tests.e2e.audio import dominant_frequency
from tests.replay.test_offline import recorded_call

RATE_HZ = 8000
SAMPLES_PER_PACKET = 160


def replay_to(tmp_path: Path, capture: Path, *args: str) -> tuple[RunningServer, subprocess.CompletedProcess[str]]:
    """Start a second server and replay ``capture`` to it with ``python -m srs replay``;
    the server is returned running once the replayed sessions are complete."""
    (tmp_path / "target").mkdir()
    target = start_server(tmp_path / "target")
    try:
        process = subprocess.run(
            [sys.executable, "-m", "srs", "replay", str(capture), "--target",
             f"sip:127.0.0.1:{target.sip_port}", *args],
            env={**os.environ, "SRS_CALL_TOKEN": TOKEN}, capture_output=True, text=True,
            timeout=60, check=False,
        )
    except BaseException:
        target.stop()
        raise
    return target, process


def only_session(server: RunningServer) -> tuple[dict[str, Any], Path]:
    [doc] = server.wait_sidecar()
    [directory] = server.sessions()
    return doc, directory


def wav(directory: Path, name: str) -> np.ndarray:
    samples, rate = sf.read(directory / name, dtype="int16")
    assert rate == RATE_HZ
    return samples


def assert_tone(samples: np.ndarray, freq_hz: float) -> None:
    assert np.abs(samples).max() > 4000, "the track is silent"
    assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq_hz, abs=5)


def wall_s(doc: dict[str, Any]) -> float:
    started = datetime.fromisoformat(doc["started_at"])
    ended = datetime.fromisoformat(doc["ended_at"])
    return (ended - started).total_seconds()


@pytest.mark.parametrize(("captured", "replayed"), [("udp", "udp"), ("tls", "tcp")])
def test_a_captured_session_is_recorded_again_by_another_server(
    tmp_path: Path, captured: str, replayed: str
) -> None:
    """The call of test_replay: two tones, loss, reordering, a duplicate, a second source,
    a re-INVITE with new metadata; captured over UDP, or over TLS (SIP as stream data)."""
    live_dir, live_doc = recorded_call(tmp_path, captured)
    target, process = replay_to(tmp_path, live_dir / "capture.pcap", "--verbose",
                                "--transport", replayed)
    try:
        assert process.returncode == 0, process.stdout + process.stderr
        doc, directory = only_session(target)
    finally:
        target.stop()
    assert TOKEN not in process.stdout + process.stderr
    original = live_doc["call_id"]
    assert doc["call_id"] != original
    assert f"{original} -> {doc['call_id']}: ok" in process.stdout
    assert doc["custom_parameters"]["X-Srs-Replay-Of"] == original
    assert doc["twilio"] == live_doc["twilio"]
    assert doc["end_reason"] == "bye" and doc["source"]["transport"] == replayed
    assert "X-Auth-Token" not in doc["custom_parameters"]
    for again, live in zip(doc["streams"], live_doc["streams"], strict=True):
        assert again["label"] == live["label"]
        assert again["codec"] == live["codec"]
        # Every datagram arrived.  Which are latched around the switch to the second
        # sender depends on timing within tens of ms (srs's 0.5 s relatch rule), which a
        # loaded machine shifts; the clean SRTP call below compares every counter.
        arrived, original = again["packets"], live["packets"]
        assert arrived["received"] + sum(arrived["dropped"].values()) == \
            original["received"] + sum(original["dropped"].values())
        for counter in ("duplicated", "reordered", "rtcp"):
            assert arrived[counter] == original[counter], counter
        assert again["ssrcs"] == live["ssrcs"]
        assert again["duration_s"] == pytest.approx(live["duration_s"], abs=0.02)
    for name, freq in (("inbound.wav", 440.0), ("outbound.wav", 1000.0)):
        replayed_track, live_track = wav(directory, name), wav(live_dir, name)
        assert abs(len(replayed_track) - len(live_track)) <= SAMPLES_PER_PACKET
        assert_tone(replayed_track[:6400], freq)  # the tones, before the impairments
    # The metadata (the INVITE's and the re-INVITE's) went out byte for byte.
    for n in (1, 2):
        assert (directory / f"metadata-{n}.xml").read_bytes() == \
            (live_dir / f"metadata-{n}.xml").read_bytes()


@pytest.fixture(scope="module")
def srtp_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An SRTP call of ``python -m srs call --srtp`` (2 s of 440/1000 Hz), captured by srs."""
    root = tmp_path_factory.mktemp("srtp-live")
    source = start_server(root, recordings={"capture": True})
    try:
        process = subprocess.run(
            [sys.executable, "-m", "srs", "call", f"sip:127.0.0.1:{source.sip_port}",
             "--srtp", "--duration", "2"],
            env={**os.environ, "SRS_CALL_TOKEN": TOKEN}, capture_output=True, text=True,
            timeout=60, check=False,
        )
        assert process.returncode == 0, process.stdout + process.stderr
        doc, directory = only_session(source)
    finally:
        source.stop()
    assert [s["srtp"] for s in doc["streams"]] == ["AES_CM_128_HMAC_SHA1_80"] * 2
    return directory / "capture.pcap", doc


def test_an_srtp_session_is_decrypted_with_the_captured_keys(
    tmp_path: Path, srtp_capture: tuple[Path, dict[str, Any]]
) -> None:
    capture, live_doc = srtp_capture
    target, process = replay_to(tmp_path, capture)
    try:
        assert process.returncode == 0, process.stdout + process.stderr
        doc, directory = only_session(target)
    finally:
        target.stop()
    assert "ok, 200/200 packets sent" in process.stdout
    for stream in doc["streams"]:
        assert stream["srtp"] == "AES_CM_128_HMAC_SHA1_80"
        assert stream["packets"]["received"] == 100 and not stream["packets"]["dropped"]
    assert [s["packets"] for s in doc["streams"]] == [s["packets"] for s in live_doc["streams"]]
    assert [s["ssrcs"] for s in doc["streams"]] == [s["ssrcs"] for s in live_doc["streams"]]
    assert_tone(wav(directory, "inbound.wav"), 440.0)
    assert_tone(wav(directory, "outbound.wav"), 1000.0)


def test_speed_2_takes_half_the_time(
    tmp_path: Path, srtp_capture: tuple[Path, dict[str, Any]]
) -> None:
    capture, live_doc = srtp_capture
    target, process = replay_to(tmp_path, capture, "--speed", "2")
    try:
        assert process.returncode == 0, process.stdout + process.stderr
        doc, directory = only_session(target)
    finally:
        target.stop()
    assert "at 2x" in process.stdout
    # Half of 2 s, with room for a loaded machine's late timers (a 1x replay is 1 s off).
    assert wall_s(live_doc) == pytest.approx(2.0, abs=0.3)
    assert wall_s(doc) == pytest.approx(wall_s(live_doc) / 2, abs=0.3)
    for stream, live in zip(doc["streams"], live_doc["streams"], strict=True):
        assert stream["duration_s"] == pytest.approx(live["duration_s"] / 2, abs=0.3)
        assert stream["packets"]["received"] == 100
    # Each packet's audio is placed by its RTP timestamp: the tone keeps its pitch.
    assert_tone(wav(directory, "inbound.wav")[:4000], 440.0)


def test_an_offer_is_rewritten_to_our_address_and_ports_and_keeps_its_keys() -> None:
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40
    sdp = ("v=0\r\no=src 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
           "m=audio 4000 RTP/SAVP 0\r\n" + crypto + "\r\na=label:1\r\na=sendonly\r\n"
           "m=audio 0 RTP/AVP 0\r\na=label:2\r\n"
           "m=audio 4004 RTP/AVP 8\r\nc=IN IP4 192.0.2.9\r\na=label:3\r\n")
    xml = b'<?xml version="1.0"?>\r\n<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>'
    body = MultipartBody("b1", (BodyPart((("Content-Type", "application/sdp"),), sdp.encode()),
                                BodyPart((("Content-Type", "application/rs-metadata+xml"),
                                          ("Content-Disposition", "recording-session")), xml)))
    out = rewrite_offer(bytes(body), "multipart/mixed;boundary=b1", "127.0.0.1",
                        [30000, 30002, 30004])
    split = split_siprec_body(out, "multipart/mixed;boundary=b1")
    assert split.metadata == xml
    offer = SessionDescription.parse(split.sdp or b"")
    assert offer.connection is not None and offer.connection.address == "127.0.0.1"
    assert [m.port for m in offer.media] == [30000, 0, 30004]  # declined stays declined
    assert offer.media[2].connection is not None
    assert offer.media[2].connection.address == "127.0.0.1"
    assert crypto.encode() in (split.sdp or b"") and b"o=src 1 2 IN IP4 192.0.2.1" in out
    # A body without SDP (a metadata-only UPDATE) is left alone.
    assert rewrite_offer(xml, "application/rs-metadata+xml", "127.0.0.1", [1]) == xml


def test_a_capture_without_a_siprec_session_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "no-siprec.pcap"
    options = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
               b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-1\r\n"
               b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    with PcapWriter(capture) as writer:
        writer.write_udp(1700000000.0, "127.0.0.1", 5070, "127.0.0.1", 5060, options)
        writer.write_udp(1700000000.1, "127.0.0.1", 40000, "127.0.0.1", 10000, b"\x80" + bytes(171))
    assert plan_capture(capture).sessions == []
    code = main(["replay", str(capture), "--target", "sip:127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"srs replay: {capture}: no SIPREC session to replay")
    assert "among 2 packets" in err and out == ""


@pytest.mark.parametrize(("args", "problem"), [
    ([], "one of the arguments --out --target is required"),
    (["--out", "x", "--target", "sip:127.0.0.1"], "not allowed with argument"),
])
def test_out_and_target_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(tmp_path / "any.pcap"), *args])
    assert exit_info.value.code == 2 and problem in capsys.readouterr().err


@pytest.mark.parametrize(("args", "problem"), [
    (["--speed", "0"], "speed and concurrency must be positive"),
    (["--target", "http://x"], "not a sip: or sips: URI"),
])
def test_bad_live_options_exit_2(
    srtp_capture: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str],
    args: list[str], problem: str
) -> None:
    capture, _ = srtp_capture
    argv = ["replay", str(capture), *args]
    if "--target" not in args:
        argv += ["--target", "sip:127.0.0.1:9"]
    assert main(argv) == 2
    assert problem in capsys.readouterr().err
