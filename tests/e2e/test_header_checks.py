"""RFC 4475 messages whose documented answers (tests/data/rfc4475/README.md) come from the
UAS core's header checks: Require on any request (420), Request-URI scheme (416), and an
INVITE whose Accept excludes SDP (406)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SrsServer
from tests.e2e.test_hostile import TORTURE, _statuses, _tcp_exchange, _with_header

pytestmark = pytest.mark.peers

HEADER_CHECKS = {
    "bext01": [420],  # OPTIONS with two unknown Require tags: 420 with Unsupported
    "unkscm": [416],  # Request-URI of an unknown scheme
    "novelsc": [416],  # soap.beep: Request-URI
}


def test_documented_answers_over_tcp(srs_server: SrsServer) -> None:
    messages = {name: (TORTURE / f"{name}.dat").read_bytes() for name in HEADER_CHECKS}
    received = _tcp_exchange(srs_server.sip_port, messages)
    assert {n: _statuses(d) for n, d in received.items()} == HEADER_CHECKS


def test_sdp01_gets_406_with_the_credential(srs_server: SrsServer) -> None:
    header = f"{srs_server.auth_header}: {srs_server.token}".encode()
    data = _with_header((TORTURE / "sdp01.dat").read_bytes(), header)
    received = _tcp_exchange(srs_server.sip_port, {"sdp01": data})
    assert _statuses(received["sdp01"])[-1] == 406
