"""Codec negotiation and decoding in a recording session, driven through the pure core:
field offers (BroadWorks, Avaya), the preference list, a sender switching codecs
mid-stream, an offer of nothing srs decodes, broken AMR payloads, a fixed file rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from srs.codecs.g711 import pcma_encode, pcmu_encode
from srs.errors import ConfigError
from srs.recording.policy import RecorderConfig
from srs.rtp.dtmf import TelephoneEvent
from tests.codecs.encoders import available, encode, tone
from tests.e2e.audio import band_energy_ratio, dominant_frequency
from tests.recording.corehost import PEER, CoreHost
from tests.sipclient import rtp_packet

SENDER = (PEER.host, 40000)

RTPMAPS = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000",
           3: "GSM/8000", 96: "AMR/8000", 97: "opus/48000/2", 101: "telephone-event/8000",
           4: "G723/8000"}


def offer(pts: list[int], fmtp: dict[int, str] | None = None, version: int = 1) -> str:
    lines = ["v=0", f"o=src 42 {version} IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1",
             "t=0 0", f"m=audio 40000 RTP/AVP {' '.join(map(str, pts))}"]
    lines += [f"a=rtpmap:{pt} {RTPMAPS[pt]}" for pt in pts]
    lines += [f"a=fmtp:{pt} {value}" for pt, value in (fmtp or {}).items()]
    lines += ["a=label:inbound", "a=sendonly"]
    return "\r\n".join(lines) + "\r\n"


def answered(host: CoreHost, dialog: Any) -> str:
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 200, final
    [media] = [line for line in final.body.decode().splitlines() if line.startswith("m=")]
    return media


def send(host: CoreHost, packets: list[tuple[int, int, bytes]], *, ssrc: int = 0x11) -> None:
    """(payload type, timestamp, payload), one sequence number each, 20 ms apart."""
    for n, (pt, ts, payload) in enumerate(packets):
        host.stream(0).receive(rtp_packet(n, ts, ssrc, payload, pt=pt), SENDER, host.now)
        host.advance(0.02)


def finish(host: CoreHost, dialog: Any) -> tuple[dict[str, Any], npt.NDArray[np.int16], int]:
    host.bye(dialog)
    [directory] = host.sessions()
    [record] = json.loads((directory / "session.json").read_text())["streams"]
    track, rate = sf.read(directory / "inbound.wav", dtype="int16")
    return record, track, rate


def skip_unless(name: str, **options: Any) -> None:
    if (reason := available(name, **options)) is not None:
        pytest.skip(reason)


def test_a_broadworks_offer_is_recorded_with_its_first_codec(tmp_path: Path) -> None:
    """BroadWorks offers PCMA, PCMU, G.722 and G.729 on one stream: PCMA comes first."""
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([8, 0, 9, 18, 101]))
    assert answered(host, dialog).endswith("RTP/AVP 8 101")
    host.advance(0.1)
    signal = tone([440.0], 1.0, 8000)
    law = pcma_encode(signal)
    send(host, [(8, n * 160, law[n * 160:(n + 1) * 160]) for n in range(50)])
    record, track, rate = finish(host, dialog)
    assert (record["codec"], record["sample_rate"], rate) == ("PCMA", 8000, 8000)
    assert dominant_frequency(track[1600:-800], 8000) == pytest.approx(440.0, abs=5)


def test_an_avaya_offer_with_g729_first_records_g729(tmp_path: Path) -> None:
    skip_unless("G729", annexb=True)
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([18, 0, 8, 101], {18: "annexb=yes"}))
    media = answered(host, dialog)
    assert media.endswith("RTP/AVP 18 101")
    final = host.final_for(dialog, "INVITE")
    assert final is not None and "a=fmtp:18 annexb=yes" in final.body.decode()
    host.advance(0.1)
    # A tone, half a second of silence (Annex B sends SID frames for it), the tone again.
    signal = np.concatenate([tone([440.0], 0.5, 8000), np.zeros(4000, np.int16),
                             tone([440.0], 0.5, 8000)])
    rtp = encode("G729", signal, 8000, annexb=True)
    assert any(len(p) % 10 == 2 for p in rtp.payloads), "no SID frame sent"
    host_start = round((host.now - 1000.0) * 8000)
    send(host, [(18, ts, p) for ts, p in zip(rtp.timestamps, rtp.payloads, strict=True)])
    record, track, rate = finish(host, dialog)
    assert (record["codec"], rate, record["decode_errors"]) == ("G729", 8000, 0)
    first = track[host_start + 800: host_start + 3600]
    silence = track[host_start + 4800: host_start + 7600]
    assert dominant_frequency(first, 8000) == pytest.approx(440.0, abs=5)
    assert np.abs(silence).max() < 0.05 * np.abs(first).max()


def test_the_preference_list_overrides_the_offer_order(tmp_path: Path) -> None:
    host = CoreHost(tmp_path, {"codecs": ("G722", "PCMU")})
    dialog = host.invite(["inbound"], sdp=offer([8, 0, 9, 101]))
    assert answered(host, dialog).endswith("RTP/AVP 9 101")
    other = CoreHost(tmp_path / "b", {"codecs": ("G729",)})
    refused = other.invite(["inbound"], sdp=offer([8, 0, 101]))
    final = other.final_for(refused, "INVITE")
    assert final is not None and final.status == 488


def test_an_offer_of_only_codecs_srs_cannot_decode_is_refused(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([4, 101]))
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 488
    assert host.sessions() == []


def test_a_sender_switching_codecs_keeps_one_aligned_track(tmp_path: Path) -> None:
    """RFC 3264 §5.1: the sender may use any offered codec.  G.722 for half a second, then
    PCMU on the same clock: one 16 kHz track, the PCMU part resampled, no gap or shift at
    the switch, both tones where they were sent."""
    skip_unless("G722")
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([9, 0, 101]))
    host.advance(0.1)
    start = round((host.now - 1000.0) * 16000)
    wide = encode("G722", tone([1000.0], 0.5, 16000), 16000)
    narrow = pcmu_encode(tone([440.0], 0.5, 8000))
    packets = [(9, ts, p) for ts, p in zip(wide.timestamps, wide.payloads, strict=True)]
    packets += [(0, 4000 + n * 160, narrow[n * 160:(n + 1) * 160]) for n in range(25)]
    send(host, packets)
    record, track, rate = finish(host, dialog)
    assert (record["codec"], record["clock_rate"], rate) == ("G722", 8000, 16000)
    assert record["packets"]["dropped"] == {} and record["packets"]["received"] == 50
    assert dominant_frequency(track[start + 1600:start + 7200], 16000) == \
        pytest.approx(1000.0, abs=5)
    assert dominant_frequency(track[start + 8800:start + 15200], 16000) == \
        pytest.approx(440.0, abs=5)
    around = np.abs(track[start + 7800:start + 8200].astype(np.int32))
    quiet = np.convolve(around < 100, np.ones(16), "valid") == 16
    assert not quiet.any(), "a gap at the codec switch"
    assert band_energy_ratio(track[start + 8800:start + 15200], 16000, 440.0, 1000.0) > 10


def test_amr_packets_with_a_bad_table_of_contents_are_dropped_and_counted(
    tmp_path: Path,
) -> None:
    """RFC 4867 §4.3.2: FT 12-14 are reserved; a ToC longer than its payload is broken.
    Those packets are dropped and counted; the stream's other packets decode."""
    skip_unless("AMR", octet_align=True)
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([96, 101], {96: "octet-align=1"}))
    assert answered(host, dialog).endswith("RTP/AVP 96 101")
    final = host.final_for(dialog, "INVITE")
    assert final is not None and "a=fmtp:96 octet-align=1" in final.body.decode()
    host.advance(0.1)
    rtp = encode("AMR", tone([440.0], 1.0, 8000), 8000, octet_align=True)
    payloads = list(rtp.payloads)
    for n in (10, 20, 30):
        good = payloads[n]
        payloads[n] = bytes([good[0], (12 << 3) | 0x04]) + good[2:] if n != 20 else good[:9]
    send(host, [(96, ts, p) for ts, p in zip(rtp.timestamps, payloads, strict=True)])
    record, track, rate = finish(host, dialog)
    assert (record["codec"], rate, record["decode_errors"]) == ("AMR", 8000, 3)
    assert dominant_frequency(track[-6000:-800], 8000) == pytest.approx(440.0, abs=5)


def test_a_fixed_sample_rate_writes_every_track_at_it(tmp_path: Path) -> None:
    """recordings.sample_rate: G.711 written at 16 kHz, resampled, tone intact."""
    host = CoreHost(tmp_path, {"sample_rate_hz": 16000})
    dialog = host.invite(["inbound"], sdp=offer([0, 101]))
    host.advance(0.1)
    law = pcmu_encode(tone([440.0], 1.0, 8000))
    send(host, [(0, n * 160, law[n * 160:(n + 1) * 160]) for n in range(50)])
    record, track, rate = finish(host, dialog)
    assert (record["sample_rate"], record["clock_rate"], rate) == (16000, 8000, 16000)
    assert len(track) == pytest.approx(2 * round(1.1 * 8000), abs=400)
    assert dominant_frequency(track[3200:-1600], 16000) == pytest.approx(440.0, abs=5)


def test_media_codecs_names_are_checked_at_start_up() -> None:
    from srs.config import load_settings

    good = load_settings(None, {}, {"media": {"codecs": ["g722", "PCMU"]}})
    assert RecorderConfig.from_settings(good).codecs == ("G722", "PCMU")
    bad = load_settings(None, {}, {"media": {"codecs": ["G723"]}})
    with pytest.raises(ConfigError, match=r"media\.codecs.*G723"):
        RecorderConfig.from_settings(bad)


@pytest.mark.parametrize("event_rate", [48000, 8000])
def test_telephone_events_are_kept_with_opus_at_either_clock_rate(
    tmp_path: Path, event_rate: int
) -> None:
    """RFC 4733 §2.1: an event's timestamps run on its own rtpmap's clock.  Offered with
    Opus at 48000 or (as some SBCs do) at 8000, key presses reach the sidecar at the time
    they were pressed, and the Opus audio around them decodes."""
    skip_unless("opus")
    lines = offer([97, 101]).replace("telephone-event/8000", f"telephone-event/{event_rate}")
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=lines)
    final = host.final_for(dialog, "INVITE")
    assert final is not None and f"a=rtpmap:101 telephone-event/{event_rate}" in \
        final.body.decode()
    host.advance(0.1)
    rtp = encode("opus", tone([440.0], 1.0, 48000), 48000)
    packets: list[tuple[int, int, bytes]] = []
    for n, (ts, payload) in enumerate(zip(rtp.timestamps, rtp.payloads, strict=True)):
        packets.append((97, ts, payload))
        if n in (20, 21, 22):  # one press of "5", 60 ms, starting at packet 20
            step = event_rate // 50
            start = 20 * step
            event = bytes(TelephoneEvent(5, n == 22, 10, (n - 19) * step))
            packets.append((101, start, event))
    send(host, packets)
    host.bye(dialog)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    [press] = doc["dtmf"]
    assert press["digit"] == "5" and press["duration_ms"] == 60
    [record] = doc["streams"]
    assert record["packets"]["dropped"] == {} and record["sample_rate"] == 48000
    first = doc["dtmf"][0]["at_s"]
    assert first == pytest.approx(0.1 + 20 * 0.02, abs=0.05)
    track, rate = sf.read(directory / "inbound.wav", dtype="int16")
    assert dominant_frequency(track[rate // 2:-rate // 10], rate) == pytest.approx(440, abs=5)


def test_the_answered_codecs_are_the_list_or_every_one_that_decodes() -> None:
    from srs import codecs
    from srs.recording.policy import answered_codecs

    assert answered_codecs(("pcma", "G722")) == ("PCMA", "G722")
    every = answered_codecs(())
    assert every[:2] == ("PCMU", "PCMA")
    assert {n.upper() for n in every} == codecs.available() - {"CN"}


def test_l16_at_a_rate_no_recorder_writes_is_not_answered(tmp_path: Path) -> None:
    host = CoreHost(tmp_path)
    sdp = offer([0]).replace("RTP/AVP 0", "RTP/AVP 96").replace(
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 L16/300000")
    dialog = host.invite(["inbound"], sdp=sdp)
    final = host.final_for(dialog, "INVITE")
    assert final is not None and final.status == 488


def test_amr_with_crc_or_interleaving_is_not_chosen(tmp_path: Path) -> None:
    """RFC 4867 §8.1: frame CRCs, robust sorting and interleaving change the payload
    format; srs parses neither, so the next offered codec is answered."""
    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=offer([96, 0, 101],
                                                 {96: "octet-align=1; crc=1"}))
    assert answered(host, dialog).endswith("RTP/AVP 0 101")
    assert 96 not in host.stream(0).decoders


def test_a_payload_type_remapped_by_a_reinvite_decodes_each_side_with_its_codec(
    tmp_path: Path
) -> None:
    """RFC 3264 §8.3.2: a new offer may give a dynamic payload type another codec.  The
    packets that arrived before the re-INVITE keep the old codec (L16), those after take
    the new one (PCMA), though both are written by the same file job."""
    def remapped(encoding: str, version: int) -> str:
        return (offer([0], version=version).replace("RTP/AVP 0", "RTP/AVP 96 0")
                .replace("a=label", f"a=rtpmap:96 {encoding}\r\na=label"))

    host = CoreHost(tmp_path)
    dialog = host.invite(["inbound"], sdp=remapped("L16/8000", 1))
    assert answered(host, dialog) == "m=audio 20000 RTP/AVP 96"
    host.advance(0.1)
    start = round((host.now - 1000.0) * 8000)
    low = tone([440.0], 0.3, 8000)
    send(host, [(96, n * 160, low[n * 160:(n + 1) * 160].astype(">i2").tobytes())
                for n in range(15)])
    reanswer = host.reinvite(dialog, remapped("PCMA/8000", 2))
    assert reanswer.status == 200 and b"a=rtpmap:96 PCMA/8000" in reanswer.body
    high = pcma_encode(tone([1000.0], 0.3, 8000))
    for n in range(15):
        host.stream(0).receive(rtp_packet(15 + n, 2400 + n * 160, 0x11,
                                          high[n * 160:(n + 1) * 160], pt=96), SENDER, host.now)
        host.advance(0.02)
    record, track, rate = finish(host, dialog)
    assert rate == 8000 and record["decode_errors"] == 0
    assert dominant_frequency(track[start + 160:start + 2240], 8000) == \
        pytest.approx(440.0, abs=5)
    assert dominant_frequency(track[start + 2560:start + 4640], 8000) == \
        pytest.approx(1000.0, abs=5)
    assert np.abs(track[start + 160:start + 4640]).max() < 14000, "L16 decoded as PCMA"


def test_a_reinvite_that_changes_the_telephone_event_clock_is_followed(tmp_path: Path) -> None:
    """Offered with Opus at telephone-event/48000, then re-offered at /8000: a press after
    the re-INVITE has its duration read on the new clock."""
    skip_unless("opus")
    host = CoreHost(tmp_path)
    first = offer([97, 101]).replace("telephone-event/8000", "telephone-event/48000")
    dialog = host.invite(["inbound"], sdp=first)
    host.advance(0.1)
    rtp = encode("opus", tone([440.0], 1.0, 48000), 48000)
    audio = list(zip(rtp.timestamps, rtp.payloads, strict=True))
    send(host, [(97, ts, p) for ts, p in audio[:10]])
    assert host.reinvite(dialog, offer([97, 101], version=2)).status == 200
    packets: list[tuple[int, int, bytes]] = []
    for n, (ts, payload) in enumerate(audio[10:], start=10):
        packets.append((97, ts, payload))
        if n in (20, 21, 22):  # "5" for 60 ms: durations in 8 kHz units now
            packets.append((101, 20 * 160, bytes(TelephoneEvent(5, n == 22, 10, (n - 19) * 160))))
    for k, (pt, ts, payload) in enumerate(packets, start=10):
        host.stream(0).receive(rtp_packet(k, ts, 0x11, payload, pt=pt), SENDER, host.now)
        host.advance(0.02)
    host.bye(dialog)
    [directory] = host.sessions()
    [press] = json.loads((directory / "session.json").read_text())["dtmf"]
    assert press["digit"] == "5" and press["duration_ms"] == 60
