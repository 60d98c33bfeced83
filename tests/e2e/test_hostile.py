"""Hostile input at a running server: the RFC 4475 torture messages over UDP and TCP.

Whatever the messages are, the server must keep answering, log no traceback and record
nothing.  Over TCP the responses come back on the connection, so there the documented
answers (tests/data/rfc4475/README.md) are checked too.
"""

from __future__ import annotations

import re
import select
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import SrsServer, read_sidecar
from tests.e2e.sipwire import parse_response, sip_options

pytestmark = pytest.mark.peers

TORTURE = Path(__file__).parent.parent / "data" / "rfc4475"
FILES = sorted(TORTURE.glob("*.dat"))
RESPONSE_WAIT_S = 3.0

# Valid datagram-only messages: over a stream, dblreq's trailing INVITE is a second
# message, and messages without Content-Length cannot be framed on a stream (RFC 3261
# §18.3 requires it there).
DATAGRAM_ONLY = {"dblreq", "inv2543", "clerr"}


def _assert_alive(server: SrsServer) -> None:
    assert server.running(), f"srs exited; log:\n{server.log_tail()}"
    response = sip_options(server.sip_port, timeout_s=2.0)
    assert response is not None and response.status == 200, server.log_tail()
    assert "Traceback" not in server.log_text(), server.log_text()
    assert server.session_dirs() == []


def test_torture_files_exist() -> None:
    assert len(FILES) >= 45, FILES


def test_torture_messages_over_udp(srs_server: SrsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for path in FILES:
            sock.sendto(path.read_bytes(), ("127.0.0.1", srs_server.sip_port))
        # Each message is also sent a second time, as a retransmission would be.
        for path in FILES:
            sock.sendto(path.read_bytes(), ("127.0.0.1", srs_server.sip_port))
    _assert_alive(srs_server)


def _tcp_exchange(port: int, messages: dict[str, bytes]) -> dict[str, bytes]:
    """Each message on its own connection, all at once; what came back on each.

    Waits until every request has a final response on its connection (or the time is up);
    what a response sent as a request gets back is read in the meantime.
    """
    conns = {}
    try:
        for name, data in messages.items():
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(data)
            conns[name] = conn
        received = {name: b"" for name in conns}
        open_ = {conn.fileno(): name for name, conn in conns.items()}
        deadline = time.monotonic() + RESPONSE_WAIT_S
        def answered(name: str) -> bool:
            statuses = _statuses(received[name])
            return messages[name].startswith(b"SIP/2.0") or bool(statuses and statuses[-1] >= 200)

        while (
            open_
            and not all(answered(name) for name in conns)
            and (left := deadline - time.monotonic()) > 0
        ):
            readable, _, _ = select.select(list(open_), [], [], left)
            for fd in readable:
                name = open_[fd]
                chunk = conns[name].recv(65536)
                received[name] += chunk
                if not chunk:
                    del open_[fd]
        return received
    finally:
        for conn in conns.values():
            conn.close()


def _statuses(data: bytes) -> list[int]:
    """Status codes of the responses in a stream (they all have Content-Length: 0 or a body)."""
    statuses = []
    while data.startswith(b"SIP/2.0 "):
        head, _, rest = data.partition(b"\r\n\r\n")
        response = parse_response(head + b"\r\n\r\n")
        statuses.append(response.status)
        length = int(response.header("content-length") or 0)
        data = rest[length:]
    return statuses


def _each(names: list[str], statuses: list[int]) -> dict[str, list[int]]:
    """The same expected statuses for each name, a list of its own for each."""
    return {name: list(statuses) for name in names}


# What srs answers on a connection (tests/data/rfc4475/README.md, and srs's README: an
# INVITE without the credentials header gets 403 before anything else is looked at).
EXPECTED_TCP = {
    **_each(
        ["badaspec", "baddn", "badinv01", "escruri", "insuf", "ltgtruri", "lwsruri",
         "mcl01", "mismatch01", "mismatch02", "multi01", "ncl", "quotbal", "regbadct",
         "scalar02"],
        [400],
    ),
    "badvers": [505],
    # Responses match no client transaction: dropped, nothing sent back.
    **_each(["bcast", "bigcode", "noreason", "scalarlg", "unreason"], []),
    # REGISTER and unknown methods: srs is not a registrar.
    **_each(
        ["cparam01", "cparam02", "esc02", "escnull", "intmeth", "mpart01", "regaut01",
         "regescrt", "unksm2"],
        [405],
    ),
    # Dialog-creating INVITEs without the credential: one stateless 403, no 100 first.
    **_each(["baddate", "esc01", "invut", "longreq", "lwsstart", "sdp01"], [403]),
    # An INVITE with a To tag matching no dialog: a stateless 481.
    "wsinv": [481],
    # OPTIONS.
    **_each(
        ["badbranch", "lwsdisp", "semiuri", "transports", "trws", "zeromf"], [200]
    ),
}


def test_torture_messages_over_tcp(srs_server: SrsServer) -> None:
    messages = {p.stem: p.read_bytes() for p in FILES if p.stem in EXPECTED_TCP}
    received = _tcp_exchange(srs_server.sip_port, messages)
    statuses = {name: _statuses(data) for name, data in received.items()}
    assert statuses == {name: EXPECTED_TCP[name] for name in messages}
    _assert_alive(srs_server)


# INVITEs that parse (the others are logged as parse errors, without a Call-ID).
INVITES_THAT_PARSE = {"baddate", "esc01", "inv2543", "invut", "longreq", "lwsstart", "sdp01",
                      "wsinv"}


def _call_id(message: bytes) -> str:
    match = re.search(rb"^(?:call-id|i)\s*:\s*(\S+)", message, re.IGNORECASE | re.MULTILINE)
    assert match is not None, message[:200]
    return match.group(1).decode()


def _with_header(message: bytes, header: bytes) -> bytes:
    """The message with ``header`` inserted after its start line."""
    start_line, _, rest = message.partition(b"\r\n")
    return start_line + b"\r\n" + header + b"\r\n" + rest


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_authenticated_torture_messages(srs_server: SrsServer, transport: str) -> None:
    """With the credential added, the INVITEs get past authentication into SDP and body
    handling; whatever they start, the server ends cleanly on SIGTERM."""
    header = f"{srs_server.auth_header}: {srs_server.token}".encode()
    messages = {p.stem: _with_header(p.read_bytes(), header) for p in FILES}
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for data in messages.values():
                sock.sendto(data, ("127.0.0.1", srs_server.sip_port))
        # No responses to wait for over UDP (they go to each Via's port): wait until the
        # server has logged every INVITE that parses, by Call-ID, before stopping it.
        for name in sorted(INVITES_THAT_PARSE):
            call_id = _call_id(messages[name])
            srs_server.wait_for_log(lambda event, c=call_id: event.get("call_id") == c)
    else:
        received = _tcp_exchange(
            srs_server.sip_port, {k: v for k, v in messages.items() if k not in DATAGRAM_ONLY}
        )
        # Every request gets a final answer; a response gets nothing.
        for name, data in received.items():
            is_request = not messages[name].startswith(b"SIP/2.0")
            statuses = _statuses(data)
            assert (statuses[-1] >= 200) if is_request else statuses == [], (name, statuses)
    assert srs_server.running(), srs_server.log_tail()
    response = sip_options(srs_server.sip_port, timeout_s=2.0)
    assert response is not None and response.status == 200, srs_server.log_tail()
    assert srs_server.stop() == 0
    assert "Traceback" not in srs_server.log_text(), srs_server.log_text()
    # Whatever sessions the valid INVITEs started were finalised on the way out.
    for directory in srs_server.session_dirs():
        sidecar = read_sidecar(directory)
        assert sidecar is not None and sidecar["status"] != "recording", directory
