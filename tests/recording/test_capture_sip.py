"""recordings.capture keeps the SIP of the session's own peer: a host that only knows the
Call-ID (its refused requests, srs's answers to it) writes nothing into the capture."""

from __future__ import annotations

from pathlib import Path

from srs.recording.capture import CaptureRecord
from tests.recording.corehost import PEER, CoreHost, Dialog
from tests.sipclient import metadata, multipart, sdp_offer


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


def test_a_session_that_ends_leaves_the_capture_of_another_with_its_call_id(
        tmp_path: Path) -> None:
    # Two dialogs of one Call-ID (RFC 3261 §12: a dialog is Call-ID and both tags): the
    # first one's end must not stop the capture of the second.
    host = CoreHost(tmp_path, {"capture": True})
    first = host.invite(["inbound"])
    second = Dialog(first.call_id, "second1")
    content_type, body = multipart(sdp_offer([40100], ["inbound"]), metadata(["inbound"]))
    host.request("INVITE", second, body=body, content_type=content_type)
    final = host.final_for(second, "INVITE")
    assert final is not None and final.status == 200 and final.to.tag
    second.to_tag = final.to.tag
    host.request("ACK", second)
    host.advance(0.5)
    host.bye(first)
    host.advance(0.5)
    assert host.recorder.capturing(first.call_id)
    late = b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nX-Second: late\r\n\r\n"
    host.recorder.capture_sip(second.call_id, CaptureRecord(
        host.now, PEER.host, PEER.port, "127.0.0.1", 5060, late, False), remote_host=PEER.host)
    host.advance(1.5)
    host.bye(second)
    captures = [(d / "capture.pcap").read_bytes() for d in host.sessions()]
    assert len(captures) == 2
    assert sum(b"X-Second: late" in data for data in captures) == 1
