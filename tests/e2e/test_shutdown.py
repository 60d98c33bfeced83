"""SIGTERM while INVITEs are being taken: whatever was started is finalised."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SrsServer, read_sidecar
from tests.e2e.sipwire import RawSiprecCall

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_right_after_invites_leaves_no_unfinished_session(
    srs_server: SrsServer, round_: int
) -> None:
    calls = [RawSiprecCall(srs_server.sip_port) for _ in range(5)]
    try:
        for call in calls:
            data = call.invite_bytes(
                headers={srs_server.auth_header: srs_server.token},
                media_port=40000,
                labels=("inbound", "outbound"),
                custom={},
            )
            call.sock.sendto(data, ("127.0.0.1", srs_server.sip_port))
        assert srs_server.stop() == 0
    finally:
        for call in calls:
            call.close()
    for directory in srs_server.session_dirs():
        sidecar = read_sidecar(directory)
        assert sidecar is not None, f"{directory} has no session.json: {list(directory.iterdir())}"
        assert sidecar["status"] != "recording", (directory, sidecar["status"])
    assert "Traceback" not in srs_server.log_text()
