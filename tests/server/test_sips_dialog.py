"""A ``sips:`` dialog over loopback: created over TLS, it takes no request over UDP or
TCP (403), and the session goes on until the BYE that comes over TLS."""

from __future__ import annotations

import pytest

from tests.conftest import TOKEN, RunningServer
from tests.server.test_app import dominant_hz, read
from tests.sipclient import SipClient, send_tones


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_sips_dialog_refuses_requests_not_over_tls(server: RunningServer,
                                                     transport: str) -> None:
    tls = SipClient("127.0.0.1", server.tls_port, "tls", token=TOKEN)
    tls.scheme = "sips"
    other = SipClient("127.0.0.1", server.sip_port, transport, token=TOKEN)
    other.scheme = "sips"
    try:
        call, answer = tls.invite()
        assert answer.status == 200
        assert str(answer.contact).startswith("<sips:")
        send_tones(call.ports, (440.0, 1000.0), packets=50)
        assert other.bye(call).status == 403  # the BYE over a plain transport
        for method in ("UPDATE", "INFO"):
            call.cseq += 1
            other.request(method, call)
            assert other.final().status == 403
        server.wait_event("request_refused", status=403)
        assert tls.bye(call).status == 200
    finally:
        tls.close()
        other.close()
    [doc] = server.wait_sidecar()
    assert doc["end_reason"] == "bye"
    assert [s["packets"]["received"] for s in doc["streams"]] == [50, 50]
    directory = server.sessions()[0]
    assert dominant_hz(read(directory / "inbound.wav")) == pytest.approx(440, abs=2)
    assert dominant_hz(read(directory / "outbound.wav")) == pytest.approx(1000, abs=2)
