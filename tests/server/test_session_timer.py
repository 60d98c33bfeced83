"""RFC 4028 session expiry on a running server, over loopback: a recording client that
negotiates a session timer and then never refreshes gets a BYE from srs, and what it
sent until then is recorded and finalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srs.sip.message import SipRequest, build_response
from tests.conftest import TOKEN, start_server
from tests.server.test_app import dominant_hz, read
from tests.sipclient import SipClient, send_tones

INTERVAL_S = 6  # the BYE is due 4 s after the 200 (RFC 4028 §10: less min(32, 6/3))


def test_a_session_whose_refresh_is_missing_is_ended_by_srs(tmp_path: Path) -> None:
    server = start_server(tmp_path, sip={"min_se_s": 2})
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        call, answer = client.invite(headers=[("Session-Expires", str(INTERVAL_S)),
                                              ("Supported", "timer")])
        assert answer.status == 200
        assert answer.headers.get("Session-Expires") == f"{INTERVAL_S};refresher=uac"
        assert answer.headers.get("Require") == "timer"
        send_tones(call.ports, (440.0, 1000.0), packets=50)
        bye = client.receive(timeout=15.0)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.call_id == call.call_id
        client.send(bytes(build_response(bye, 200)))
        [doc] = server.wait_sidecar()
    finally:
        client.close()
        server.stop()
    assert doc["end_reason"] == "timeout"
    directory = server.sessions()[0]
    inbound, outbound = read(directory / "inbound.wav"), read(directory / "outbound.wav")
    # The tones, where they landed (after the INVITE), then silence until the BYE.
    for track, hz in ((inbound, 440), (outbound, 1000)):
        start = int(np.flatnonzero(track)[0])
        assert dominant_hz(track[start:start + 8000]) == pytest.approx(hz, abs=2)
        assert not track[start + 8000 + 160:].any()
        assert len(track) >= start + 8000


def test_an_interval_below_min_se_is_422(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    client = SipClient("127.0.0.1", server.sip_port, token=TOKEN)
    try:
        _, answer = client.invite(headers=[("Session-Expires", "30"), ("Supported", "timer")])
    finally:
        client.close()
        server.stop()
    assert (answer.status, answer.headers.get("Min-SE")) == (422, "90")
    assert server.sessions() == []
