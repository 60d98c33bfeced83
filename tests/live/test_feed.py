"""The live feed on the recording core, on the fake clock (tests/recording/corehost.py):
the core says when a session starts and ends streaming, the feed reads what the file
reads, and its chunks are the WAV's samples; a failing session still ends its stream."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from srs.codecs.g711 import pcmu_encode
from srs.live.feed import Chunk, SessionFeed
from srs.live.formats import LiveFormat
from srs.recording.outputs import EndLive, Started, StartLive, WaitLive
from srs.recording.wav import WavWriter
from tests.recording.corehost import CoreHost, job_kinds
from tests.recording.test_core import disk_error, read, send_tone
from tests.sipclient import sdp_offer


class Listener:
    """What the shell does with StartLive and EndLive, minus the sockets."""

    def __init__(self, live_format: LiveFormat = "l16") -> None:
        self.format: LiveFormat = live_format
        self.feed: SessionFeed | None = None
        self.chunks: list[Chunk] = []
        self.ended = False

    def __call__(self, output: Any) -> None:
        if isinstance(output, StartLive):
            self.feed = SessionFeed(output.session, self.format, ("both",), "MZ" + "0" * 32)
        else:
            assert self.feed is not None
            chunks, _ = self.feed.finish(output.at)
            self.chunks.extend(chunks)
            self.ended = True

    def pump(self, now: float) -> None:
        assert self.feed is not None
        chunks, _ = self.feed.pump(now)
        self.chunks.extend(chunks)

    def track(self, index: int) -> np.ndarray:
        mine = [c for c in self.chunks if c.track == index]
        starts = [c.start_sample for c in mine]
        assert starts == sorted(starts) and all(
            a.start_sample + len(a.pcm) == b.start_sample for a, b in itertools.pairwise(mine))
        if self.format == "twilio":  # mu-law octets, or PCM after a switch: as mu-law
            return np.frombuffer(b"".join(
                c.pcm if isinstance(c.pcm, bytes) else pcmu_encode(c.pcm) for c in mine),
                dtype=np.uint8)
        return np.concatenate([c.pcm for c in mine])


@pytest.fixture
def live(tmp_path: Path) -> tuple[CoreHost, Listener]:
    listener = Listener()
    return CoreHost(tmp_path / "rec", {"live": True}, on_live=listener), listener


def test_a_streamed_session_starts_after_the_answer_and_its_chunks_are_the_wav(
        live: tuple[CoreHost, Listener]) -> None:
    host, listener = live
    dialog = host.invite()
    kinds = [type(e).__name__ for e in host.events]
    assert kinds.index("StartLive") == kinds.index("Started") + 1
    host.advance(0.1)
    for _ in range(5):  # 2.5 s of tone, pumped every 20 ms between packets
        send_tone(host, 0, 25)
        listener.pump(host.now)
    host.bye(dialog)
    assert listener.ended
    jobs = job_kinds(host)
    finish = jobs.index("FinishFiles")
    assert jobs[finish + 1:finish + 3] == ["WaitLive", "WriteSidecar"]
    [directory] = host.sessions()
    for index, name in enumerate(("inbound", "outbound")):
        wav = read(directory / f"{name}.wav")
        streamed = listener.track(index)
        n = min(len(wav), len(streamed))
        assert n >= len(wav) - 160
        np.testing.assert_array_equal(streamed[:n], wav[:n])
    assert np.abs(listener.track(0)).max() > 1000  # the tone, not only silence


def test_a_session_whose_storage_fails_still_ends_its_stream(
        live: tuple[CoreHost, Listener], monkeypatch: pytest.MonkeyPatch) -> None:
    host, listener = live
    host.invite(["inbound"])
    host.advance(0.1)
    send_tone(host, 0, 75)

    def full(self: object, pcm: object) -> None:
        raise disk_error("write")

    monkeypatch.setattr(WavWriter, "append", full)
    send_tone(host, 0, 60, seq=75)
    assert [type(e).__name__ for e in host.events].count("EndLive") == 1
    assert listener.ended
    assert host.recorder.idle


def test_without_stream_url_the_core_says_nothing_of_live(tmp_path: Path) -> None:
    host = CoreHost(tmp_path / "rec")
    dialog = host.invite()
    host.advance(0.5)
    host.bye(dialog)
    assert not any(isinstance(e, StartLive | EndLive) for e in host.events)
    assert any(isinstance(e, Started) for e in host.events)
    assert not any(isinstance(j, WaitLive) for j in host.jobs)


def test_g711_goes_to_twilio_as_its_own_octets_and_a_codec_switch_goes_on_decoded(
        tmp_path: Path) -> None:
    listener = Listener("twilio")
    host = CoreHost(tmp_path / "rec", {"live": True}, on_live=listener)
    dialog = host.invite(["inbound"])
    host.advance(0.1)
    for _ in range(3):
        send_tone(host, 0, 25)
        listener.pump(host.now)
    octets = [c for c in listener.chunks if isinstance(c.pcm, bytes)]
    assert octets and len(octets) == len(listener.chunks)  # no decode, no encode
    # A new offer maps G.722 beside PCMU: from here the track is decoded (and resampled
    # where it must be); the sender stays on PCMU.
    offer = sdp_offer([40000], ["inbound"], version=2, codecs="0 9 101",
                      formats=["rtpmap:0 PCMU/8000", "rtpmap:9 G722/8000",
                               "rtpmap:101 telephone-event/8000"])
    assert host.reinvite(dialog, offer).status == 200
    for i in range(3):
        send_tone(host, 0, 25, seq=75 + i * 25)
        listener.pump(host.now)
    host.bye(dialog)
    assert any(not isinstance(c.pcm, bytes) for c in listener.chunks)
    [directory] = host.sessions()
    wav = np.frombuffer(pcmu_encode(read(directory / "inbound.wav")), dtype=np.uint8)
    streamed = listener.track(0)
    n = min(len(wav), len(streamed))
    assert n >= len(wav) - 160
    np.testing.assert_array_equal(streamed[:n], wav[:n])
