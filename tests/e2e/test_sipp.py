"""sipp as a Twilio-shaped SIPREC client: a two-stream call over UDP and TCP, recorded.

The RTP is a real capture of ffmpeg sending 440 Hz to the first stream (label ``inbound``)
and 1000 Hz to the second (``outbound``), replayed by sipp's ``play_pcap_audio``.  The
checks read the recorded files back: which tone is on which track, where it starts and
ends, that nothing was lost, and that the sidecar says what the files hold.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import soundfile as sf

from tests.e2e.audio import band_energy_ratio, dominant_frequency, loud_span, riff_layout
from tests.e2e.conftest import (
    PACKET_SAMPLES,
    ServerPool,
    SippRun,
    SrsServer,
    TwoTonePcap,
    run_sipp,
)
from tests.e2e.pcap import read_pcap

pytestmark = pytest.mark.peers

RATE_HZ = 8000
CALL_SID = "CA0123456789abcdef0123456789abcdef"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
PARAM = ("ticket", "T-4711")
# The scenario's labels, in m-line order; the pcap sends freqs_hz[0] to the first m-line.
LABELS = ("inbound", "outbound")


def twilio_keys(server: SrsServer) -> dict[str, str]:
    return {
        "auth_header": server.auth_header,
        "token": server.token,
        "call_sid": CALL_SID,
        "account_sid": ACCOUNT_SID,
        "param_name": PARAM[0],
        "param_value": PARAM[1],
    }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class RecordedCall:
    sipp: SippRun
    directory: Path
    sidecar: dict[str, Any]
    transport: str


@pytest.fixture(scope="module", params=["u1", "t1"], ids=["udp", "tcp"])
def recorded_call(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    two_tone_pcap: TwoTonePcap,
) -> Iterator[RecordedCall]:
    """One sipp call per transport to a server of its own; every test reads its results."""
    transport = request.param
    pool = ServerPool(tmp_path_factory.mktemp(f"sipp_{transport}"))
    try:
        server = pool.make()
        sipp = run_sipp(
            pool.root / "sipp",
            "siprec_uac.xml",
            server,
            transport=transport,
            pcap=two_tone_pcap.path,
            keys=twilio_keys(server),
        )
        assert sipp.returncode == 0, sipp.report() + f"\n--- srs log:\n{server.log_tail()}"
        [(directory, sidecar)] = server.wait_sessions(1, status="complete")
        assert len(server.session_dirs()) == 1, server.session_dirs()
        yield RecordedCall(sipp, directory, sidecar, {"u1": "udp", "t1": "tcp"}[transport])
        assert server.stop() == 0
        assert "Traceback" not in server.log_text()
    finally:
        pool.kill_all()


def test_answer_is_plain_recvonly_sdp_with_even_port_pair(recorded_call: RecordedCall) -> None:
    sipp = recorded_call.sipp
    answer = sipp.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n", 1)[1]
    head = sipp.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n", 1)[0]
    assert "Content-Type: application/sdp" in head, head
    media = [line for line in answer.splitlines() if line.startswith("m=")]
    assert len(media) == 2, answer
    ports = [int(line.split()[1]) for line in media]
    assert ports[0] % 2 == 0 and ports[1] == ports[0] + 2, media
    assert [line for line in answer.splitlines() if line.startswith("a=label:")] == [
        f"a=label:{label}" for label in LABELS
    ]
    assert answer.count("a=recvonly") == 2, answer
    assert "a=sendonly" not in answer


def test_sidecar_describes_the_call(
    recorded_call: RecordedCall, two_tone_pcap: TwoTonePcap
) -> None:
    sipp, directory, sidecar = recorded_call.sipp, recorded_call.directory, recorded_call.sidecar
    assert sidecar["status"] == "complete"
    assert sidecar["end_reason"] == "bye"
    assert sidecar["call_id"] == sipp.call_id
    assert sidecar["source"]["transport"] == recorded_call.transport
    assert sidecar["user_agent"] == "Twilio Gateway"
    assert sidecar["twilio"] == {"call_sid": CALL_SID, "account_sid": ACCOUNT_SID}
    assert sidecar["custom_parameters"][PARAM[0]] == PARAM[1]
    assert [(p["aor"], p["sends"]) for p in sidecar["participants"]] == [
        ("sip:+15005550006@example.twilio.com", ["inbound"]),
        ("sip:+15005550001@example.twilio.com", ["outbound"]),
    ]
    streams = sidecar["streams"]
    assert [s["label"] for s in streams] == list(LABELS)
    for stream, sent in zip(streams, two_tone_pcap.packets, strict=True):
        assert stream["file"] == f"{stream['label']}.wav"
        assert stream["codec"] == "PCMU" and stream["clock_rate"] == RATE_HZ
        assert stream["packets"]["received"] == sent, stream
        assert stream["packets"]["lost"] == 0, stream
        assert stream["sha256"] == _sha256(directory / stream["file"])
    assert sidecar["mix"]["channels"] == list(LABELS)
    assert sidecar["mix"]["sha256"] == _sha256(directory / "mix.wav")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["inbound.wav", "outbound.wav", "mix.wav", "metadata-1.xml", "session.json"]
    )
    metadata = ElementTree.parse(directory / "metadata-1.xml").getroot()  # noqa: S314 - srs wrote it
    assert metadata.tag == "{urn:ietf:params:xml:ns:recording:1}recording"
    assert sidecar["metadata_updates"][0]["method"] == "INVITE"


def test_each_track_holds_its_own_tone(
    recorded_call: RecordedCall, two_tone_pcap: TwoTonePcap
) -> None:
    directory, sidecar = recorded_call.directory, recorded_call.sidecar
    tracks = {}
    for stream, freq, other, sent in zip(
        sidecar["streams"],
        two_tone_pcap.freqs_hz,
        reversed(two_tone_pcap.freqs_hz),
        two_tone_pcap.packets,
        strict=True,
    ):
        path = directory / stream["file"]
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (RATE_HZ, 1, "PCM_16")
        samples, _ = sf.read(path, dtype="int16")
        tracks[stream["label"]] = samples
        assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq, abs=5), path
        # The other stream's tone does not leak in.
        assert band_energy_ratio(samples, RATE_HZ, freq, other) > 100, path
        # Every packet's audio is there, in one piece: the tone spans the packets sent.
        span = loud_span(samples)
        assert span is not None, f"{path} is silent"
        assert span.gaps == 0, f"{path}: {span}"
        assert sent * PACKET_SAMPLES - 40 <= span.samples <= sent * PACKET_SAMPLES, span
        assert stream["duration_s"] == pytest.approx(len(samples) / RATE_HZ, abs=0.001)

    first, second = (len(tracks[label]) for label in LABELS)
    assert abs(first - second) <= PACKET_SAMPLES, (first, second)
    wall_clock_s = (_time(sidecar["ended_at"]) - _time(sidecar["started_at"])).total_seconds()
    for label, samples in tracks.items():
        assert len(samples) / RATE_HZ == pytest.approx(wall_clock_s, abs=0.04), label


def test_mix_is_the_two_tracks_left_and_right(recorded_call: RecordedCall) -> None:
    directory, sidecar = recorded_call.directory, recorded_call.sidecar
    info = sf.info(directory / "mix.wav")
    assert (info.samplerate, info.channels, info.subtype) == (RATE_HZ, 2, "PCM_16")
    mix, _ = sf.read(directory / "mix.wav", dtype="int16")
    left_label, right_label = sidecar["mix"]["channels"]
    left, _ = sf.read(directory / f"{left_label}.wav", dtype="int16")
    right, _ = sf.read(directory / f"{right_label}.wav", dtype="int16")
    assert len(mix) == max(len(left), len(right))
    # Side by side, sample for sample, the shorter one padded with silence at its end.
    assert np.array_equal(mix[: len(left), 0], left)
    assert np.array_equal(mix[: len(right), 1], right)
    assert not mix[len(left) :, 0].any() and not mix[len(right) :, 1].any()
    assert dominant_frequency(mix[:, 0], RATE_HZ) == pytest.approx(440, abs=5)
    assert dominant_frequency(mix[:, 1], RATE_HZ) == pytest.approx(1000, abs=5)


def test_wav_headers_match_their_data(recorded_call: RecordedCall) -> None:
    directory = recorded_call.directory
    for name in ("inbound.wav", "outbound.wav", "mix.wav"):
        layout = riff_layout(directory / name)
        assert layout.riff_size == layout.file_bytes - 8, name
        assert layout.data_offset + layout.data_size == layout.file_bytes, name
        assert layout.frames == sf.info(directory / name).frames, name


def test_the_pcap_streams_are_what_sipp_sent(two_tone_pcap: TwoTonePcap) -> None:
    """The input itself: two µ-law streams, one SSRC each, consecutive sequence numbers."""
    pcap = read_pcap(two_tone_pcap.path)
    for port in (two_tone_pcap.base_port, two_tone_pcap.base_port + 2):
        payloads = [r.payload for r in pcap.records if r.dst_port == port]
        assert len({p[8:12] for p in payloads}) == 1
        seqs = [int.from_bytes(p[2:4], "big") for p in payloads]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
