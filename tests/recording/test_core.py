"""The recording core driven directly: a fake clock, real files, no sockets or event loop.

Each test runs the whole lifecycle of a session in microseconds of simulated time and
checks what a user would: the SIP answers srs sent, the files on disk (audio sample by
sample), the sidecar, and the lifecycle outputs.  Tests that assert something did *not*
happen first check an event that did.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from srs.codecs.g711 import pcmu_decode, pcmu_encode
from srs.errors import UsageError
from srs.recording import jobs
from srs.recording.outputs import Finished, Rejected, Started
from srs.recording.policy import TICK_S, TRANSITIONS, Lifecycle, check_transition
from srs.recording.wav import RecordingIOError, WavWriter
from tests.recording.corehost import CoreHost, job_kinds
from tests.sipclient import rtp_packet, sdp_offer, tone

REPO = Path(__file__).parents[2]

SRC = ("192.0.2.10", 40000)
OTHER = ("127.0.0.1", 41000)  # the offer's c= address, another port


def send_tone(host: CoreHost, index: int, packets: int, *, freq: float = 1000.0,
              seq: int = 0, source: tuple[str, int] = SRC, ssrc: int = 0x1111) -> np.ndarray:
    """``packets`` 20 ms PCMU packets to stream ``index``, 20 ms apart on the fake clock;
    returns the audio as the recorder decodes it."""
    sent = []
    stream = host.stream(index)
    for n in range(packets):
        if host.streams.get(stream.port) is not stream:
            break  # released: its socket is closed
        pcm = tone(freq, (seq + n) * 160, 160)
        payload = pcmu_encode(pcm)
        stream.receive(rtp_packet(seq + n, (seq + n) * 160, ssrc, payload), source, host.now)
        sent.append(pcmu_decode(payload))
        host.advance(0.02)
    return np.concatenate(sent)


def disk_error(action: str) -> RecordingIOError:
    return RecordingIOError(action, Path("/rec/x.wav"), OSError(errno.ENOSPC, "No space left"))


def sidecar(directory: Path) -> dict:
    return json.loads((directory / "session.json").read_text())


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    return data


@pytest.fixture
def host(tmp_path: Path) -> CoreHost:
    return CoreHost(tmp_path / "rec")


def test_a_call_is_answered_recorded_and_finalised(host: CoreHost) -> None:
    origin = host.now
    dialog = host.invite()
    answer = host.final_for(dialog, "INVITE")
    assert answer is not None and answer.status == 200
    assert answer.body.decode().count("a=recvonly") == 2
    assert any(isinstance(e, Started) for e in host.events)
    host.advance(0.1)
    audio = send_tone(host, 0, 100, freq=1000.0)  # 2 s, ticks write on the way
    [directory] = host.sessions()
    assert sidecar(directory)["status"] == "recording"
    assert job_kinds(host).count("WriteBatch") >= 2
    host.bye(dialog)
    bye_ok = host.final_for(dialog, "BYE")
    assert bye_ok is not None and bye_ok.status == 200
    [finished] = host.finished()
    assert finished.status.value == "complete" and finished.directory == str(directory)
    doc = sidecar(directory)
    assert doc["status"] == "complete" and doc["end_reason"] == "bye"
    assert doc["mix"]["file"] == "mix.wav"
    track = read(directory / "inbound.wav")
    start = round(0.1 * 8000)
    np.testing.assert_array_equal(track[start:start + len(audio)], audio)
    assert not track[:start].any()  # silence from the INVITE to the first packet
    duration = host.now - origin
    assert abs(len(read(directory / "outbound.wav")) - duration * 8000) <= 1
    assert host.recorder.idle and host.streams == {}


def test_a_short_telephone_event_is_dropped_and_the_session_completes(host: CoreHost) -> None:
    """A 2-byte RFC 4733 payload cannot be read as a key press: it is counted, the key
    press after it and the audio around it are recorded, the session completes."""
    dialog = host.invite()
    send_tone(host, 0, 5)
    stream = host.stream(0)
    event = bytes([5, 0x8A, 0, 160])  # key 5, end, volume 10, 160 samples
    stream.receive(rtp_packet(5, 800, 0x1111, b"\x05\x0a", pt=101), SRC, host.now)
    for _ in range(3):
        stream.receive(rtp_packet(6, 800, 0x1111, event, pt=101), SRC, host.now)
    host.advance(0.02)
    send_tone(host, 0, 5, seq=7)
    host.bye(dialog)
    [directory] = host.sessions()
    doc = sidecar(directory)
    assert doc["status"] == "complete"
    [track] = [t for t in doc["streams"] if t["label"] == "inbound"]
    # RFC 4733 §2.5.1.4: the end packet three times, the repeats are duplicates.
    assert track["packets"]["dropped"] == {"telephone_event": 1, "duplicate": 2}
    assert [d["digit"] for d in doc["dtmf"]] == ["5"]


def test_the_packet_playing_at_the_bye_is_kept_whole(host: CoreHost) -> None:
    """The sender's last packet started 5 ms before its BYE: all of its 20 ms are recorded,
    not the first 5 (the tracks run to the end of that packet, at most TAIL_GRACE_S on),
    and every track of the session keeps the same length."""
    origin = host.now
    dialog = host.invite(["inbound", "outbound"])
    host.advance(0.1)
    stream = host.stream(0)
    sent = []
    for n in range(10):
        payload = pcmu_encode(tone(1000.0, n * 160, 160))
        stream.receive(rtp_packet(n, n * 160, 0x1111, payload), SRC, host.now)
        sent.append(pcmu_decode(payload))
        if n < 9:
            host.advance(0.02)
    host.advance(0.005)
    host.bye(dialog)
    [directory] = host.sessions()
    track = read(directory / "inbound.wav")
    start = round(0.1 * 8000)
    audio = np.concatenate(sent)
    np.testing.assert_array_equal(track[start:], audio)
    assert len(track) == start + len(audio) > round((host.now - origin) * 8000)
    assert len(read(directory / "outbound.wav")) == len(track) == len(read(directory / "mix.wav"))
    assert [r["trimmed_samples"] for r in sidecar(directory)["streams"]] == [0, 0]


def test_ticks_fall_on_the_sessions_grid(host: CoreHost) -> None:
    origin = host.now
    host.invite()
    assert host.recorder.next_timer() == origin + TICK_S
    host.advance(3.5)
    assert host.recorder.next_timer() == origin + 4 * TICK_S
    # A late loop skips ticks instead of running them back to back.
    host.execute(host.recorder.handle_timer(origin + 9.7))
    assert host.recorder.next_timer() == origin + 10 * TICK_S


def test_rtp_inactivity_ends_the_session_with_a_bye(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"rtp_timeout_s": 5.0})
    host.invite()
    host.advance(0.1)
    send_tone(host, 0, 10)
    host.advance(4.8)  # the tick at +5 s: 4.7 s after the last packet
    assert host.byes() == []
    host.advance(1.0)  # the tick at +6 s: 5.7 s quiet
    [_bye] = host.byes()
    [directory] = host.sessions()
    doc = sidecar(directory)
    assert doc["status"] == "complete" and doc["end_reason"] == "timeout"
    assert "session_expired" in host.log_events()


def test_a_held_session_does_not_expire_but_its_maximum_length_does(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"rtp_timeout_s": 2.0, "max_session_s": 30.0})
    dialog = host.invite(["inbound"])
    held = sdp_offer([40000], ["inbound"], direction="inactive", version=2)
    assert host.reinvite(dialog, held).status == 200
    host.advance(20.0)
    assert host.byes() == []  # on hold: no media is expected
    host.advance(11.0)
    assert len(host.byes()) == 1
    [directory] = host.sessions()
    assert sidecar(directory)["end_reason"] == "timeout"


def test_a_second_source_is_counted_until_the_first_goes_quiet(host: CoreHost) -> None:
    host.invite(["inbound"])
    host.advance(0.1)
    send_tone(host, 0, 5)
    stream = host.stream(0)
    stream.receive(rtp_packet(900, 900 * 160, 0x2222, b"\xff" * 160), OTHER, host.now)
    assert stream.other_source_packets == 1  # the latched source sent 20 ms ago
    host.advance(0.6)
    send_tone(host, 0, 5, seq=5, source=OTHER)  # the old source is quiet: relatched
    assert stream.latched == OTHER and stream.other_source_packets == 1


def test_a_reinvite_adds_a_stream_and_keeps_the_old_port(host: CoreHost) -> None:
    dialog = host.invite(["inbound"])
    [first_port] = host.streams
    offer = sdp_offer([40000, 40002], ["inbound", "outbound"], version=2)
    answer = host.reinvite(dialog, offer)
    assert answer.status == 200
    ports = [int(line.split()[1]) for line in answer.body.decode().splitlines()
             if line.startswith("m=")]
    assert ports[0] == first_port and ports[1] not in (0, first_port)
    assert sorted(s.index for s in host.streams.values()) == [0, 1]


def test_an_update_with_an_unacceptable_offer_is_refused_and_the_call_goes_on(
        host: CoreHost) -> None:
    dialog = host.invite(["inbound"])
    bad = "v=0\r\no=src 42 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
          "m=video 40000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    assert host.reinvite(dialog, bad, method="UPDATE").status == 488
    assert "update_rejected" in host.log_events()
    host.advance(0.1)
    send_tone(host, 0, 5)  # still recording on the same stream
    host.bye(dialog)
    [directory] = host.sessions()
    assert sidecar(directory)["status"] == "complete"


def test_an_offer_with_nothing_acceptable_gets_488_and_leaves_no_directory(
        host: CoreHost) -> None:
    video = "v=0\r\no=src 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
            "m=video 40000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    dialog = host.invite(sdp=video, with_metadata=False)
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 488
    assert "DiscardFiles" in job_kinds(host)  # its directory existed, and was removed
    assert "session_discarded" in host.log_events()
    assert host.sessions() == [] and host.recorder.idle
    assert not any(isinstance(e, Finished) for e in host.events)


def test_the_session_limit_answers_503_without_touching_the_disk(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"max_sessions": 1})
    host.invite(["inbound"])
    jobs_before = len(host.jobs)
    second = host.invite(["inbound"])
    final = host.final_for(second, "INVITE")
    assert final is not None and final.status == 503
    assert final.headers.get("Retry-After") == "10"
    assert Rejected("limit") in host.events
    assert len(host.jobs) == jobs_before


def test_storage_failing_at_set_up_answers_503_and_fails_the_session(host: CoreHost) -> None:
    host.fail_job = lambda job: (disk_error("create directory")
                                 if isinstance(job, jobs.SetUpFiles) else None)
    dialog = host.invite()
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 503
    assert host.sessions() == [] and not list(host.directory.rglob("*.wav"))
    assert "session_storage_failed" in host.log_events()
    assert host.recorder.idle and host.streams == {}


# The set-up's one file job under RLIMIT_FSIZE: the directory, metadata-1.xml (905 bytes)
# and the WAV headers fit, session.json (over 2 KB) does not (EFBIG).
SETUP_EFBIG_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from tests.recording.corehost import CoreHost
    from tests.recording.test_streams_come_and_go import open_wavs

    root = Path(sys.argv[1])
    host = CoreHost(root)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))
    dialog = host.invite()
    final = host.final_for(dialog, "INVITE")
    print(json.dumps({
        "status": final.status if final is not None else None,
        "events": host.log_events(),
        "errors": [e.fields.get("error", "") for e in host.logs if e.level == "error"],
        "open_wavs": open_wavs(root),
        "streams": len(host.streams),
        "idle": host.recorder.idle,
    }))
    """
)


def test_a_set_up_that_fails_part_way_closes_its_files_and_answers_503(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SETUP_EFBIG_CHILD, str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    found = json.loads(result.stdout)
    assert found["status"] == 503
    assert "session_storage_failed" in found["events"]
    assert "EFBIG" in found["errors"][0] and "session.json" in found["errors"][0]
    assert found["open_wavs"] == 0 and found["streams"] == 0 and found["idle"]
    [directory] = [p.parent for p in tmp_path.rglob("metadata-1.xml")]
    assert sorted(p.name for p in directory.glob("*.wav")) == ["inbound.wav", "outbound.wav"]


def test_a_bug_at_set_up_is_500_with_its_traceback_logged_not_a_peer_error(
        host: CoreHost) -> None:
    host.fail_job = lambda job: (ZeroDivisionError("bug")
                                 if isinstance(job, jobs.SetUpFiles) else None)
    dialog = host.invite()
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 500
    [entry] = [e for e in host.logs if e.event == "session_setup_failed"]
    assert isinstance(entry.error, ZeroDivisionError)
    assert host.recorder.idle


def test_storage_failing_while_recording_sends_bye_and_keeps_what_was_written(
        host: CoreHost, monkeypatch: pytest.MonkeyPatch) -> None:
    dialog = host.invite(["inbound"])
    host.advance(0.1)
    audio = send_tone(host, 0, 75)  # 1.5 s: at least one tick wrote

    def full(self: object, pcm: object) -> None:
        raise disk_error("write")

    monkeypatch.setattr(WavWriter, "append", full)
    send_tone(host, 0, 60, seq=75)
    assert len(host.byes()) == 1
    [directory] = host.sessions()
    doc = sidecar(directory)
    assert doc["status"] == "failed" and doc["end_reason"] == "error"
    assert doc["error"].startswith("write ") and "ENOSPC" in doc["error"]
    track = read(directory / "inbound.wav")
    start = round(0.1 * 8000)
    written = len(track) - start
    assert written > 0
    np.testing.assert_array_equal(track[start:], audio[:written])
    [finished] = host.finished()
    assert finished.status.value == "failed"
    host.bye(dialog)  # the client's BYE now finds no dialog
    assert host.final_for(dialog, "BYE").status == 481


def test_a_bye_during_a_write_finishes_after_that_write(host: CoreHost) -> None:
    dialog = host.invite(["inbound"])
    host.advance(0.1)
    send_tone(host, 0, 10)
    host.hold = True
    host.advance(1.0)  # a tick: its WriteBatch is held, as if the disk were slow
    [held] = host.held
    assert isinstance(held.work, jobs.WriteBatch)
    host.bye(dialog)
    assert host.final_for(dialog, "BYE").status == 200
    assert len(host.held) == 1  # the finish waits for the write in flight
    host.release()
    assert isinstance(host.held[0].work, jobs.FinishFiles)
    host.hold = False
    host.release()
    [directory] = host.sessions()
    assert sidecar(directory)["status"] == "complete"
    assert job_kinds(host)[-3:] == ["WriteBatch", "FinishFiles", "WriteSidecar"]


def test_a_cancel_before_the_answer_discards_the_session(host: CoreHost) -> None:
    host.hold = True
    dialog = host.invite(["inbound"])
    host.release(1)  # the ports are bound, the files are pending
    [pending] = host.held
    assert isinstance(pending.work, jobs.SetUpFiles) and len(host.streams) == 1
    host.request("CANCEL", dialog, cseq=1)
    assert host.final_for(dialog, "INVITE").status == 487
    host.hold = False
    host.release()
    assert "invite_gone_before_answer" in host.log_events()
    assert host.sessions() == [] and host.recorder.idle and host.streams == {}


def test_shutdown_finishes_set_up_first_then_ends_every_session(host: CoreHost) -> None:
    recording = host.invite(["inbound"])
    host.hold = True
    setting_up = host.invite(["inbound"])
    assert host.recorder.active == 2
    host.execute(host.recorder.shutdown(host.now))
    assert len(host.byes()) == 1  # the recording one at once
    refused = host.invite(["inbound"])
    assert host.final_for(refused, "INVITE").status == 503
    assert Rejected("draining") in host.events
    host.hold = False
    host.release()
    assert host.final_for(setting_up, "INVITE").status == 200
    assert len(host.byes()) == 2
    assert host.recorder.idle
    reasons = sorted(sidecar(d)["end_reason"] for d in host.sessions())
    assert reasons == ["shutdown", "shutdown"]
    assert recording.call_id != setting_up.call_id


def test_no_ack_for_our_2xx_ends_the_session_with_a_bye(host: CoreHost) -> None:
    # RFC 3261 §13.3.1.4: the 2xx is retransmitted until Timer H, then the dialog ends.
    dialog = host.invite(["inbound"], ack=False)
    assert host.final_for(dialog, "INVITE").status == 200
    host.advance(31.0)
    assert host.byes() == []
    assert sum(1 for m in host.sent if getattr(m, "status", 0) == 200) > 1  # retransmitted
    host.advance(2.0)
    byes = host.requests_sent("BYE")  # one BYE, retransmitted over UDP (Timer E)
    assert byes and len({b.top_via.branch for b in byes}) == 1
    [directory] = host.sessions()
    assert sidecar(directory)["end_reason"] == "timeout"


def test_the_lifecycle_table_allows_only_its_moves() -> None:
    assert TRANSITIONS[Lifecycle.FINISHED] == frozenset()
    check_transition(Lifecycle.SETTING_UP, Lifecycle.RECORDING)
    with pytest.raises(UsageError, match="from finished to recording"):
        check_transition(Lifecycle.FINISHED, Lifecycle.RECORDING)
    with pytest.raises(UsageError):
        check_transition(Lifecycle.RECORDING, Lifecycle.DISCARDED)


def test_a_re_anchor_is_written_into_the_sidecar(host: CoreHost) -> None:
    """A sender that restarts its timestamps 10 s ahead (RFC 3550 §5.1 random origin)
    re-anchors the track: the sidecar says so, by reason, where audio may have moved."""
    dialog = host.invite(["inbound"], sdp=sdp_offer([40000], ["inbound"]))
    stream = host.stream(0)
    for n in range(20):
        ts = n * 160 if n < 10 else 80_000 + n * 160
        stream.receive(rtp_packet(n, ts, 0x1111, pcmu_encode(tone(1000.0, n * 160, 160))),
                       SRC, host.now)
        host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    [record] = sidecar(directory)["streams"]
    assert record["resyncs"] == {"timestamp_jump": 1}
