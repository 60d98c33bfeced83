"""recordings.capture keeps the SIP of the session's own peer: a host that only knows the
Call-ID (its refused requests, srs's answers to it) writes nothing into the capture."""

from __future__ import annotations

from pathlib import Path

from srs.recording.capture import CaptureRecord
from tests.recording.corehost import PEER, CoreHost


def test_only_the_sessions_peer_reaches_its_capture(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"capture": True})
    dialog = host.invite(["inbound"])
    call_id = dialog.call_id
    assert host.recorder.capturing(call_id)
    mine = b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nX-Mine: yes\r\n\r\n"
    forged = b"INVITE sip:srs@127.0.0.1 SIP/2.0\r\nX-Forged: ATTACKER-BYTES\r\n\r\n"
    answer = b"SIP/2.0 403 Forbidden\r\nX-To-Attacker: yes\r\n\r\n"
    recorder = host.recorder
    recorder.capture_sip(call_id, CaptureRecord(host.now, PEER.host, PEER.port, "127.0.0.1",
                                                5060, mine, False), remote_host=PEER.host)
    recorder.capture_sip(call_id, CaptureRecord(host.now, "203.0.113.66", 5060, "127.0.0.1",
                                                5060, forged, False), remote_host="203.0.113.66")
    recorder.capture_sip(call_id, CaptureRecord(host.now, "127.0.0.1", 5060, "203.0.113.66",
                                                5060, answer, False), remote_host="203.0.113.66")
    host.advance(1.5)
    host.bye(dialog)
    [directory] = host.sessions()
    data = (directory / "capture.pcap").read_bytes()
    assert b"X-Mine: yes" in data
    assert b"ATTACKER-BYTES" not in data and b"X-To-Attacker" not in data
