"""The operations features wired into a running srs: a call, then /metrics, /readyz and
the webhook as an operator sees them."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from srs.ops.webhook.signing import verify
from tests.conftest import TOKEN, start_server
from tests.ops.receiver import Script, receiver
from tests.sipclient import SipClient, send_tones

SECRET = "wired-test-secret-0123456789"


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def samples(payload: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(payload.decode()) for s in f.samples}


def test_a_call_shows_in_metrics_and_reaches_the_webhook(tmp_path: Path) -> None:
    script = Script(statuses=[503])
    with receiver(script) as url:
        server = start_server(tmp_path, management={"ephemeral_port": True},
                              webhook={"url": url, "secret": SECRET})
        try:
            port = server.management_port
            assert get(port, "/readyz") == (200, b"ready\n")
            client = SipClient("127.0.0.1", server.sip_port, "udp", token=TOKEN)
            try:
                call, answer = client.invite()
                assert answer.status == 200
                send_tones(call.ports, (440.0, 1000.0), packets=25)
                assert client.bye(call).status == 200
                bad = SipClient("127.0.0.1", server.sip_port, "udp", token="wrong")
                bad.invite()
                bad.close()
            finally:
                client.close()
            server.wait_sidecar()
            seen = script.wait_for(2)  # a 503, then the delivery
            status, payload = get(port, "/metrics")
            assert status == 200
            values = samples(payload)
            assert values[("srs_sessions_finished_total", (("status", "complete"),))] == 1
            assert values[("srs_sessions_active", ())] == 0
            assert values[("srs_sip_requests_total", (("method", "INVITE"),))] >= 2
            assert values[("srs_sip_responses_total", (("status", "200"),))] >= 2
            assert values[("srs_auth_failures_total", ())] == 1
            assert values[("srs_rtp_packets_received_total", ())] == 50
            assert values[("srs_recording_bytes_written_total", ())] > 3 * 8000
            assert values[("srs_recordings_free_bytes", ())] > 0
            assert seen[0].headers["X-Srs-Delivery"] == seen[1].headers["X-Srs-Delivery"]
            assert verify(SECRET, seen[1].headers["X-Srs-Timestamp"],
                          seen[1].headers["X-Srs-Signature"], seen[1].body, now=time.time()).ok
            doc = json.loads(seen[1].body)
            assert doc["session"]["status"] == "complete"
            assert SECRET not in server.log()
        finally:
            server.stop()
