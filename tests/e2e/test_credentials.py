"""The credentials header decides, before anything is allocated or written."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SrsServer
from tests.e2e.sipwire import RawSiprecCall, answer_audio_ports

pytestmark = pytest.mark.peers

LABELS = ("inbound", "outbound")


@pytest.mark.parametrize(
    "credential",
    [None, "wrong-token", ""],
    ids=["missing", "wrong", "empty"],
)
def test_invite_without_the_credential_gets_403_and_records_nothing(
    srs_server: SrsServer, credential: str | None
) -> None:
    headers = {} if credential is None else {srs_server.auth_header: credential}
    call = RawSiprecCall(srs_server.sip_port)
    try:
        response = call.invite(headers=headers, media_port=40000, labels=LABELS, custom={})
    finally:
        call.close()
    assert response.status == 403, response.raw.decode(errors="replace")
    assert not response.body
    assert list(srs_server.recordings_dir.rglob("*")) == []
    # The same request with the credential is taken, so the 403 was the credential's doing.
    call = RawSiprecCall(srs_server.sip_port)
    try:
        headers = {srs_server.auth_header: srs_server.token}
        response = call.invite(headers=headers, media_port=40000, labels=LABELS, custom={})
        assert response.status == 200, response.raw.decode(errors="replace")
        ports = answer_audio_ports(response.body)
        assert len(ports) == 2 and ports[1] == ports[0] + 2, response.body
        call.ack()
        assert call.bye().status == 200
    finally:
        call.close()
    [(_directory, sidecar)] = srs_server.wait_sessions(1, status="complete")
    assert sidecar["end_reason"] == "bye"
    assert sidecar["call_id"] == call.call_id
