"""PcmAssembler: decoded audio laid out as one contiguous track, and the whole media core
end to end (impaired senders -> TrackTimeline -> G.711 -> PCM of exact length)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs import codecs
from srs.codecs.g711 import PCMU_DECODE_TABLE
from srs.rtp.assembler import PcmAssembler
from srs.rtp.dtmf import DtmfDetector, TelephoneEvent
from srs.rtp.track import Placed, TrackTimeline
from tests.rtp.impair import Sender, delay, duplicate, lose

PCMU = {0: codecs.PCMU, 13: codecs.COMFORT_NOISE}


def audio(offset: int, code: int, samples: int = 4, payload_type: int = 0) -> Placed:
    return Placed(offset, payload_type, bytes([code]) * samples, 1, 0)


def value(code: int) -> int:
    return int(PCMU_DECODE_TABLE[code])


def test_gaps_are_silence_and_positions_exact() -> None:
    assembler = PcmAssembler(PCMU, 8000)
    assembler.add([audio(2, 0x80), audio(6, 0x00), audio(12, 0x80, samples=2)])
    pcm = assembler.finish(16)
    hi, lo = value(0x80), value(0x00)
    assert pcm.tolist() == [0, 0, hi, hi, hi, hi, lo, lo, lo, lo, 0, 0, hi, hi, 0, 0]
    assert pcm.dtype == np.int16
    assert (assembler.trimmed_samples, assembler.beyond_end_samples) == (0, 0)


def test_contiguous_payloads_are_decoded_in_one_call() -> None:
    calls: list[int] = []

    def counting_decode(payload: bytes) -> npt.NDArray[np.int16]:
        calls.append(len(payload))
        return codecs.PCMU.decode(payload)

    codec = replace(codecs.PCMU, decode=counting_decode)
    assembler = PcmAssembler({0: codec}, 8000)
    assembler.add([audio(i * 160, 0x80, 160) for i in range(50)] + [audio(9000, 0x80, 160)])
    assert calls == [8000, 160]


def test_overlap_never_rewinds() -> None:
    assembler = PcmAssembler(PCMU, 8000)
    assembler.add([audio(0, 0x80), audio(2, 0x00), audio(1, 0x90, samples=2)])
    hi, lo = value(0x80), value(0x00)
    assert assembler.finish(8).tolist() == [hi, hi, hi, hi, lo, lo, 0, 0]
    assert assembler.trimmed_samples == 2 + 2  # the head of the second, all of the third


def test_audio_behind_what_was_taken_is_trimmed() -> None:
    assembler = PcmAssembler(PCMU, 8000)
    assembler.add([audio(0, 0x80)])
    assert assembler.take(6).tolist() == [value(0x80)] * 4 + [0, 0]
    assembler.add([audio(4, 0x00)])
    assert assembler.finish(10).tolist() == [value(0x00), value(0x00), 0, 0]
    assert assembler.trimmed_samples == 2


def test_take_keeps_what_is_past_the_point_and_finish_cuts_the_end() -> None:
    assembler = PcmAssembler(PCMU, 8000)
    assembler.add([audio(0, 0x80), audio(4, 0x00)])
    first = assembler.take(2)
    assert assembler.take(2).tolist() == [] and assembler.take(1).tolist() == []
    second = assembler.take(6)
    rest = assembler.finish(7)
    assert np.concatenate([first, second, rest]).tolist() == [value(0x80)] * 4 + [value(0x00)] * 3
    assert assembler.beyond_end_samples == 1
    assert assembler.position_samples == 7


def test_comfort_noise_events_and_unknown_payload_types() -> None:
    assembler = PcmAssembler(PCMU, 8000)
    assembler.add(
        [
            audio(0, 0x80, samples=2),
            audio(2, 0x40, samples=1, payload_type=13),  # CN: silence until the next packet
            Placed(3, 101, bytes(TelephoneEvent(1, False, 0, 0)), 1, 0, True),
            audio(4, 0x80, samples=2, payload_type=96),  # no codec
            audio(6, 0x80, samples=2),
        ]
    )
    hi = value(0x80)
    assert assembler.finish(8).tolist() == [hi, hi, 0, 0, 0, 0, hi, hi]
    assert assembler.undecodable_packets == 2


def test_sample_rate_other_than_the_clock_rate() -> None:
    doubled = replace(
        codecs.PCMU,
        sample_rate_hz=16000,
        decode=lambda p: np.repeat(codecs.PCMU.decode(p), 2),
        samples_in=lambda p: 2 * len(p),
    )
    assembler = PcmAssembler({9: doubled}, 8000, 16000)
    assembler.add([audio(2, 0x80, samples=2, payload_type=9), audio(4, 0x80, 1, 9)])
    assert assembler.finish(6).tolist() == [0] * 4 + [value(0x80)] * 6 + [0, 0]


def _g722_track(seconds: float) -> tuple[list[Placed], int]:
    from tests.codecs.encoders import available, encode, tone

    if (reason := available("G722")) is not None:
        pytest.skip(reason)
    rtp = encode("G722", tone([440.0, 5000.0], seconds, 16000), 16000, ptime_ms=20)
    return [Placed(ts, 9, p, 1, ts) for p, ts in zip(rtp.payloads, rtp.timestamps, strict=True)], \
        rtp.timestamps[-1] + 160


def test_a_stateful_codec_decodes_payload_by_payload_at_its_own_rate() -> None:
    """G.722 (RFC 3551 §4.5.2): positions on the 8 kHz RTP clock, audio at 16 kHz, one
    decoder whose state runs across the packets: both tones come through and the lost
    packet is exactly 320 samples of silence."""
    from tests.e2e.audio import band_energy_ratio

    placed, end = _g722_track(1.0)
    g722 = codecs.lookup("G722", 8000)
    assert g722 is not None
    assembler = PcmAssembler({9: g722}, 8000, 16000)
    assembler.add(placed[:10] + placed[11:])  # packet 10 lost
    pcm = assembler.finish(end)
    assert len(pcm) == 16000 and assembler.decode_errors == 0
    assert not pcm[3200:3520].any() and pcm[3520:3840].any()
    steady = pcm[4000:]
    assert band_energy_ratio(steady, 16000, 440, 2500) > 30
    assert band_energy_ratio(steady, 16000, 5000, 2500) > 30


def test_a_refused_payload_is_dropped_and_counted() -> None:
    """RFC 3551 §4.5.6: a G.729 payload is 10-byte frames and at most one 2-byte SID."""
    g729 = codecs.lookup("G729", 8000)
    assert g729 is not None
    assembler = PcmAssembler({18: g729}, 8000)
    assembler.add([Placed(0, 18, bytes(20), 1, 0), Placed(160, 18, bytes(7), 1, 160),
                   Placed(320, 18, bytes(22), 1, 320)])
    assert len(assembler.finish(480)) == 480
    assert assembler.decode_errors == 1


def test_audio_at_another_rate_is_resampled_and_stays_contiguous() -> None:
    """PCMU in a 16 kHz file (a sender that switched from G.722): resampled, in place,
    with no gap between packets where the resampler's delay would leave one."""
    from tests.e2e.audio import dominant_frequency

    t = np.arange(8000) / 8000
    law = codecs.PCMU.encode
    assert law is not None
    payload = law(np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
    assembler = PcmAssembler(PCMU, 8000, 16000)
    for start in range(0, 8000, 160):  # one tick per packet: the worst case
        assembler.add([Placed(start, 0, payload[start:start + 160], 1, start)])
    pcm = assembler.finish(8000)
    assert len(pcm) == 16000
    steady = pcm[400:-400]
    silent = np.flatnonzero(np.convolve(np.abs(steady) < 50, np.ones(8), "valid") == 8)
    assert len(silent) == 0  # no run of 8 near-zero samples: no gaps between packets
    assert abs(dominant_frequency(steady, 16000) - 440.0) < 5


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), max_size=30),
    st.lists(st.integers(0, 500), max_size=5),
    st.integers(0, 500),
)
def test_chunked_takes_equal_one_finish_and_length_is_exact(
    items: list[tuple[int, int]], cuts: list[int], total: int
) -> None:
    placed = [audio(offset, 0x80 + n % 64, samples) for n, (offset, samples) in enumerate(items)]
    whole = PcmAssembler(PCMU, 8000)
    whole.add(placed)
    expected = whole.finish(total)
    chunked = PcmAssembler(PCMU, 8000)
    chunked.add(placed)
    parts = [chunked.take(cut) for cut in sorted(c for c in cuts if c <= total)]
    parts.append(chunked.finish(total))
    assert len(expected) == total
    assert np.concatenate(parts).tolist() == expected.tolist()


ORIGIN = 500.0


def record(
    arrivals: list, end_s: float, event_payload_types: frozenset[int] = frozenset()
) -> tuple[npt.NDArray[np.int16], list, TrackTimeline]:
    """What the session layer does: feed, drain and take about once a second, finish."""
    timeline = TrackTimeline(ORIGIN, 8000, event_payload_types=event_payload_types)
    assembler = PcmAssembler(PCMU, 8000)
    detector = DtmfDetector(8000)
    chunks: list[npt.NDArray[np.int16]] = []
    events = []
    pending: list[Placed] = []
    next_batch_s = ORIGIN + 1.0

    def batch(items: list[Placed]) -> None:
        for item in items:
            if item.is_event:
                events.extend(detector.push(item))
        assembler.add(items)

    for arrival in arrivals:
        while arrival.arrival_s >= next_batch_s:
            batch(pending + timeline.drain(next_batch_s))
            pending = []
            chunks.append(assembler.take(timeline.settled_offset(next_batch_s)))
            next_batch_s += 1.0
        pending += timeline.push(arrival.packet, arrival.arrival_s)
    batch(pending + timeline.flush())
    chunks.append(assembler.finish(timeline.finish(end_s)))
    events.extend(detector.finish())
    return np.concatenate(chunks), events, timeline


def expected_block(pcm: npt.NDArray[np.int16], offset: int, index: int) -> bool:
    return bool(np.all(pcm[offset : offset + 160] == value(index % 256)))


def test_two_tracks_of_one_session_have_the_wall_clock_length_and_line_up() -> None:
    # Track A: starts 1.5 s late, loses packets, a duplicate, a reorder, then holds 3 s.
    a = Sender(start_s=ORIGIN + 1.5, delay_s=0.02)
    a.talk(100)
    a.pause(3.0)
    a.talk(100)
    a_arrivals = delay(duplicate(lose(a.arrivals, 10, 11, 150), 40), 60, 0.05)
    # Track B: from the start, sequence wrap, SSRC change after 2 s, DTMF in between.
    b = Sender(start_s=ORIGIN, delay_s=0.02, sequence_number=65500, ssrc=0xB)
    b.talk(100)
    event_ts = b.timestamp
    for duration, end in [(160, False), (320, False)] + [(480, True)] * 3:
        b.send(bytes(TelephoneEvent(11, end, 10, duration)), payload_type=101, timestamp=event_ts)
        b.time_s += 0.0 if end else 0.02
    b.timestamp += 480
    b.time_s += 0.02
    b.talk(50)
    b.restart(ssrc=0xBB, sequence_number=3, timestamp=77)
    b.talk(200)
    end_s = ORIGIN + 8.0

    pcm_a, _, timeline_a = record(a_arrivals, end_s)
    pcm_b, events_b, timeline_b = record(b.arrivals, end_s, frozenset({101}))

    assert len(pcm_a) == len(pcm_b) == 64000
    # A: leading silence, then packets at their place; lost ones are silence.
    first_a = round(1.52 * 8000)
    assert not pcm_a[:first_a].any()
    for index in (0, 9, 12, 40, 60, 99):
        assert expected_block(pcm_a, first_a + index * 160, index)
    for index in (10, 11):
        assert not pcm_a[first_a + index * 160 : first_a + (index + 1) * 160].any()
    resume = first_a + 100 * 160 + 24000
    assert not pcm_a[first_a + 16000 : resume].any()  # hold
    assert expected_block(pcm_a, resume, 100) and expected_block(pcm_a, resume + 49 * 160, 149)
    stats_a = timeline_a.stats()
    assert (stats_a.lost, stats_a.duplicated, stats_a.late, stats_a.reordered) == (3, 1, 0, 1)

    # B: audio, the key press as silence, audio, then the new SSRC on the same clock.
    first_b = 160  # 20 ms network delay
    assert expected_block(pcm_b, first_b, 0) and expected_block(pcm_b, first_b + 99 * 160, 99)
    assert not pcm_b[first_b + 16000 : first_b + 16000 + 480].any()
    assert expected_block(pcm_b, first_b + 16000 + 480, 105)
    switch = round((b.arrivals[155].arrival_s - ORIGIN) * 8000)
    assert expected_block(pcm_b, switch, 155)
    assert expected_block(pcm_b, switch + 199 * 160, 354)
    assert [(e.digit, e.start_offset_samples, e.duration_ms, e.ended) for e in events_b] == [
        ("#", first_b + 16000, 60, True)
    ]
    stats_b = timeline_b.stats()
    assert stats_b.ssrcs == (0xB, 0xBB)
    assert (stats_b.lost, dict(stats_b.resyncs)) == (0, {"ssrc_change": 1})


def _pcmu_tone(seconds: float) -> bytes:
    law = codecs.PCMU.encode
    assert law is not None
    t = np.arange(round(seconds * 8000)) / 8000
    return law(np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))


def test_resampling_across_a_gap_puts_the_tail_before_the_gap() -> None:
    """The resampler holds back a few samples; at a gap they belong at the end of the
    talkspurt, not after the gap, and nothing is trimmed."""
    payload = _pcmu_tone(3.0)
    assembler = PcmAssembler(PCMU, 8000, 16000)
    for n in [*range(50), *range(100, 150)]:
        assembler.add([Placed(n * 160, 0, payload[n * 160:(n + 1) * 160], 1, n * 160)])
    pcm = assembler.finish(150 * 160)
    assert assembler.trimmed_samples == 0
    assert np.abs(pcm[15968:16000]).max() > 1000  # the talkspurt's last 2 ms
    assert not pcm[16100:31900].any()  # the gap is silence
    assert np.abs(pcm[32000:32100]).max() > 1000


def test_resampling_at_a_rate_that_does_not_divide_keeps_packets_contiguous() -> None:
    """11025 Hz from 8 kHz: 275.625 samples per 20 ms packet.  Positions come from the
    cumulative count, so there is neither a hole nor a trimmed sample between packets."""
    payload = _pcmu_tone(3.0)
    assembler = PcmAssembler(PCMU, 8000, 11025)
    for n in range(150):
        assembler.add([Placed(n * 160, 0, payload[n * 160:(n + 1) * 160], 1, n * 160)])
    pcm = assembler.finish(150 * 160)
    assert assembler.trimmed_samples == 0 and len(pcm) == 3 * 11025
    steady = np.abs(pcm[200:-200].astype(np.int32))
    assert not (np.convolve(steady < 30, np.ones(4), "valid") == 4).any()


def test_an_odd_length_l16_payload_does_not_shift_the_ones_after_it() -> None:
    l16 = codecs.lookup("L16", 16000)
    assert l16 is not None
    samples = np.arange(1, 321, dtype=np.int16) * 50
    good = samples.astype(">i2").tobytes()
    assembler = PcmAssembler({96: l16}, 16000)
    assembler.add([Placed(0, 96, good + b"\x7f", 1, 0), Placed(320, 96, good, 1, 320)])
    pcm = assembler.finish(640)
    assert pcm[:320].tolist() == samples.tolist() == pcm[320:].tolist()


def test_an_oversized_payload_is_refused_before_it_is_decoded() -> None:
    g729 = codecs.lookup("G729", 8000)
    assert g729 is not None
    assembler = PcmAssembler({18: g729}, 8000)
    assembler.add([Placed(0, 18, bytes(65000), 1, 0), Placed(160, 18, bytes(20), 1, 160)])
    assert len(assembler.finish(320)) == 320 and assembler.decode_errors == 1


def test_g722_payloads_in_a_row_are_joined_into_one_decode_with_the_same_audio(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """G.722 decodes sample by sample, so payloads that follow each other are decoded in
    one call (chunked under the decoder's size bound): the audio equals one decoder fed
    packet by packet, a gap still starts a new run, and the calls are fewer."""
    from srs.codecs.ffmpeg import FrameDecoder, new_decoder

    placed, end = _g722_track(2.0)
    g722 = codecs.lookup("G722", 8000)
    assert g722 is not None
    kept = placed[:30] + placed[31:]  # packet 30 lost: two runs
    reference = new_decoder("g722", 16000, {})
    expected = np.zeros(32000, np.int16)
    for item in kept:
        at = item.offset_samples * 2
        pcm = reference.decode(item.payload)
        expected[at:at + len(pcm)] = pcm
    assembler = PcmAssembler({9: g722}, 8000, 16000)
    calls: list[int] = []
    original = FrameDecoder.decode

    def counted(self: FrameDecoder, payload: bytes) -> npt.NDArray[np.int16]:
        calls.append(len(payload))
        return original(self, payload)

    monkeypatch.setattr(FrameDecoder, "decode", counted)
    assembler.add(kept)
    pcm = assembler.finish(end)
    np.testing.assert_array_equal(pcm, expected)
    assert assembler.decode_errors == 0
    # 30 packets, then 69 packets (11,040 bytes): 1 + 2 calls, none over the bound.
    assert calls == [30 * 160, 5760, 69 * 160 - 5760]
