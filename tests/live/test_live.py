"""Live audio out through a running server: a real WebSocket consumer (tests/live/
consumer.py) receives each session as it is recorded, and what it rebuilds from the
chunks is the WAV's audio; consumers that stall, refuse, close or are absent cost the
recording nothing and the sidecar's ``streams_out`` counts what reached them."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from srs.codecs.g711 import pcmu_encode
from tests.conftest import TOKEN, RunningServer, free_port, start_server
from tests.e2e.audio import dominant_frequency
from tests.live.consumer import Consumer, TwilioStream, check_l16, check_twilio, rebuild
from tests.sipclient import RtpSender, SipClient, rtp_packet, tone

BEARER = "Bearer live-consumer-secret"
CHUNK = 160  # 20 ms at 8 kHz


def live_server(tmp_path: Path, url: str, *, workers: int | None = None,
                **stream: Any) -> RunningServer:
    sections: dict[str, dict[str, Any]] = {
        "stream": {"url": [url], "headers": [f"Authorization: {BEARER}"], **stream}}
    if workers is not None:
        sections["media"] = {"workers": workers}
    return start_server(tmp_path, **sections)


def srs_call(server: RunningServer, duration_s: float, *extra: str) -> None:
    """``srs call``, in its own process: the server's log stays the test's."""
    result = subprocess.run(
        [sys.executable, "-m", "srs", "call", f"sip:127.0.0.1:{server.sip_port}", "--token",
         TOKEN, "--duration", str(duration_s), "-q", *extra],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def finished(server: RunningServer) -> tuple[dict[str, Any], Path]:
    server.wait_sidecar("complete", 1, timeout=30)
    [directory] = server.sessions()
    return json.loads((directory / "session.json").read_text()), directory


def wav(directory: Path, label: str) -> np.ndarray:
    samples, rate = sf.read(directory / f"{label}.wav", dtype="int16")
    assert rate == 8000
    return samples


def assert_toned(samples: np.ndarray, freq_hz: float, seconds: float) -> None:
    """The recording kept its tone for (about) the whole call."""
    audible = np.flatnonzero(np.abs(samples) > 200)
    assert audible.size
    assert (audible[-1] - audible[0]) / 8000 == pytest.approx(seconds, abs=0.1)
    assert dominant_frequency(samples[audible[0]:audible[-1]], 8000) == pytest.approx(
        freq_hz, abs=5)


def missing_ms(have: np.ndarray, end: int) -> int:
    """Samples up to ``end`` the consumer never got, in ms."""
    padded = np.zeros(end, dtype=bool)
    padded[:min(end, len(have))] = have[:end]
    return int((~padded).sum()) * 1000 // 8000


def gaps_ms(stream: TwilioStream) -> int:
    """The audio both tracks lack up to the end of the longer, in ms."""
    have = [rebuild(stream.media[t])[1] for t in ("inbound", "outbound")]
    end = max(len(h) for h in have)
    return sum(missing_ms(h, end) for h in have)


def assert_secrets_not_logged(server: RunningServer) -> None:
    log = server.log()
    assert "live-consumer-secret" not in log and "query-secret" not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_a_twilio_shaped_call_is_received_live_with_its_ids_parameters_and_audio(
        tmp_path: Path, workers: int) -> None:
    with Consumer() as consumer:
        server = live_server(tmp_path, consumer.url(), workers=workers)
        try:
            srs_call(server, 3, "--param", "agent=alice")
            doc, directory = finished(server)
            [connection] = consumer.wait_closed(1)
        finally:
            server.stop()
    assert connection.headers["authorization"] == BEARER
    assert connection.path == "/media?token=query-secret"
    stream = check_twilio(connection.messages)
    assert stream.stop is not None, "no stop event"
    start = stream.start
    assert start["callSid"] == doc["twilio"]["call_sid"]
    assert start["accountSid"] == doc["twilio"]["account_sid"]
    # Twilio's <Parameter>s, as the metadata carries them; the X- copies and the ids
    # (callSid, accountSid above) are the sidecar's only.
    assert start["customParameters"] == {"agent": "alice"}
    assert doc["custom_parameters"]["X-agent"] == "alice"
    assert start["tracks"] == ["inbound", "outbound"]
    assert start["srs"]["labels"] == {"inbound": "inbound", "outbound": "outbound"}
    assert start["srs"]["callId"] == doc["call_id"]
    for track, freq in (("inbound", 440), ("outbound", 1000)):
        samples = wav(directory, track)
        assert_toned(samples, freq, 3.0)
        rebuilt, have = rebuild(stream.media[track])
        # The whole track from the session's origin, but for the part of a chunk the
        # session's end may cut (the file pads its tracks to the session's length).
        assert have.all(), f"{track}: gaps in the live stream"
        assert len(have) >= len(samples) - CHUNK
        n = min(len(have), len(samples))
        assert rebuilt[:n] == pcmu_encode(samples[:n]), f"{track}: live audio is not the WAV's"
    [out] = doc["streams_out"]
    assert out["url"] == f"ws://127.0.0.1:{consumer.port}/media"
    assert out["format"] == "twilio" and out["connected_at"] is not None
    assert out["media_ms_sent"] == stream.media_ms() and out["media_ms_dropped"] == 0
    assert out["reconnects"] == 0
    assert_secrets_not_logged(server)


def dtmf_packets(key: int, seq: int, ts: int, ssrc: int) -> list[bytes]:
    """RFC 4733 §2.3: one key press, three updates, the last with the E bit (sent 3x)."""
    out = []
    for i, duration in enumerate((160, 320, 480, 480, 480)):
        end = 0x80 if i >= 2 else 0
        out.append(rtp_packet(seq + i, ts, ssrc, struct.pack("!BBH", key, end | 10, duration),
                              pt=101, marker=i == 0))
    return out


def test_an_sbc_shaped_session_is_received_live_as_l16_with_its_dtmf(tmp_path: Path) -> None:
    with Consumer() as consumer:
        server = live_server(tmp_path, consumer.url("/l16"), format="l16")
        try:
            client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
            call, response = client.invite(("caller-leg", "callee-leg"))
            assert response.status == 200
            senders = [RtpSender(port, 0x1000 + i) for i, port in enumerate(call.ports)]
            press = dtmf_packets(5, 100, 100 * 160, senders[0].ssrc)
            t0 = time.monotonic()
            for i in range(150):  # 3 s of tones; a key press on the first at 2 s
                for j, (sender, freq) in enumerate(zip(senders, (440, 1000), strict=True)):
                    if j == 0 and 100 <= i < 100 + len(press):
                        sender.send(press[i - 100])
                    else:
                        sender.send(rtp_packet(i, i * CHUNK, sender.ssrc,
                                               pcmu_encode(tone(freq, i * CHUNK, CHUNK))))
                time.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
            for sender in senders:
                sender.close()
            assert client.bye(call).status == 200
            client.close()
            doc, directory = finished(server)
            [connection] = consumer.wait_closed(1)
        finally:
            server.stop()
    stream = check_l16(connection.messages)
    assert stream.stopped
    start = stream.start
    assert start["srs"]["sessionId"] == doc["siprec"]["session_id"] == "sess-1"
    assert "callSid" not in start and "accountSid" not in start
    labels = [s["label"] for s in doc["streams"]]
    assert [t["label"] for t in start["tracks"]] == labels
    assert [t["name"] for t in start["tracks"]] == ["inbound", "outbound"]
    assert all(t["sampleRate"] == 8000 and t["encoding"] == "s16le" for t in start["tracks"])
    for index, label in enumerate(labels):
        samples = wav(directory, label)
        rebuilt, have = rebuild(stream.media[index], width=2)
        assert have.all() and len(have) >= len(samples) - CHUNK
        n = min(len(have), len(samples))
        assert rebuilt[: 2 * n] == samples[:n].astype("<i2").tobytes()
    assert [(d["track"], d["digit"]) for d in stream.dtmf] == [("inbound", "5")]
    assert stream.dtmf[0]["timestamp"] == pytest.approx(
        doc["dtmf"][0]["at_s"] * 1000, abs=1)
    [out] = doc["streams_out"]
    assert out["format"] == "l16" and out["media_ms_dropped"] == 0
    assert out["media_ms_sent"] == sum(len(b) // 16 for c in stream.media.values() for _, b in c)


def test_a_consumer_that_stalls_for_10_s_costs_the_recording_nothing(
        tmp_path: Path) -> None:
    with Consumer(stall_s=10.0, recv_buffer=4096) as consumer:
        server = live_server(tmp_path, consumer.url(), queue_ms=500)
        try:
            srs_call(server, 12)
            doc, directory = finished(server)
            [connection] = consumer.wait_closed(1, timeout=30)
        finally:
            server.stop()
    stream = check_twilio(connection.messages)
    [out] = doc["streams_out"]
    for track, freq in (("inbound", 440), ("outbound", 1000)):
        assert_toned(wav(directory, track), freq, 12.0)
    # What was sent arrived; what was not is counted, and is exactly the consumer's gaps.
    assert stream.media_ms() == out["media_ms_sent"]
    gaps = gaps_ms(stream)
    assert gaps == pytest.approx(out["media_ms_dropped"], abs=40)
    assert out["media_ms_sent"] + out["media_ms_dropped"] >= 2 * 12000 - 200


def test_a_consumer_that_refuses_for_a_while_gets_the_session_from_then_on(
        tmp_path: Path) -> None:
    with Consumer(refuse_for_s=1.5) as consumer:
        server = live_server(tmp_path, consumer.url())
        try:
            srs_call(server, 4)
            doc, directory = finished(server)
            [connection] = consumer.wait_closed(1)
        finally:
            server.stop()
    assert consumer.refused >= 2  # retried with backoff
    stream = check_twilio(connection.messages)
    assert stream.stop is not None
    [out] = doc["streams_out"]
    assert out["connected_at"] is not None and out["reconnects"] == 0
    for track, freq in (("inbound", 440), ("outbound", 1000)):
        assert_toned(wav(directory, track), freq, 4.0)
        first = stream.media[track][0][0]
        assert 1500 <= first <= 3500, f"{track} starts at {first} ms"
    assert stream.media_ms() == out["media_ms_sent"]
    gaps = gaps_ms(stream)
    assert gaps == pytest.approx(out["media_ms_dropped"], abs=40) and gaps >= 2 * 1500
    assert_secrets_not_logged(server)  # a refused handshake's error names the URL


def test_a_consumer_that_closes_mid_call_is_reconnected_and_resumes_live(
        tmp_path: Path) -> None:
    with Consumer(close_after_media=60) as consumer:
        server = live_server(tmp_path, consumer.url())
        try:
            srs_call(server, 4)
            doc, directory = finished(server)
            first, second = consumer.wait_closed(2)
        finally:
            server.stop()
    one, two = check_twilio(first.messages), check_twilio(second.messages)
    assert one.stop is None and two.stop is not None
    assert two.start["srs"]["resumed"]["reconnects"] == 1
    assert two.start["streamSid"] == one.start["streamSid"]
    [out] = doc["streams_out"]
    assert out["reconnects"] == 1
    for track, freq in (("inbound", 440), ("outbound", 1000)):
        assert_toned(wav(directory, track), freq, 4.0)
        assert two.media[track][0][0] > one.media[track][-1][0]  # time ran on
    received = one.media_ms() + two.media_ms()
    # Sent to the first connection as it closed may never have been read.
    assert 0 <= out["media_ms_sent"] - received <= 400
    assert two.start["srs"]["resumed"]["droppedMs"] <= out["media_ms_dropped"]


def test_an_absent_consumer_costs_the_recording_nothing(
        tmp_path: Path) -> None:
    server = live_server(tmp_path, f"ws://127.0.0.1:{free_port()}/nobody")
    try:
        srs_call(server, 3)
        doc, directory = finished(server)
    finally:
        server.stop()
    for track, freq in (("inbound", 440), ("outbound", 1000)):
        assert_toned(wav(directory, track), freq, 3.0)
    [out] = doc["streams_out"]
    assert out["connected_at"] is None and out["media_ms_sent"] == 0
    assert out["media_ms_dropped"] >= 2 * 3000 - 100
    failed = [e for e in server.events() if e.get("event") == "stream_connect_failed"]
    assert len(failed) == 1, "one warning per outage, not per attempt"


def readme_consumers() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Live audio out", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```")[1::2]
            if block.startswith("python")]


@pytest.mark.parametrize(("index", "live_format"), [(0, "twilio"), (1, "l16")])
def test_the_readme_consumers_receive_a_call(tmp_path: Path,
                                             index: int, live_format: str) -> None:
    port = free_port()
    code = readme_consumers()[index].replace('"0.0.0.0", 8765', f'"127.0.0.1", {port}')
    script = tmp_path / "consumer.py"
    script.write_text(code)
    process = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        server = live_server(tmp_path, f"ws://127.0.0.1:{port}/", format=live_format)
        try:
            srs_call(server, 1)
            finished(server)
        finally:
            server.stop()
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    lines = out.splitlines()
    if live_format == "twilio":
        assert any(line.startswith("call CA") for line in lines), out
        assert sum(line.startswith("inbound ") and line.endswith(" 160") for line in lines) >= 45
    else:
        assert sum(line.startswith("0 ") and line.endswith(" 20 ms") for line in lines) >= 45, out


def test_a_call_on_hold_goes_on_live_as_silence_and_matches_the_wav(tmp_path: Path) -> None:
    with Consumer() as consumer:
        server = live_server(tmp_path, consumer.url(), workers=1)
        try:
            srs_call(server, 4, "--hold-at", "1", "--hold-for", "1.5")
            doc, directory = finished(server)
            [connection] = consumer.wait_closed(1)
        finally:
            server.stop()
    stream = check_twilio(connection.messages)
    for track in ("inbound", "outbound"):
        samples = wav(directory, track)
        rebuilt, have = rebuild(stream.media[track])
        # Time went on during the hold: silence was streamed, no chunk is missing.
        assert have.all() and len(have) >= len(samples) - CHUNK
        n = min(len(have), len(samples))
        assert rebuilt[:n] == pcmu_encode(samples[:n])
        held = samples[round(1.3 * 8000):round(2.3 * 8000)]
        assert np.abs(held).max() < 200, "the hold is silence in the file"
    assert doc["streams_out"][0]["media_ms_dropped"] == 0
