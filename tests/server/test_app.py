"""srs as a whole, over loopback sockets: signalling, recording, files checked for content."""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from srs.codecs.g711 import pcmu_decode, pcmu_encode
from srs.recording.sidecar import load_session_schema
from tests.conftest import TOKEN, RunningServer, start_server
from tests.sipclient import (
    Call,
    RtpSender,
    SipClient,
    constant_payload,
    metadata,
    rtp_packet,
    sdp_offer,
    send_tones,
)


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    return data


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_is_answered_on_every_transport(server: RunningServer, transport: str) -> None:
    port = server.tls_port if transport == "tls" else server.sip_port
    client = SipClient("127.0.0.1", port, transport)
    try:
        call = Call("opt-" + transport, "t1")
        client.request("OPTIONS", call, auth=False)
        response = client.final()
    finally:
        client.close()
    assert response.status == 200
    assert "INVITE" in response.headers.get_all("Allow")
    assert response.headers.get_all("Supported") == ["siprec", "timer"]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_two_tracks_recorded_with_their_tones(server: RunningServer, transport: str) -> None:
    port = server.tls_port if transport == "tls" else server.sip_port
    client = SipClient("127.0.0.1", port, transport, token=TOKEN)
    started = time.monotonic()  # the track starts when the INVITE is taken
    try:
        call, answer = client.invite(headers=[("X-Twilio-CallSid", "CA0123"),
                                              ("X-Twilio-AccountSid", "AC0456"),
                                              ("X-Ticket", "T-42")])
        assert answer.status == 200
        assert answer.headers.get("Content-Type") == "application/sdp"
        body = answer.body.decode()
        assert body.count("a=recvonly") == 2
        assert "a=label:inbound" in body and "a=label:outbound" in body
        ports = call.ports
        assert ports[1] == ports[0] + 2 and ports[0] % 2 == 0  # a block P, P+2
        send_tones(ports, (440.0, 1000.0), packets=100)
        assert client.bye(call).status == 200
        wall_s = time.monotonic() - started
    finally:
        client.close()
    [doc] = server.wait_sidecar()
    jsonschema.validate(doc, load_session_schema())
    directory = server.sessions()[0]
    inbound, outbound = read(directory / "inbound.wav"), read(directory / "outbound.wav")
    mix = read(directory / "mix.wav")
    assert dominant_hz(inbound) == pytest.approx(440, abs=2)
    assert dominant_hz(outbound) == pytest.approx(1000, abs=2)
    assert len(inbound) == len(outbound) == len(mix)
    # The track lasts the session's wall-clock duration: at least the 2 s of audio sent,
    # and no more than the time from the INVITE to the BYE (plus one packet).
    assert 16000 <= len(inbound) <= (wall_s + 0.02) * 8000
    assert dominant_hz(mix[:, 0]) == pytest.approx(440, abs=2)  # Twilio order: inbound left
    assert dominant_hz(mix[:, 1]) == pytest.approx(1000, abs=2)
    assert doc["end_reason"] == "bye"
    assert doc["source"]["transport"] == transport
    assert doc["twilio"] == {"call_sid": "CA0123", "account_sid": "AC0456"}
    assert doc["custom_parameters"]["X-Ticket"] == "T-42"
    assert "X-Auth-Token" not in doc["custom_parameters"]
    assert TOKEN not in (directory / "session.json").read_text()
    assert doc["siprec"] == {"session_id": "sess-1", "group_id": "grp-1"}
    assert [(p["id"], p["aor"], p["sends"]) for p in doc["participants"]] == [
        ("p0", "sip:user0@example.com", ["inbound"]),
        ("p1", "sip:user1@example.com", ["outbound"]),
    ]
    streams = {s["label"]: s for s in doc["streams"]}
    assert streams["inbound"]["participant"] == "p0"
    assert streams["inbound"]["packets"]["received"] == 100
    assert streams["inbound"]["packets"]["lost"] == 0
    assert streams["outbound"]["codec"] == "PCMU"
    assert doc["mix"]["channels"] == ["inbound", "outbound"]
    assert (directory / "metadata-1.xml").read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_invite_without_the_right_credential_is_403_and_writes_nothing(
    server: RunningServer, token: str | None
) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=token)
    try:
        _, response = client.invite(auth=token is not None)
    finally:
        client.close()
    assert response.status == 403
    server.wait_event("request_refused", status=403)
    assert server.sessions() == []
    assert not any(server.recordings.rglob("*.wav"))
    assert TOKEN not in server.log()
    [refused] = [e for e in server.events() if e["event"] == "request_refused"]
    assert refused["status"] == 403 and refused["method"] == "INVITE"
    assert refused["reason"] == ("Forbidden: missing X-Auth-Token" if token is None
                                 else "Forbidden: bad X-Auth-Token")


def test_impaired_stream_is_placed_by_rtp_time(server: RunningServer) -> None:
    """Loss, reordering, duplicates, sequence and timestamp wrap, a silence-suppression gap:
    every packet lands exactly where its RTP timestamp says, gaps are silence."""
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _ = client.invite(labels=("caller",), with_metadata=False)
    sender = RtpSender(call.ports[0], ssrc=0xABCDEF)
    seq0, ts0 = 65530, 2**32 - 160 * 20  # both wrap during the call
    codes = [0x80 + (i % 0x70) for i in range(120)]  # packet i decodes to one constant
    order = list(range(120))
    order[20], order[21] = order[21], order[20]  # reordered
    lost = {10, 11, 12}
    gap = set(range(60, 85))  # silence suppression: 0.5 s without packets
    t0 = time.monotonic()
    for n, i in enumerate(order):
        if i in lost or i in gap:
            continue
        packet = rtp_packet(seq0 + i if i < 60 else seq0 + i - len(gap), ts0 + 160 * i, 0xABCDEF,
                            constant_payload(codes[i]))
        sender.send(packet)
        if i == 30:
            sender.send(packet)  # duplicate
        time.sleep(max(0.0, t0 + 0.02 * (n + 1) - time.monotonic()))
    sender.close()
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    track = read(server.sessions()[0] / "caller.wav")
    values = [int(pcmu_decode(bytes([c]))[0]) for c in codes]
    # Find packet 0 (its position depends on when it arrived); everything else is exact.
    start = int(np.flatnonzero(track == values[0])[0])
    for i in range(120):
        chunk = track[start + 160 * i : start + 160 * (i + 1)]
        expected = 0 if (i in lost or i in gap) else values[i]
        assert (chunk == expected).all(), f"packet {i}"
    stream = doc["streams"][0]
    assert stream["packets"]["received"] == 120 - len(lost) - len(gap) + 1
    assert stream["packets"]["lost"] == len(lost)
    assert stream["packets"]["duplicated"] == 1
    assert stream["packets"]["reordered"] >= 1


def test_reinvite_hold_new_stream_and_stable_ports(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _answer = client.invite()
    first_ports = call.ports
    send_tones(first_ports, (440.0, 1000.0), packets=25)
    # Hold: both m-lines inactive -> answered inactive, same ports.
    hold = client.reinvite(call, sdp_offer([40000, 40002], ["inbound", "outbound"],
                                           direction="inactive", version=2))
    assert hold.status == 200
    assert hold.body.decode().count("a=inactive") == 2
    assert [int(line.split()[1]) for line in hold.body.decode().splitlines()
            if line.startswith("m=")] == first_ports
    time.sleep(0.5)
    # Resume with a third stream: the first two keep their ports.
    resume = client.reinvite(call, sdp_offer([40000, 40002, 40004], ["inbound", "outbound", "mixed"],
                                             version=3),
                             metadata(["inbound", "outbound", "mixed"], mode="complete"))
    assert resume.status == 200
    call.answer = resume
    ports = call.ports
    assert ports[:2] == first_ports and ports[2] not in first_ports and ports[2] != 0
    send_tones(ports, (440.0, 1000.0, 2000.0), packets=25, start_seq=25, start_ts=25 * 160 + 80000)
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    directory = server.sessions()[0]
    tracks = {name: read(directory / f"{name}.wav") for name in ("inbound", "outbound", "mixed")}
    lengths = {len(t) for t in tracks.values()}
    assert len(lengths) == 1, lengths  # every track spans the whole session
    mixed = tracks["mixed"]
    joined = int(np.flatnonzero(mixed)[0])
    assert dominant_hz(mixed[joined : joined + 3200]) == pytest.approx(2000, abs=5)
    assert (mixed[: 8000 // 2] == 0).all()  # joined late: leading silence
    assert len(doc["metadata_updates"]) == 2
    assert (directory / "metadata-2.xml").exists()
    assert doc["mix"] is None  # three streams: no stereo mix


def test_metadata_only_update(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _ = client.invite()
    call.cseq += 1
    xml = metadata(["inbound", "outbound"], mode="partial",
                   extra='<extensiondata xmlns:t="urn:example:t"><t:ticket>T-9</t:ticket></extensiondata>')
    client.request("UPDATE", call, body=xml.encode(), content_type="application/rs-metadata+xml")
    response = client.final()
    assert response.status == 200 and response.body == b""
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    assert [u["method"] for u in doc["metadata_updates"]] == ["INVITE", "UPDATE"]
    assert "T-9" in doc["custom_parameters"].values()


def test_nothing_acceptable_is_488(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    offer = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 4 96\r\na=rtpmap:4 G723/8000\r\na=rtpmap:96 MP4A-LATM/90000\r\n"
    _, response = client.invite(sdp=offer)
    client.close()
    assert response.status == 488
    server.wait_event("session_discarded")
    assert server.sessions() == []
    assert not any(server.recordings.rglob("*.wav"))


def test_session_limit_is_503_with_retry_after(tmp_path: Path) -> None:
    running = start_server(tmp_path, server={"max_sessions": 1})
    try:
        client = SipClient("127.0.0.1", running.sip_port, token=TOKEN)
        call, first = client.invite()
        assert first.status == 200
        _, second = client.invite()
        assert second.status == 503
        assert second.headers.get("Retry-After") is not None
        assert client.bye(call).status == 200
        client.close()
    finally:
        running.stop()


def test_rtp_inactivity_ends_the_session_with_our_bye(tmp_path: Path) -> None:
    running = start_server(tmp_path, media={"rtp_timeout_s": 1.0})
    try:
        client = SipClient("127.0.0.1", running.sip_port, token=TOKEN)
        call, _ = client.invite()
        send_tones(call.ports, (440.0, 1000.0), packets=10)
        bye = client.receive(timeout=5.0)
        assert getattr(bye, "method", None) == "BYE"
        assert bye.headers.get("Call-ID") == call.call_id
        [doc] = running.wait_sidecar()
        assert doc["end_reason"] == "timeout"
        client.close()
    finally:
        running.stop()


def test_shutdown_finalises_active_sessions(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    client = SipClient("127.0.0.1", running.sip_port, token=TOKEN)
    call, _ = client.invite()
    send_tones(call.ports, (440.0, 1000.0), packets=20)
    running.stop()
    bye = client.receive(timeout=5.0)
    assert getattr(bye, "method", None) == "BYE"
    client.close()
    [doc] = running.wait_sidecar(timeout=1)
    assert doc["end_reason"] == "shutdown"
    assert doc["streams"][0]["packets"]["received"] == 20


def test_telephone_events_go_to_the_sidecar_not_the_audio(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _ = client.invite(labels=("caller",), with_metadata=False)
    sender = RtpSender(call.ports[0], ssrc=0x5151)
    t0 = time.monotonic()
    silence = pcmu_encode(np.zeros(160, dtype=np.int16))
    for i in range(60):
        if 20 <= i < 30:
            # RFC 4733 §2.3: event 5, E bit on the last three (redundant end packets),
            # all with the event's start timestamp 20*160.
            end = 0x80 if i >= 27 else 0
            payload = bytes([5, end | 10]) + ((i - 19) * 160).to_bytes(2, "big")
            sender.send(rtp_packet(i, 20 * 160, 0x5151, payload, pt=101, marker=i == 20))
        else:
            sender.send(rtp_packet(i, i * 160, 0x5151, silence))
        time.sleep(max(0.0, t0 + 0.02 * (i + 1) - time.monotonic()))
    sender.close()
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    [event] = doc["dtmf"]
    assert event["digit"] == "5" and event["label"] == "caller"
    assert event["duration_ms"] == 160  # the final duration field: 8 * 160 samples
    track = read(server.sessions()[0] / "caller.wav")
    assert (track == 0).all()  # events are never audio


def test_unwritable_recordings_dir_fails_the_session_not_the_server(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        # The recordings directory goes away under the running server and a regular file
        # takes its place (as with a lost mount): sessions cannot be stored.
        running.recordings.rmdir()
        running.recordings.write_text("not a directory")
        client = SipClient("127.0.0.1", running.sip_port, token=TOKEN)
        _, response = client.invite()
        assert response.status == 503 and response.headers.get("Retry-After") == "30"
        client.request("OPTIONS", Call("still-alive", "x"), auth=False)
        assert client.final().status == 200
        client.close()
        assert any(e["event"] == "session_storage_failed" for e in running.events())
    finally:
        running.stop()


def test_sender_restart_with_new_ssrc_keeps_the_timeline(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _ = client.invite(labels=("caller",), with_metadata=False)
    send_tones([call.ports[0]], [440.0], packets=50, ssrc_base=0x1111)
    time.sleep(0.8)  # the sender restarts: new source port, new SSRC, new sequence
    send_tones([call.ports[0]], [1000.0], packets=50, start_seq=9000, start_ts=123456, ssrc_base=0x2222)
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    stream = doc["streams"][0]
    assert stream["ssrcs"] == [0x1111, 0x2222]
    assert stream["packets"]["received"] == 100 and stream["packets"]["lost"] == 0
    track = read(server.sessions()[0] / "caller.wav")
    voiced = np.flatnonzero(track)
    first, last = voiced[0], voiced[-1]
    # 2 s of audio with a ~0.8 s pause between the senders, placed by arrival time.
    assert 2.7 * 8000 <= last - first <= 3.1 * 8000
    assert dominant_hz(track[first : first + 4000]) == pytest.approx(440, abs=3)
    assert dominant_hz(track[last - 4000 : last]) == pytest.approx(1000, abs=3)


def test_an_m_line_stopped_and_offered_again_continues_its_file(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, _ = client.invite()
    send_tones(call.ports, (440.0, 1000.0), packets=10)
    offer = sdp_offer([40000, 40002], ["inbound", "outbound"], version=2).replace(
        "m=audio 40002", "m=audio 0")  # RFC 3264 §8.2: the second stream removed
    assert client.reinvite(call, offer).status == 200
    again = client.reinvite(call, sdp_offer([40000, 40002], ["inbound", "outbound"], version=3))
    assert again.status == 200
    call.answer = again
    send_tones(call.ports, (440.0, 1000.0), packets=10, start_seq=10, start_ts=1600)
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    files = [s["file"] for s in doc["streams"]]
    assert files == ["inbound.wav", "outbound.wav"]
    assert [s["packets"]["received"] for s in doc["streams"]] == [20, 20]
    lengths = {len(read(server.sessions()[0] / name)) for name in files}
    assert len(lengths) == 1  # every file finalised to the session's length
    outbound = read(server.sessions()[0] / "outbound.wav")
    voiced = np.flatnonzero(outbound)
    assert dominant_hz(outbound[voiced[0]:voiced[-1] + 1]) == pytest.approx(1000, abs=20)


def test_idle_timeout_spares_a_connection_that_carries_a_dialog(tmp_path: Path) -> None:
    running = start_server(tmp_path, sip={"idle_timeout_s": 1.0})
    try:
        client = SipClient("127.0.0.1", running.sip_port, "tcp", token=TOKEN)
        _call, _ = client.invite()
        time.sleep(7)  # the idle check runs every second: several passes
        assert running.app.transports.counters["idle_closed"] == 0
        running.stop()  # shutdown sends our BYE over the same connection
        bye = client.receive(timeout=5)
        assert getattr(bye, "method", None) == "BYE"
        client.close()
    finally:
        running.stop()
