"""RFC 4733 telephone events: payloads, and one event per key press."""

from __future__ import annotations

import pytest

from srs.errors import RtpError, UsageError
from srs.rtp.dtmf import DtmfDetector, DtmfEvent, TelephoneEvent, event_name
from srs.rtp.track import Placed


def test_parse_golden() -> None:
    # Event 5, E bit, volume 10 (-10 dBm0), duration 640 (RFC 4733 §2.3).
    assert TelephoneEvent.parse(bytes.fromhex("058a0280")) == TelephoneEvent(5, True, 10, 640)
    # R bit set: reserved, ignored.  Trailing octets: ignored.
    assert TelephoneEvent.parse(bytes.fromhex("0b4000a0ff")) == TelephoneEvent(11, False, 0, 160)


def test_parse_short_payload() -> None:
    with pytest.raises(RtpError) as caught:
        TelephoneEvent.parse(b"\x05\x8a\x02")
    assert caught.value.drop_reason == "telephone_event"


def test_serialise_round_trip_and_range() -> None:
    event = TelephoneEvent(15, True, 63, 65535)
    assert bytes(event) == bytes.fromhex("0fbfffff")
    assert TelephoneEvent.parse(bytes(event)) == event
    with pytest.raises(UsageError):
        bytes(TelephoneEvent(1, False, 64, 0))


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "0"),
        (9, "9"),
        (10, "*"),
        (11, "#"),
        (12, "A"),
        (15, "D"),
        (16, "flash"),
        (70, "event-70"),
    ],
)
def test_event_names(code: int, name: str) -> None:
    assert event_name(code) == name


def packet(
    event: int, duration: int, *, end: bool = False, ts: int = 5000, offset: int = 1600
) -> Placed:
    payload = bytes(TelephoneEvent(event, end, 10, duration))
    return Placed(offset, 101, payload, 0xABC, ts, True)


def test_one_event_for_a_key_press_with_three_end_packets() -> None:
    detector = DtmfDetector(8000)
    out: list[DtmfEvent] = []
    for duration, end in [(160, False), (320, False), (480, False)] + [(640, True)] * 3:
        out += detector.push(packet(5, duration, end=end))
    assert out == [DtmfEvent(5, 1600, 640, 8000, 10, True)]
    assert (out[0].digit, out[0].start_s, out[0].duration_ms) == ("5", 0.2, 80)
    assert detector.finish() == []


def test_lost_end_packets_reported_when_the_next_event_starts() -> None:
    detector = DtmfDetector(8000)
    assert detector.push(packet(1, 160)) == []
    assert detector.push(packet(1, 480)) == []
    assert detector.push(packet(1, 320)) == []  # reordered: the longest duration stays
    out = detector.push(packet(2, 160, ts=9000, offset=5600))
    assert out == [DtmfEvent(1, 1600, 480, 8000, 10, False)]
    assert detector.finish() == [DtmfEvent(2, 5600, 160, 8000, 10, False)]


def test_same_digit_twice_is_two_events() -> None:
    detector = DtmfDetector(8000)
    first = detector.push(packet(7, 800, end=True, ts=1000, offset=0))
    assert detector.push(packet(7, 800, end=True, ts=1000, offset=0)) == []
    second = detector.push(packet(7, 400, end=True, ts=3000, offset=2000))
    assert [(e.event_code, e.start_offset_samples, e.duration_samples) for e in first + second] == [
        (7, 0, 800),
        (7, 2000, 400),
    ]


def test_straggler_after_the_end_is_ignored() -> None:
    detector = DtmfDetector(8000)
    detector.push(packet(3, 640, end=True))
    assert detector.push(packet(3, 320)) == []
    assert detector.finish() == []


def test_short_payload_raises_for_the_caller_to_count() -> None:
    detector = DtmfDetector(8000)
    with pytest.raises(RtpError):
        detector.push(Placed(0, 101, b"\x01", 1, 2, True))


def test_bad_clock_rate() -> None:
    with pytest.raises(UsageError):
        DtmfDetector(0)
