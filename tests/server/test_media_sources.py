"""Media only from the call's sender, over loopback sockets: an off-path host (127.0.0.2,
another address of the loopback network) that sends to a call's port first, and again
after the sender goes quiet, never gets into the recording."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from srs.codecs.g711 import pcmu_decode, pcmu_encode
from tests.conftest import TOKEN, RunningServer, start_server
from tests.ops.test_wired import get, samples
from tests.sipclient import RtpSender, SipClient, rtp_packet, tone

OFF_PATH_HOST = "127.0.0.2"


def test_an_off_path_sender_is_refused_and_counted(tmp_path: Path) -> None:
    server = start_server(tmp_path, management={"ephemeral_port": True})
    try:
        run_call(server)
    finally:
        server.stop()


def foreign_metric(port: int) -> float | None:
    _, payload = get(port, "/metrics")
    key = ("srs_rtp_packets_dropped_total", (("reason", "foreign_source"),))
    return samples(payload).get(key)


def run_call(server: RunningServer) -> None:
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    call, answer = client.invite(labels=("caller",), with_metadata=False)
    assert answer.status == 200
    port = call.ports[0]
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind((OFF_PATH_HOST, 0))
    loud = b"\x80" * 160  # PCMU's loudest positive code
    try:
        for n in range(20):
            intruder.sendto(rtp_packet(n, n * 160, 0x6666, loud), ("127.0.0.1", port))
        time.sleep(0.1)
        sender = RtpSender(port, ssrc=0x1111)
        sent = []
        t0 = time.monotonic()
        for n in range(50):
            payload = pcmu_encode(tone(700.0, n * 160, 160) + 300)
            sender.send(rtp_packet(1000 + n, 5000 + n * 160, 0x1111, payload))
            sent.append(pcmu_decode(payload))
            time.sleep(max(0.0, t0 + 0.02 * (n + 1) - time.monotonic()))
        sender.close()
        time.sleep(0.7)  # the sender is quiet: a relatch would be allowed for it
        for n in range(20):
            intruder.sendto(rtp_packet(100 + n, 0, 0x6666, loud), ("127.0.0.1", port))
        time.sleep(0.1)
    finally:
        intruder.close()
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    [stream] = doc["streams"]
    assert stream["packets"]["dropped"] == {"foreign_source": 40}
    assert stream["packets"]["received"] == 50 and stream["ssrcs"] == [0x1111]
    track, _ = sf.read(server.sessions()[0] / "caller.wav", dtype="int16")
    audio = np.concatenate(sent)
    start = int(np.flatnonzero(track)[0])
    np.testing.assert_array_equal(track[start:start + len(audio)], audio)
    assert not track[start + len(audio):].any()
    deadline = time.monotonic() + 10
    while foreign_metric(server.management_port) is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the metrics are added once the finished session is measured
    assert foreign_metric(server.management_port) == 40
