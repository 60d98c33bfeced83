"""`srs call` against the real server (the ``server`` fixture of tests/conftest.py).

Every test checks what the server recorded: the tone on each track (by FFT), the track
lengths, and the sidecar fields the client's INVITE, re-INVITEs and UPDATE produced.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from srs.cli.main import main
from srs.client.encode import SEND_CODECS, available
from tests.conftest import TOKEN, RunningServer
from tests.e2e.audio import dominant_frequency

RATE_HZ = 8000
QUIET_PEAK = 200  # G.711 silence decodes to a few units; a tone at half scale peaks ~16000


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["call", *args])
    out, err = capsys.readouterr()
    return code, out, err


def target(server: RunningServer, transport: str) -> str:
    if transport == "tls":
        return f"sip:127.0.0.1:{server.tls_port};transport=tls"
    return f"sip:127.0.0.1:{server.sip_port};transport={transport}"


def recordings(server: RunningServer, count: int = 1) -> list[tuple[dict[str, Any], Path]]:
    server.wait_sidecar("complete", count)
    return [(json.loads((directory / "session.json").read_text()), directory)
            for directory in server.sessions()]


def track(directory: Path, label: str) -> np.ndarray:
    samples, rate = sf.read(directory / f"{label}.wav", dtype="int16")
    assert rate == RATE_HZ
    return samples


def assert_tone(samples: np.ndarray, freq_hz: float) -> None:
    assert np.abs(samples).max() > 10000, "the track is silent"
    assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq_hz, abs=5)


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_one_call_is_recorded_with_its_tones_ids_and_parameters(
    server: RunningServer, capsys: pytest.CaptureFixture[str], transport: str, srtp: bool
) -> None:
    args = [target(server, transport), "--token", TOKEN, "--duration", "1",
            "--param", "ticket=T-42", "--param", "queue=billing"]
    if transport == "tls":
        args.append("--insecure")
    if srtp:
        args.append("--srtp")
    code, out, err = call(capsys, *args)
    assert code == 0, out + err
    assert "call 1: INVITE -> 200 OK" in out and "call 1: BYE -> 200 OK" in out
    assert re.search(r"inbound: PCMU to 127\.0\.0\.1:\d+", out)
    assert ("SRTP AES_CM_128_HMAC_SHA1_80" in out) == srtp
    assert "sent 50 packets on inbound, 50 packets on outbound" in out
    assert "1 call(s): 1 ok, 0 failed" in out
    assert TOKEN not in out + err
    call_sid = re.search(r"CallSid (CA[0-9a-f]{32})", out)
    assert call_sid is not None

    ((doc, directory),) = recordings(server)
    assert doc["source"]["transport"] == transport and doc["end_reason"] == "bye"
    assert doc["call_id"].endswith("@0.0.0.0")
    assert doc["twilio"]["call_sid"] == call_sid.group(1)
    assert doc["twilio"]["account_sid"].startswith("AC")
    params = doc["custom_parameters"]
    assert params["X-ticket"] == params["ticket"] == "T-42"
    assert params["X-queue"] == params["queue"] == "billing"
    assert "X-Auth-Token" not in params
    assert {p["aor"]: p["sends"] for p in doc["participants"]} == {
        "sip:+15005550006@example.com": ["inbound"],
        "sip:+15005550001@example.com": ["outbound"],
    }
    for stream in doc["streams"]:
        assert stream["codec"] == "PCMU"
        assert stream["srtp"] == ("AES_CM_128_HMAC_SHA1_80" if srtp else None)
        assert stream["packets"]["received"] == 50 and not stream["packets"]["dropped"]
    tones_hz = {"inbound": 440, "outbound": 1000}
    for stream in doc["streams"]:
        samples = track(directory, stream["label"])
        assert stream["duration_s"] == pytest.approx(len(samples) / RATE_HZ, abs=0.001)
        # Every track starts at the session's origin: the time the client took from the
        # answer to its first packet is silence before the tone (longer on a loaded host).
        audible = np.flatnonzero(np.abs(samples) > QUIET_PEAK)
        assert audible.size, f"{stream['label']} is silent"
        tone = samples[audible[0]:audible[-1] + 1]
        assert len(tone) == pytest.approx(RATE_HZ, abs=160), "50 packets of 20 ms of tone"
        assert_tone(tone, tones_hz[stream["label"]])


@pytest.mark.parametrize(("codec", "rate_hz"), [
    pytest.param(name, SEND_CODECS[name].sample_rate_hz, marks=pytest.mark.skipif(
        name not in available(), reason=f"this PyAV build has no {name} encoder"))
    for name in ("G722", "opus", "AMR", "L16")])
def test_a_call_in_another_codec_is_recorded_at_its_rate(
    server: RunningServer, capsys: pytest.CaptureFixture[str], codec: str, rate_hz: int
) -> None:
    code, out, err = call(capsys, target(server, "udp"), "--token", TOKEN, "--duration", "1",
                          "--codec", codec, "--codec", "PCMU")
    assert code == 0, out + err
    assert re.search(rf"outbound: {codec} to 127\.0\.0\.1:\d+", out)
    ((doc, directory),) = recordings(server)
    tones_hz = {"inbound": 440, "outbound": 1000}
    for stream in doc["streams"]:
        assert (stream["codec"], stream["sample_rate"]) == (codec, rate_hz)
        assert stream["packets"]["received"] == 50 and not stream["decode_errors"]
        samples, rate = sf.read(directory / f"{stream['label']}.wav", dtype="int16")
        assert rate == rate_hz
        audible = np.flatnonzero(np.abs(samples) > QUIET_PEAK)
        tone = samples[audible[0]:audible[-1] + 1]
        assert len(tone) == pytest.approx(rate_hz, abs=rate_hz // 50 * 2), "1 s of tone"
        assert np.abs(tone).max() > 10000
        assert dominant_frequency(tone, rate_hz) == pytest.approx(
            tones_hz[stream["label"]], abs=5)


def test_five_calls_at_five_per_second(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = call(capsys, target(server, "udp"), "--token", TOKEN,
                          "--duration", "1", "--calls", "5", "--rate", "5", "--concurrency", "5")
    assert code == 0, out + err
    assert "5 call(s): 5 ok, 0 failed" in out
    assert {int(n) for n in re.findall(r"call (\d+): BYE -> 200 OK", out)} == {1, 2, 3, 4, 5}
    found = recordings(server, 5)
    assert len(found) == 5 and len({doc["twilio"]["call_sid"] for doc, _ in found}) == 5
    for doc, directory in found:
        assert [s["packets"]["received"] for s in doc["streams"]] == [50, 50]
        assert_tone(track(directory, "outbound"), 1000)


def test_hold_is_silence_and_the_metadata_update_is_kept(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = call(capsys, target(server, "tcp"), "--token", TOKEN,
                          "--duration", "3", "--hold-at", "1", "--hold-for", "1",
                          "--metadata-update-at", "2.5", "--param", "ticket=7")
    assert code == 0, out + err
    steps = re.findall(r"call 1: (re-INVITE \(\w+\)|UPDATE \(metadata\)) -> 200 OK", out)
    assert steps == ["re-INVITE (hold)", "re-INVITE (resume)", "UPDATE (metadata)"]
    ((doc, directory),) = recordings(server)
    assert [u["method"] for u in doc["metadata_updates"]] == ["INVITE", "UPDATE"]
    assert b"partial" in (directory / doc["metadata_updates"][1]["file"]).read_bytes()
    assert doc["custom_parameters"]["metadata_update"] == "1"
    assert doc["custom_parameters"]["ticket"] == "7"
    for label, freq in (("inbound", 440), ("outbound", 1000)):
        samples = track(directory, label)
        assert len(samples) == pytest.approx(3 * RATE_HZ, abs=800)
        # Timeline from the answer: tone, about a second of hold, tone again.
        assert_tone(samples[int(0.2 * RATE_HZ):int(0.8 * RATE_HZ)], freq)
        assert np.abs(samples[int(1.2 * RATE_HZ):int(1.8 * RATE_HZ)]).max() < QUIET_PEAK
        assert_tone(samples[int(2.3 * RATE_HZ):int(2.8 * RATE_HZ)], freq)


def test_a_wrong_token_fails_naming_the_status(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = call(capsys, target(server, "udp"), "--token", "wrong", "--duration", "1")
    assert code == 1
    assert "call 1: INVITE -> 403 Forbidden" in out
    assert "srs call: call 1 failed: INVITE answered 403 Forbidden" in err
    assert "1 call(s): 0 ok, 1 failed" in out
    assert server.sessions() == []


def test_an_unreachable_server_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, _, err = call(capsys, f"sip:127.0.0.1:{port};transport=tcp", "--duration", "1")
    assert code == 1 and f"cannot reach 127.0.0.1:{port} over tcp" in err


@pytest.mark.parametrize(("args", "problem"), [
    (["--param", "no-equals"], "--param wants NAME=VALUE"),
    (["--hold-at", "4"], "hold and resume must fall within the call (5 s)"),
    (["--srtp", "NULL"], "unknown SRTP suite"),
    (["--track", "/nonexistent.wav"], "cannot read /nonexistent.wav"),
])
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                              problem: str) -> None:
    code, _, err = call(capsys, "sip:127.0.0.1:9", *args)
    assert code == 2 and problem in err


def test_the_command_with_wav_files_pcma_and_tls(server: RunningServer,
                                                 tmp_path: Path) -> None:
    """`python -m srs call` as a user runs it: files at 16 kHz, SRTP over TLS, PCMA."""
    files = []
    for name, freq in (("agent", 600), ("customer", 1500)):
        n = np.arange(int(16000 * 1.5))
        path = tmp_path / f"{name}.wav"
        sf.write(path, (12000 * np.sin(2 * np.pi * freq * n / 16000)).astype(np.int16), 16000)
        files += ["--track", str(path), "--label", name]
    process = subprocess.run(
        [sys.executable, "-m", "srs", "call", f"sips:127.0.0.1:{server.tls_port}",
         "--insecure", "--srtp", "--codec", "PCMA", "--progress", *files,
         "--aor", "sip:agent@example.com"],
        env={**os.environ, "SRS_CALL_TOKEN": TOKEN}, capture_output=True, text=True, timeout=60,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "agent: PCMA to 127.0.0.1:" in process.stdout
    assert "calls 1/1 done, 0 failed, 0 active" in process.stderr
    ((doc, directory),) = recordings(server)
    assert [(s["label"], s["codec"]) for s in doc["streams"]] == [("agent", "PCMA"),
                                                                   ("customer", "PCMA")]
    assert {p["aor"] for p in doc["participants"]} == {"sip:agent@example.com",
                                                       "sip:+15005550001@example.com"}
    assert_tone(track(directory, "agent"), 600)
    assert_tone(track(directory, "customer"), 1500)
    assert len(track(directory, "agent")) == pytest.approx(1.5 * RATE_HZ, abs=800)


def test_a_bye_from_the_server_ends_the_call_as_failed(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """srs serve sends BYE on shutdown; the client answers it 200 and reports the end."""
    outcome: list[int] = []
    runner = threading.Thread(target=lambda: outcome.append(
        main(["call", target(server, "udp"), "--token", TOKEN, "--duration", "20"])))
    runner.start()
    try:
        server.wait_sidecar("recording")
    finally:
        server.stop()  # BYE on every active session, then finalise
        runner.join(timeout=30)
    _, err = capsys.readouterr()
    assert outcome == [1]
    assert "failed: the server ended the call with a BYE" in err
    ((doc, _),) = recordings(server)
    assert doc["end_reason"] == "shutdown"
