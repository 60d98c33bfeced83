"""session.json: the model, its JSON, the shipped schema and the atomic writer."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from srs.errors import UsageError
from srs.recording.sidecar import (
    MAX_CUSTOM_PARAMETERS,
    MAX_TEXT_CHARS,
    DtmfEvent,
    EndReason,
    MetadataUpdate,
    MixRecord,
    PacketCounts,
    SessionSidecar,
    SessionStatus,
    SidecarFormatError,
    Source,
    StreamOut,
    format_time,
    load_session_schema,
    read_sidecar,
    sha256_file,
    write_sidecar,
)
from srs.recording.wav import RecordingFormatError, RecordingIOError
from tests.recording.sidecars import STARTED_AT, recording_sidecar, stream, twilio_sidecar

KEY_LIKE = "inline:WVNfX1+zZW1j"  # what an a=crypto key parameter looks like (RFC 4568 §9.2)
ENDED_AT = datetime(2026, 11, 23, 10, 20, 1, tzinfo=UTC)
SCHEMA = load_session_schema()
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def complete(sidecar: SessionSidecar) -> SessionSidecar:
    return replace(
        sidecar, status=SessionStatus.COMPLETE, ended_at=ENDED_AT, end_reason=EndReason.BYE
    )


def test_schema_is_valid_draft_2020_12_and_matches_the_shipped_file() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    shipped = Path(__file__).parents[2] / "srs" / "schemas" / "session.schema.json"
    assert json.loads(shipped.read_text()) == SCHEMA
    assert SCHEMA["properties"]["schema"]["const"] == "srs-session/1"


def test_minimal_recording_sidecar_json() -> None:
    doc = recording_sidecar().to_dict()
    VALIDATOR.validate(doc)
    assert doc == {
        "schema": "srs-session/1",
        "status": "recording",
        "call_id": "c1@0.0.0.0",
        "from": None,
        "to": None,
        "request_uri": None,
        "source": None,
        "user_agent": None,
        "siprec": {"session_id": None, "group_id": None},
        "twilio": None,
        "custom_parameters": {},
        "participants": [],
        "streams": [],
        "mix": None,
        "mix_skipped_reason": None,
        "started_at": "2026-11-23T10:15:00.250Z",
        "ended_at": None,
        "end_reason": None,
        "metadata_updates": [],
        "dtmf": [],
        "streams_out": [],
        "error": None,
    }


def test_streams_out_round_trip_and_older_sidecars_without_them_still_read() -> None:
    out = StreamOut("wss://consumer.example:443/media", "twilio", ENDED_AT, 59_980, 40, 1)
    sidecar = replace(complete(twilio_sidecar()), streams_out=(out,))
    doc = sidecar.to_dict()
    VALIDATOR.validate(doc)
    assert doc["streams_out"] == [{
        "url": "wss://consumer.example:443/media", "format": "twilio",
        "connected_at": "2026-11-23T10:20:01.000Z", "media_ms_sent": 59_980,
        "media_ms_dropped": 40, "reconnects": 1}]
    assert SessionSidecar.from_dict(doc) == sidecar
    del doc["streams_out"]
    VALIDATOR.validate(doc)
    assert SessionSidecar.from_dict(doc).streams_out == ()
    doc["streams_out"] = [{"url": "ws://x:80/", "format": "twilio", "connected_at": None,
                           "media_ms_sent": "5", "media_ms_dropped": 0, "reconnects": 0}]
    with pytest.raises(ValueError, match=r"streams_out\[0\]\.media_ms_sent"):
        SessionSidecar.from_dict(doc)


def test_full_sidecar_json_validates_and_round_trips() -> None:
    sidecar = complete(twilio_sidecar())
    doc = sidecar.to_dict()
    VALIDATOR.validate(doc)
    assert doc["from"] == "<sip:+15550001111@twilio.com>;tag=1"
    assert doc["source"] == {"address": "54.172.60.1", "port": 5061, "transport": "tls"}
    assert doc["streams"][0] == {
        "label": "inbound_track",
        "file": "inbound_track.wav",
        "codec": "PCMU",
        "clock_rate": 8000,
        "sample_rate": 8000,
        "srtp": "AES_CM_128_HMAC_SHA1_80",
        "participant": "p1",
        "ssrcs": [0x12345678, 0xFFFFFFFF],
        "packets": {
            "received": 500,
            "lost": 2,
            "duplicated": 1,
            "reordered": 3,
            "late": 1,
            "dropped": {"srtp_auth": 4},
            "rtcp": 0,
            "unoffered_static": 0,
        },
        "jitter_ms": 1.5,
        "duration_s": 10.0,
        "trimmed_samples": 0,
        "resyncs": {"timestamp_jump": 1},
        "dtmf_dropped": 0,
        "decode_errors": 0,
        "sha256": None,
    }
    assert doc["mix"] == {
        "file": "mix.wav",
        "channels": ["inbound_track", "outbound_track"],
        "sha256": None,
    }
    assert doc["metadata_updates"][1] == {
        "n": 2,
        "received_at": "2026-11-23T10:15:00.250Z",
        "file": "metadata-2.xml",
        "method": "UPDATE",
    }
    assert doc["dtmf"] == [
        {"digit": "5", "at_s": 3.25, "duration_ms": 120, "label": "inbound_track"},
        {"digit": "flash", "at_s": 4.0, "duration_ms": 0, "label": None},
    ]
    assert (doc["status"], doc["end_reason"], doc["ended_at"]) == (
        "complete",
        "bye",
        "2026-11-23T10:20:01.000Z",
    )
    assert SessionSidecar.from_dict(json.loads(json.dumps(doc))) == sidecar


def test_failed_sidecar_carries_its_error() -> None:
    failed = replace(
        recording_sidecar(),
        status=SessionStatus.FAILED,
        ended_at=ENDED_AT,
        end_reason=EndReason.ERROR,
        error="write /r/a.wav: [ENOSPC] No space left on device",
    )
    doc = failed.to_dict()
    VALIDATOR.validate(doc)
    assert doc["error"] == "write /r/a.wav: [ENOSPC] No space left on device"


def test_network_text_is_bounded_at_the_json_boundary() -> None:
    params = {f"k{i:03}": "v" * 5000 for i in range(MAX_CUSTOM_PARAMETERS + 20)}
    sidecar = replace(recording_sidecar(), user_agent="U" * 5000, custom_parameters=params)
    doc = sidecar.to_dict()
    VALIDATOR.validate(doc)
    assert doc["user_agent"] == "U" * MAX_TEXT_CHARS
    assert list(doc["custom_parameters"]) == [f"k{i:03}" for i in range(MAX_CUSTOM_PARAMETERS)]
    assert doc["custom_parameters"]["k000"] == "v" * MAX_TEXT_CHARS


def test_format_time_is_rfc3339_utc() -> None:
    moment = datetime.fromisoformat("2026-11-23T05:15:00.123456-05:00")
    assert format_time(moment) == "2026-11-23T10:15:00.123Z"
    with pytest.raises(UsageError, match="time zone"):
        format_time(datetime(2026, 1, 1))


def _mutated(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(complete(twilio_sidecar()).to_dict())
    change(doc)
    return doc


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.pop("call_id"), id="missing-field"),
        pytest.param(lambda d: d.update(extra=1), id="unknown-field"),
        pytest.param(lambda d: d.update(schema="srs-session/2"), id="schema-version"),
        pytest.param(lambda d: d.update(status="done"), id="status"),
        pytest.param(lambda d: d.update(status="recording"), id="recording-with-end"),
        pytest.param(lambda d: d.update(ended_at=None), id="complete-without-end"),
        pytest.param(lambda d: d.update(status="failed"), id="failed-without-error"),
        pytest.param(lambda d: d.update(error="boom"), id="error-when-complete"),
        pytest.param(lambda d: d.update(end_reason="hangup"), id="end-reason"),
        pytest.param(lambda d: d.update(started_at="2026-11-23T10:15:00+01:00"), id="not-utc"),
        pytest.param(lambda d: d.update(started_at="yesterday"), id="not-a-time"),
        pytest.param(lambda d: d["source"].update(port=70000), id="port"),
        pytest.param(lambda d: d["source"].update(transport="sctp"), id="transport"),
        pytest.param(lambda d: d["streams"][0].update(srtp=KEY_LIKE), id="key"),
        pytest.param(lambda d: d["streams"][0].update(file="../x.wav"), id="file-path"),
        pytest.param(lambda d: d["streams"][0].update(sha256="ABC"), id="sha256"),
        pytest.param(lambda d: d["streams"][0].update(ssrcs=[2**32]), id="ssrc"),
        pytest.param(lambda d: d["streams"][0]["packets"].update(lost=-1), id="negative-count"),
        pytest.param(lambda d: d["mix"].update(channels=["a"]), id="mix-channels"),
        pytest.param(lambda d: d["dtmf"][0].update(digit="E"), id="dtmf-digit"),
        pytest.param(lambda d: d["metadata_updates"][0].update(n=0), id="metadata-n"),
        pytest.param(lambda d: d.update(custom_parameters={"k": 1}), id="custom-not-string"),
        pytest.param(lambda d: d.update(user_agent="U" * 1025), id="text-too-long"),
    ],
)
def test_schema_rejects_invalid_sidecars(change: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(_mutated(change))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: replace(s, ended_at=ENDED_AT), "ended_at and end_reason"),
        (lambda s: replace(s, status=SessionStatus.COMPLETE), "ended_at and end_reason"),
        (lambda s: replace(complete(s), error="x"), "error is set exactly"),
        (lambda s: replace(s, streams=(s.streams[0], s.streams[0])), "not unique"),
        (lambda s: replace(s, mix=MixRecord("mix.wav", ("a", "b"))), "not stream labels"),
        (lambda s: replace(s, started_at=datetime(2026, 1, 1)), "aware"),
        (lambda s: replace(s, source=Source("h", 65536, "udp")), "source port"),
        (lambda s: replace(s, source=Source("h", 5060, "sctp")), "transport"),
    ],
)
def test_inconsistent_sidecar_is_a_usage_error(build: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build(twilio_sidecar())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"file": "../x.wav"}, "not a sanitised name"),
        ({"srtp": KEY_LIKE}, "never key material"),
        ({"ssrcs": (2**32,)}, "32-bit"),
        ({"sha256": "0" * 63}, "hex SHA-256"),
        ({"clock_rate": 0}, "clock_rate"),
        ({"jitter_ms": -0.5}, "jitter_ms"),
    ],
)
def test_bad_stream_record_is_a_usage_error(changes: dict[str, Any], message: str) -> None:
    base = stream("in", "in.wav")
    with pytest.raises(UsageError, match=message):
        replace(base, **changes)


@pytest.mark.parametrize("counts", [{"lost": -1}, {"dropped": {"x": -1}}])
def test_negative_packet_counts_are_a_usage_error(counts: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="must not be negative"):
        PacketCounts(**counts)


def test_bad_mix_metadata_and_dtmf_records_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="mix file"):
        MixRecord("a/mix.wav", ("a", "b"))
    with pytest.raises(UsageError, match="hex SHA-256"):
        MixRecord("mix.wav", ("a", "b"), "x")
    with pytest.raises(UsageError, match="metadata update 0"):
        MetadataUpdate(0, STARTED_AT, "metadata-0.xml", "INVITE")
    with pytest.raises(UsageError, match="metadata update 1"):
        MetadataUpdate(1, STARTED_AT, "../m.xml", "INVITE")
    with pytest.raises(UsageError, match="SIP method"):
        MetadataUpdate(1, STARTED_AT, "metadata-1.xml", "invite")
    with pytest.raises(UsageError, match="DTMF"):
        DtmfEvent("E", 1.0, 100)
    with pytest.raises(UsageError, match="DTMF"):
        DtmfEvent("1", -1.0, 100)


def test_write_sidecar_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    write_sidecar(path, recording_sidecar())
    first = json.loads(path.read_text())
    VALIDATOR.validate(first)
    assert first["status"] == "recording"
    final = complete(twilio_sidecar())
    write_sidecar(path, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]
    assert read_sidecar(path) == final
    assert path.read_bytes().startswith(b'{\n  "schema": "srs-session/1",\n  "status": "complete"')


def test_write_sidecar_refuses_nan(tmp_path: Path) -> None:
    bad = recording_sidecar(streams=(replace(stream("a", "a.wav"), jitter_ms=float("nan")),))
    with pytest.raises(ValueError, match="Out of range float"):
        write_sidecar(tmp_path / "session.json", bad)
    assert list(tmp_path.iterdir()) == []


def test_write_sidecar_in_a_missing_directory_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingIOError) as caught:
        write_sidecar(tmp_path / "gone" / "session.json", recording_sidecar())
    assert caught.value.errno == 2  # ENOENT


def _write_doc(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "session.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(schema="srs-session/9"), "schema is not"),
        (lambda d: d.pop("siprec"), "siprec is missing"),
        (lambda d: d.update(call_id=7), "call_id is not a string"),
        (lambda d: d["source"].update(port="5061"), "source.port is not an integer"),
        (lambda d: d["source"].update(port=True), "source.port is not an integer"),
        (lambda d: d["streams"][0].update(jitter_ms="1"), r"streams\[0\].jitter_ms is not a num"),
        (lambda d: d.update(streams={}), "streams is not a list"),
        (lambda d: d.update(participants=[1]), r"participants\[0\]. is not an object"),
        (lambda d: d["participants"][0].update(sends=[1]), "sends is not a list of strings"),
        (lambda d: d["streams"][0].update(ssrcs=["1"]), "ssrcs is not a list of integers"),
        (lambda d: d["mix"].update(channels=["a"]), "1 labels, not 2"),
        (lambda d: d.update(status="paused"), "paused"),
        (lambda d: d.update(started_at="2026-11-23T10:15:00"), "no time zone"),
        (lambda d: d.update(started_at="soon"), "soon"),
        (lambda d: d.update(status="recording"), "ended_at and end_reason"),
    ],
)
def test_read_sidecar_rejects_what_it_cannot_trust(
    tmp_path: Path, change: Any, problem: str
) -> None:
    path = _write_doc(tmp_path, _mutated(change))
    with pytest.raises(SidecarFormatError, match=problem):
        read_sidecar(path)


def test_read_sidecar_rejects_non_json_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    path.write_bytes(b'{"schema": "srs-ses')
    with pytest.raises(SidecarFormatError, match="Unterminated string"):
        read_sidecar(path)
    path.write_bytes(b'"\xff"')
    with pytest.raises(SidecarFormatError, match="can't decode byte 0xff"):
        read_sidecar(path)
    path.write_text("[]")
    with pytest.raises(SidecarFormatError, match="document is not an object"):
        read_sidecar(path)


def test_read_sidecar_is_bounded(tmp_path: Path) -> None:
    path = _write_doc(tmp_path, recording_sidecar().to_dict())
    size = path.stat().st_size
    assert read_sidecar(path, max_bytes=size) == recording_sidecar()
    with pytest.raises(SidecarFormatError, match=f"larger than {size - 1} bytes"):
        read_sidecar(path, max_bytes=size - 1)


def test_read_sidecar_errors_are_recording_errors(tmp_path: Path) -> None:
    assert issubclass(SidecarFormatError, RecordingFormatError)
    with pytest.raises(RecordingIOError) as caught:
        read_sidecar(tmp_path / "session.json")
    assert caught.value.errno == 2


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    content = bytes(range(256)) * 1000
    path.write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    assert sha256_file(path, chunk_bytes=1000) == expected
    assert sha256_file(path) == expected
    with pytest.raises(RecordingIOError):
        sha256_file(tmp_path / "missing")
