"""Capture and offline replay: the same core, packet time as the clock, the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srs.replay.offline import replay_capture
from tests.conftest import TOKEN, start_server
from tests.sipclient import (
    RtpSender,
    SipClient,
    constant_payload,
    metadata,
    rtp_packet,
    sdp_offer,
    send_tones,
)


def recorded_call(tmp_path: Path, transport: str = "udp") -> tuple[Path, dict]:
    (tmp_path / "live").mkdir()
    running = start_server(tmp_path / "live", recordings={"capture": True})
    try:
        port = running.tls_port if transport == "tls" else running.sip_port
        client = SipClient("127.0.0.1", port, transport, token=TOKEN)
        call, _ = client.invite(headers=[("X-Twilio-CallSid", "CA9")])
        send_tones(call.ports, (440.0, 1000.0), packets=40)
        # Impairments: loss, reordering, a duplicate and a silence gap on the first stream.
        sender = RtpSender(call.ports[0], ssrc=0x1000)
        order = [40, 42, 41, 43, 43, 47, 48, 60, 61]
        for seq in order:
            sender.send(rtp_packet(seq, seq * 160, 0x1000, constant_payload(0x90 + seq % 16)))
            time.sleep(0.02)
        sender.close()
        client.reinvite(call, sdp_offer([40000, 40002], ["inbound", "outbound"], version=2),
                        metadata(["inbound", "outbound"], mode="partial"))
        send_tones(call.ports, (440.0, 1000.0), packets=20, start_seq=70, start_ts=70 * 160)
        assert client.bye(call).status == 200
        client.close()
        [doc] = running.wait_sidecar()
        directory = running.sessions()[0]
    finally:
        running.stop()
    return directory, doc


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_a_captured_session_replays_byte_identical(tmp_path: Path, transport: str) -> None:
    live_dir, live_doc = recorded_call(tmp_path, transport)
    capture = live_dir / "capture.pcap"
    assert TOKEN.encode() not in capture.read_bytes()  # the credential is redacted
    assert b"X-Auth-Token: <redacted>" in capture.read_bytes()
    report = replay_capture(capture, tmp_path / "replayed")
    assert len(report.sessions) == 1 and report.unmatched_rtp == 0
    replayed = report.sessions[0]
    assert replayed.name == live_dir.name
    names = sorted(p.name for p in live_dir.glob("*.wav"))
    assert names == ["inbound.wav", "mix.wav", "outbound.wav"]
    for name in names:
        assert (replayed / name).read_bytes() == (live_dir / name).read_bytes(), name
    replayed_doc = json.loads((replayed / "session.json").read_text())
    assert replayed_doc == live_doc
    for n in (1, 2):
        assert (replayed / f"metadata-{n}.xml").read_bytes() == (live_dir / f"metadata-{n}.xml").read_bytes()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (Debian package tshark)")
def test_the_capture_is_readable_by_tshark(tmp_path: Path) -> None:
    live_dir, doc = recorded_call(tmp_path)
    out = subprocess.run(["tshark", "-r", str(live_dir / "capture.pcap"), "-Y", "sip",
                          "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.split("\n")
    seen = [line.strip() for line in out if line.strip()]
    assert seen[0] == "INVITE"
    assert "BYE" in seen and "200" in seen and "ACK" in seen
    # As received: also the packets dropped before the timeline (another source, here 9).
    received = sum(s["packets"]["received"] + s["packets"]["dropped"].get("other_source", 0)
                   + s["packets"]["rtcp"] for s in doc["streams"])
    udp = subprocess.run(["tshark", "-r", str(live_dir / "capture.pcap"), "-Y", "udp && !sip"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert len(udp.strip().splitlines()) == received


def test_replay_cli_names_the_file_and_offset_of_a_bad_capture(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a capture at all\n")
    result = subprocess.run([sys.executable, "-m", "srs", "replay", str(foreign), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"srs replay: {foreign}: at byte offset 0: expected")


def test_an_unparseable_invite_in_a_capture_is_skipped_not_fatal(tmp_path: Path) -> None:
    from srs.capture.writer import PcapWriter

    broken = (b"INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx\r\n"
              b"From: <sip:a@x>;tag=1\r\nTo: <sip:srs@x>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
              b"Require: \x00\r\nContent-Length: 0\r\n\r\n")
    path = tmp_path / "broken.pcap"
    with PcapWriter(path) as writer:
        writer.write_udp(1.0, "127.0.0.1", 5062, "127.0.0.1", 5060, broken)
    report = replay_capture(path, tmp_path / "out")
    assert report.sessions == [] and report.packets == 1
