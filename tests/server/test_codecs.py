"""Every codec srs records, through a live server over loopback: real encoders make the RTP
(tests/codecs/encoders.py), one packet is lost and two arrive swapped, and the WAVs are
checked for their rate, length, alignment with a G.711 track sent beside them and the
tones' frequencies; where FFmpeg's command line has a raw demuxer for the codec, the track
matches its decode of the same payloads sample for sample."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from srs.codecs.g711 import pcmu_encode
from tests.codecs.encoders import RtpAudio, available, encode, resample, tone
from tests.conftest import TOKEN, RunningServer
from tests.e2e.audio import band_energy_ratio, dominant_frequency
from tests.sipclient import RtpSender, SipClient, rtp_packet

LEAD_S = 0.4  # silence before the tones: the onset shows each track's alignment
TONE_S = 1.0
LOST = 0.6  # where in the packets the one never sent is (in the tone)
SWAPPED = 0.75  # where the packet is that arrives after its successor


@dataclass(frozen=True)
class Case:
    name: str  # test id
    encoding: str  # tests/codecs/encoders.py name
    options: dict[str, Any]
    payload_type: int
    rate_hz: int  # the WAV's rate srs must write
    tones: tuple[float, ...]
    ffmpeg_format: str | None = None  # raw demuxer for the reference decode


CASES = [
    Case("G722", "G722", {}, 9, 16000, (440.0, 5000.0), "g722"),
    Case("G729", "G729", {"annexb": False}, 18, 8000, (440.0,), "g729"),
    Case("GSM", "GSM", {}, 3, 8000, (440.0,), "gsm"),
    Case("opus", "opus", {}, 111, 48000, (440.0, 6000.0)),
    Case("AMR-octet-aligned", "AMR", {"octet_align": True, "frames_per_packet": 2}, 97, 8000,
         (440.0,)),
    Case("AMR-bandwidth-efficient", "AMR", {"octet_align": False}, 97, 8000, (440.0,)),
    Case("AMR-WB", "AMR-WB", {"octet_align": True, "mode": 8}, 98, 16000, (440.0, 5000.0)),
    Case("speex", "speex", {}, 99, 8000, (440.0,)),
    Case("speex-wideband", "speex", {}, 99, 16000, (440.0, 5000.0)),
    Case("L16", "L16", {}, 100, 16000, (440.0, 5000.0)),
]


def _signal(case: Case) -> npt.NDArray[np.int16]:
    lead = np.zeros(round(LEAD_S * case.rate_hz), dtype=np.int16)
    return np.concatenate((lead, tone(case.tones, TONE_S, case.rate_hz)))


def _offer(audio: RtpAudio, pt: int) -> str:
    channels = f"/{audio.channels}" if audio.channels else ""
    inbound = [f"m=audio 40000 RTP/AVP {pt} 0 101",
               f"a=rtpmap:{pt} {audio.encoding_name}/{audio.clock_rate_hz}{channels}"]
    if audio.fmtp:
        inbound.append(f"a=fmtp:{pt} {audio.fmtp}")
    inbound += ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
                "a=label:inbound", "a=sendonly"]
    outbound = ["m=audio 40002 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=label:outbound",
                "a=sendonly"]
    head = ["v=0", "o=src 42 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    return "\r\n".join(head + inbound + outbound) + "\r\n"


def _at(share: float, audio: RtpAudio) -> int:
    return int(share * len(audio.payloads))


def ptime_s(audio: RtpAudio) -> float:
    return (audio.timestamps[1] - audio.timestamps[0]) / audio.clock_rate_hz


def _send(ports: list[int], audio: RtpAudio, pt: int, reference: npt.NDArray[np.int16]) -> None:
    """The codec's packets on the first port, G.711 of the same signal on the second, both
    paced at their ptime from the same instant."""
    ptime = ptime_s(audio)
    coded, law = RtpSender(ports[0], 0x1111), RtpSender(ports[1], 0x2222)
    order = list(range(len(audio.payloads)))
    lost, swapped = _at(LOST, audio), _at(SWAPPED, audio)
    order[swapped], order[swapped + 1] = order[swapped + 1], order[swapped]
    started = time.monotonic()
    g711_due = 0
    try:
        for step, n in enumerate(order):
            if n != lost:
                coded.send(rtp_packet(n, audio.timestamps[n], coded.ssrc, audio.payloads[n],
                                      pt=pt))
            # the G.711 track: every 20 ms packet due by now
            while g711_due * 0.02 <= (step + 1) * ptime - 1e-9:
                chunk = reference[g711_due * 160:(g711_due + 1) * 160]
                if len(chunk) == 160:
                    law.send(rtp_packet(g711_due, g711_due * 160, law.ssrc, pcmu_encode(chunk)))
                g711_due += 1
            time.sleep(max(0.0, started + (step + 1) * ptime - time.monotonic()))
    finally:
        coded.close()
        law.close()


def _onset_s(track: npt.NDArray[np.int16], rate_hz: int) -> float:
    return float(np.flatnonzero(np.abs(track) > 2000)[0]) / rate_hz


def _reference_decode(fmt: str, payloads: list[bytes], tmp: Path) -> npt.NDArray[np.int16]:
    """FFmpeg's command line decoding the payloads back to back, at the codec's rate."""
    raw = tmp / f"in.{fmt}"
    raw.write_bytes(b"".join(payloads))
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", fmt, "-i", str(raw),
         "-f", "s16le", "-acodec", "pcm_s16le", "-"],
        check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(out, dtype="<i2").astype(np.int16)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_codec_records_its_tone_aligned_with_g711(server: RunningServer, case: Case,
                                                    tmp_path: Path) -> None:
    reason = available(case.encoding, **case.options)
    if reason is not None:
        pytest.skip(reason)
    signal = _signal(case)
    audio = encode(case.encoding, signal, case.rate_hz, **case.options)
    narrow = resample(signal, case.rate_hz, 8000)
    client = SipClient("127.0.0.1", server.sip_port, "udp", token=TOKEN)
    try:
        call, answer = client.invite(sdp=_offer(audio, case.payload_type))
        assert answer.status == 200
        body = answer.body.decode()
        assert f"m=audio {call.ports[0]} RTP/AVP {case.payload_type} 101" in body
        if audio.fmtp:
            assert f"a=fmtp:{case.payload_type} {audio.fmtp}" in body
        _send(call.ports, audio, case.payload_type, narrow)
        time.sleep(0.1)
        assert client.bye(call).status == 200
    finally:
        client.close()
    [doc] = server.wait_sidecar()
    inbound_record, outbound_record = doc["streams"]
    assert (outbound_record["codec"], outbound_record["sample_rate"]) == ("PCMU", 8000)
    assert (inbound_record["codec"], inbound_record["clock_rate"],
            inbound_record["sample_rate"]) == (audio.encoding_name, audio.clock_rate_hz,
                                               case.rate_hz)
    assert inbound_record["packets"]["lost"] == 1
    assert inbound_record["packets"]["reordered"] >= 1
    assert inbound_record["decode_errors"] == 0
    directory = server.sessions()[0]
    track, rate = sf.read(directory / "inbound.wav", dtype="int16")
    law, law_rate = sf.read(directory / "outbound.wav", dtype="int16")
    assert (rate, law_rate) == (case.rate_hz, 8000)
    # One session, one length: the tracks end together (within a packet).
    assert len(track) / rate == pytest.approx(len(law) / law_rate, abs=0.02)
    # The tones start together on both tracks (within a packet).
    onset = _onset_s(track, rate)
    assert onset == pytest.approx(_onset_s(law, law_rate), abs=0.02)
    steady = track[round((onset + 0.1) * rate): round((onset + TONE_S - 0.1) * rate)]
    assert np.abs(steady).max() > 3000, "decoded to near silence"
    if len(case.tones) == 1:
        assert dominant_frequency(steady, rate) == pytest.approx(case.tones[0], abs=5)
    for freq in case.tones:  # the wideband tone above 4 kHz comes through too
        assert band_energy_ratio(steady, rate, freq, 2500.0) > 10, freq
    mix, mix_rate = sf.read(directory / "mix.wav", dtype="int16")
    assert mix_rate == case.rate_hz and mix.shape[1] == 2
    assert _onset_s(mix[:, 1], mix_rate) == pytest.approx(onset, abs=0.02)
    if case.ffmpeg_format is not None and shutil.which("ffmpeg"):
        # FFmpeg's own decode of the packets before the loss, from the stream's start.
        before = audio.payloads[:_at(LOST, audio)]
        reference = _reference_decode(case.ffmpeg_format, before, tmp_path)
        assert len(reference) == round(len(before) * ptime_s(audio) * rate)
        tail = reference[len(reference) // 2:]
        start = int(np.argmax(np.correlate(track[: round(onset * rate) + len(reference)]
                                           .astype(np.float64), tail.astype(np.float64))))
        start -= len(reference) // 2
        np.testing.assert_array_equal(track[start:start + len(reference)], reference)
