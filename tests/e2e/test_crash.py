"""kill -9 in the middle of a call, then a restart on the same directories.

The call is a raw SIPREC INVITE over UDP and the RTP of the two-tone capture, sent by the
test itself so that it can pull the plug between two packets.  After the restart the
interrupted session must have been repaired: status ``interrupted``, and WAV files whose
headers match their data and that hold the tones received before the kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf

from tests.e2e.audio import dominant_frequency, loud_span, riff_layout
from tests.e2e.conftest import PACKET_SAMPLES, SrsServer, TwoTonePcap, read_sidecar
from tests.e2e.pcap import read_pcap
from tests.e2e.sipwire import RawSiprecCall, answer_audio_ports
from tests.sipclient import send_tones

pytestmark = pytest.mark.peers

LABELS = ("inbound", "outbound")
RATE_HZ = 8000
HEADER_BYTES_MIN = 44
# Kill once this many packets per stream are out and both files hold samples on disk
# (srs writes audio out about two seconds behind its arrival, once a second).
MIN_PACKETS_BEFORE_KILL = 75
MAX_PACKETS = 500  # 10 s of RTP at most


def _looped(payloads: list[bytes], count: int) -> list[bytes]:
    """The capture's packets played round and round as one continuous RTP stream."""
    first = payloads[0]
    seq0, ts0 = int.from_bytes(first[2:4], "big"), int.from_bytes(first[4:8], "big")
    out = []
    for n in range(count):
        packet = bytearray(payloads[n % len(payloads)])
        packet[2:4] = ((seq0 + n) % 65536).to_bytes(2, "big")
        packet[4:8] = ((ts0 + n * PACKET_SAMPLES) % 2**32).to_bytes(4, "big")
        out.append(bytes(packet))
    return out


def _has_samples(path: Path) -> bool:
    try:
        return riff_layout(path).data_size > 0
    except (OSError, ValueError, IndexError):
        return False


def test_kill_9_mid_call_is_repaired_on_restart(
    srs_server: SrsServer, two_tone_pcap: TwoTonePcap
) -> None:
    pcap = read_pcap(two_tone_pcap.path)
    streams = [
        _looped(
            [r.payload for r in pcap.records if r.dst_port == two_tone_pcap.base_port + 2 * n],
            MAX_PACKETS,
        )
        for n in range(2)
    ]
    call = RawSiprecCall(srs_server.sip_port)
    try:
        response = call.invite(
            headers={srs_server.auth_header: srs_server.token},
            media_port=40000,
            labels=LABELS,
            custom={"ticket": "crash-1"},
        )
        assert response.status == 200, response.raw.decode(errors="replace")
        call.ack()
        ports = answer_audio_ports(response.body)
        assert len(ports) == 2, response.body
        [directory] = srs_server.session_dirs()
        files = [directory / f"{label}.wav" for label in LABELS]

        sent_before_kill = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
            start = time.monotonic()
            for n, packets in enumerate(zip(*streams, strict=False)):
                for port, packet in zip(ports, packets, strict=True):
                    # ConnectionRefusedError: the ICMP of an earlier packet, post-kill.
                    with contextlib.suppress(ConnectionRefusedError):
                        rtp.sendto(packet, ("127.0.0.1", port))
                if (
                    srs_server.running()
                    and n + 1 >= MIN_PACKETS_BEFORE_KILL
                    and all(_has_samples(f) for f in files)
                ):
                    srs_server.kill()  # SIGKILL while the RTP keeps coming
                    sent_before_kill = n + 1
                if sent_before_kill and n + 1 >= sent_before_kill + 10:
                    break
                # 20 ms packets on an absolute schedule.
                time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
        assert sent_before_kill, "the files never held samples while the RTP was sent"
    finally:
        call.close()

    before = read_sidecar(directory)
    assert before is not None and before["status"] == "recording", before

    srs_server.start()  # same config and directories, new ports; repair runs before listening
    [(repaired_dir, sidecar)] = srs_server.wait_sessions(1, status="interrupted")
    assert repaired_dir == directory
    assert sidecar["end_reason"] == "crash"
    assert sidecar["ended_at"] is not None
    assert sidecar["call_id"] == call.call_id
    assert sidecar["custom_parameters"]["ticket"] == "crash-1"

    lengths = []
    for path, stream, freq in zip(files, sidecar["streams"], two_tone_pcap.freqs_hz, strict=True):
        layout = riff_layout(path)
        assert layout.data_offset >= HEADER_BYTES_MIN
        assert layout.riff_size == layout.file_bytes - 8, path
        assert layout.data_offset + layout.data_size == layout.file_bytes, path
        assert (layout.channels, layout.rate_hz, layout.bits) == (1, RATE_HZ, 16)
        info = sf.info(path)
        assert info.frames == layout.frames > 0, path
        samples, _ = sf.read(path, dtype="int16")
        assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq, abs=5), path
        span = loud_span(samples)
        assert span is not None and span.gaps == 0, (path, span)
        # Only what arrived before the kill can be in the file.
        assert PACKET_SAMPLES <= span.samples <= sent_before_kill * PACKET_SAMPLES, span
        assert stream["duration_s"] == pytest.approx(info.frames / RATE_HZ, abs=0.001)
        lengths.append(info.frames)

    mix = directory / "mix.wav"
    if sidecar.get("mix"):
        info = sf.info(mix)
        assert (info.channels, info.samplerate) == (2, RATE_HZ)
        assert info.frames == max(lengths)
    assert "Traceback" not in srs_server.log_text()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the media workers of an ``srs serve``)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def test_kill_9_of_the_signalling_process_leaves_the_workers_to_finalise_their_calls(
    srs_server_factory: Callable[..., SrsServer],
) -> None:
    """Only the signalling process dies (a kill -9 of its pid, not of the group): each
    media worker finalises what it recorded, every packet of it, as ``interrupted``, and
    exits; the next start leaves those sessions as they are."""
    srs_server = srs_server_factory(media={"workers": 2})
    assert srs_server.proc is not None
    workers = _children(srs_server.proc.pid)
    assert len(workers) == 2, workers
    call = RawSiprecCall(srs_server.sip_port)
    try:
        response = call.invite(headers={srs_server.auth_header: srs_server.token},
                               media_port=40000, labels=LABELS, custom={"ticket": "crash-2"})
        assert response.status == 200, response.raw.decode(errors="replace")
        call.ack()
        ports = answer_audio_ports(response.body)
        send_tones(ports, (440.0, 1000.0), 100)
        os.kill(srs_server.proc.pid, signal.SIGKILL)
        srs_server.proc.wait(10)
    finally:
        call.close()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "the media workers outlived their server"
        time.sleep(0.05)
    [directory] = srs_server.session_dirs()
    sidecar = read_sidecar(directory)
    assert sidecar is not None
    assert (sidecar["status"], sidecar["end_reason"]) == ("interrupted", "crash")
    assert [s["packets"]["received"] for s in sidecar["streams"]] == [100, 100]
    for label, freq in zip(LABELS, (440.0, 1000.0), strict=True):
        samples, _ = sf.read(directory / f"{label}.wav", dtype="int16")
        assert dominant_frequency(samples, RATE_HZ) == pytest.approx(freq, abs=5)
        span = loud_span(samples)
        assert span is not None and span.gaps == 0
        assert span.samples >= 99 * PACKET_SAMPLES  # the last second is there too
    assert (directory / "mix.wav").exists()
    srs_server.start()  # repair leaves a final session alone
    assert read_sidecar(directory) == sidecar
