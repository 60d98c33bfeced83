"""Telephone events in the sidecar are bounded: segments of one press coalesce, at most
MAX_DTMF_EVENTS presses are listed per stream, the rest are counted (dtmf_dropped)."""

from __future__ import annotations

import json
from pathlib import Path

from srs import codecs
from srs.recording.output import MAX_DTMF_EVENTS, StreamOutput
from srs.rtp.dtmf import TelephoneEvent
from srs.rtp.track import Placed
from tests.recording.corehost import PEER, CoreHost
from tests.sipclient import rtp_packet


def event(offset: int, code: int, duration: int) -> Placed:
    payload = bytes(TelephoneEvent(code, True, 10, duration))
    return Placed(offset, 101, payload, 0x5151, offset, is_event=True)


def output(tmp_path: Path) -> StreamOutput:
    out = StreamOutput(tmp_path / "t.wav", {0: codecs.PCMU}, 8000, 8000)
    out.label = "caller"
    return out


def test_segments_of_one_long_press_are_one_event(tmp_path: Path) -> None:
    # RFC 4733 §2.5.1.3: a press longer than 0xFFFF units goes out as segments that abut.
    out = output(tmp_path)
    presses = [event(8000, 5, 8000), event(16000, 5, 8000), event(24000, 5, 4000),
               event(28800, 5, 800),  # the same key again 100 ms later: a new press
               event(30400, 7, 800)]
    out.add_last(presses)
    out.finish(40000)
    assert [(e.digit, e.at_s, e.duration_ms) for e in out.dtmf_events] == [
        ("5", 1.0, 2500), ("5", 3.6, 100), ("7", 3.8, 100)]
    assert out.dtmf_dropped == 0


def test_presses_past_the_cap_are_counted_not_listed(tmp_path: Path) -> None:
    out = output(tmp_path)
    presses = [event(800 * i, 1 + i % 2, 400) for i in range(MAX_DTMF_EVENTS + 250)]
    out.add_last(presses)
    out.finish(800 * len(presses))
    assert len(out.dtmf_events) == MAX_DTMF_EVENTS and out.dtmf_dropped == 250
    assert out.dtmf_events[-1].at_s == round(800 * (MAX_DTMF_EVENTS - 1) / 8000, 3)


def test_the_sidecar_says_how_many_presses_it_left_out(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"])
    stream = host.stream(0)
    for n in range(MAX_DTMF_EVENTS + 30):
        payload = bytes(TelephoneEvent(1 + n % 2, True, 10, 80))
        stream.receive(rtp_packet(n, n * 160, 0x5151, payload, pt=101), (PEER.host, 4000),
                       host.now)
        host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    assert len(doc["dtmf"]) == MAX_DTMF_EVENTS
    assert doc["streams"][0]["dtmf_dropped"] == 30
