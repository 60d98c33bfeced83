"""The SIP listeners over real sockets: limits, framing errors, IPv6."""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path

import pytest

from srs.sip import transport
from srs.sip.transport import EPHEMERAL_ATTEMPTS, SipTransports
from tests.conftest import start_server
from tests.sipclient import Call, SipClient

OPTIONS = (
    b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt1\r\n"
    b"From: <sip:a@x>;tag=1\r\nTo: <sip:srs@x>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65535):
            pass
    except (TimeoutError, ConnectionResetError):
        return False
    return True


def test_connection_limit_and_idle_timeout(tmp_path: Path) -> None:
    server = start_server(tmp_path, sip={"max_connections": 2, "idle_timeout_s": 1.0})
    try:
        first = socket.create_connection(("127.0.0.1", server.sip_port))
        second = socket.create_connection(("127.0.0.1", server.sip_port))
        for sock in (first, second):
            sock.sendall(OPTIONS)
            assert sock.recv(65535).startswith(b"SIP/2.0 200 OK")
        # Both have sent a message but neither carries a call: a third takes the oldest's
        # seat (a message alone earns none).
        third = socket.create_connection(("127.0.0.1", server.sip_port))
        assert closed_by_peer(first, 2.0)
        counters = server.app.transports.counters
        assert (counters["connections_evicted"], counters["connections_refused"]) == (1, 0)
        third.sendall(OPTIONS)
        assert third.recv(65535).startswith(b"SIP/2.0 200 OK")
        # The other two go idle and are closed.
        assert closed_by_peer(second, 8.0)
        assert closed_by_peer(third, 8.0)
        assert counters["idle_closed"] == 2
        for sock in (first, second, third):
            sock.close()
    finally:
        server.stop()


def test_unframeable_stream_gets_400_and_is_closed(server) -> None:  # type: ignore[no-untyped-def]
    sock = socket.create_connection(("127.0.0.1", server.sip_port))
    sock.sendall(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: many"))
    sock.settimeout(5)
    data = sock.recv(65535)
    assert data.startswith(b"SIP/2.0 400 ")
    assert closed_by_peer(sock)
    sock.close()
    # The listener still serves.
    client = SipClient("127.0.0.1", server.sip_port, "tcp")
    client.request("OPTIONS", Call("after", "x"), auth=False)
    assert client.final().status == 200
    client.close()


def test_garbage_datagrams_do_not_stop_the_server(server) -> None:  # type: ignore[no-untyped-def]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junks = (b"\x00" * 10, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", bytes(range(256)) * 100)
    for junk in junks:
        sock.sendto(junk, ("127.0.0.1", server.sip_port))
    sock.close()
    client = SipClient("127.0.0.1", server.sip_port)
    client.request("OPTIONS", Call("after-junk", "x"), auth=False)
    assert client.final().status == 200
    client.close()
    assert "Traceback" not in server.log()


def test_ipv6_listener_serves_ipv6_and_ipv4(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 on this host")
    server = start_server(tmp_path, sip={"host": "::"})
    try:
        for family, address in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(5)
            request = OPTIONS.replace(b"SIP/2.0/TCP", b"SIP/2.0/UDP").replace(
                b"branch=z9hG4bKt1", f"branch=z9hG4bK{family};rport".encode()
            )  # a new transaction each; rport: answer to our source port
            sock.sendto(request, (address, server.sip_port))
            data, _ = sock.recvfrom(65535)
            assert data.startswith(b"SIP/2.0 200 OK"), address
            sock.close()
    finally:
        server.stop()


def test_ephemeral_ports_answer_options_on_each_reported_port(tmp_path: Path) -> None:
    server = start_server(tmp_path, management={"ephemeral_port": True})  # sip.ephemeral_ports
    try:
        ports = {"udp": server.sip_port, "tcp": server.tcp_port, "tls": server.tls_port}
        assert all(ports.values()) and ports["udp"] == ports["tcp"] != ports["tls"]
        assert 5060 not in ports.values() and 5061 not in ports.values()
        [listening] = [e for e in server.events() if e["event"] == "listening"]
        assert {name: listening[name] for name in ports} == ports
        assert listening["management"] == server.management_port != 8080
        assert listening["codecs"].split(",")[:4] == ["PCMU", "PCMA", "G722", "G729"]
        for name, port in ports.items():
            client = SipClient("127.0.0.1", port, name)
            try:
                client.request("OPTIONS", Call(f"ephemeral-{name}", "x"), auth=False)
                assert client.final().status == 200, name
            finally:
                client.close()
    finally:
        server.stop()


def _clashing_tcp(monkeypatch: pytest.MonkeyPatch, clashes: int) -> list[int]:
    """Make TCP's bind fail as if taken, ``clashes`` times; returns the UDP ports tried."""
    bound = transport._bound_socket
    tried: list[int] = []

    def bound_socket(family: int, kind: int, host: str, port: int) -> socket.socket:
        if kind == socket.SOCK_STREAM and len(tried) < clashes:
            tried.append(port)
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return bound(family, kind, host, port)

    monkeypatch.setattr(transport, "_bound_socket", bound_socket)
    return tried


def _transports(port: int) -> SipTransports:
    return SipTransports(host="127.0.0.1", port=port, tls_port=0, tls_context=None,
                         on_message=lambda m, p: None, on_parse_error=lambda e, p: None,
                         ephemeral=True)


def test_ephemeral_udp_port_is_changed_until_tcp_can_have_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three attempts to spare: a port the system hands out for UDP may really be taken for
    # TCP by another process now and then (seen once in a full run), which costs one more.
    clashes = EPHEMERAL_ATTEMPTS - 3
    tried = _clashing_tcp(monkeypatch, clashes)

    async def main() -> tuple[int, int]:
        sip = _transports(5060)
        await sip.start()
        try:
            return sip.udp_port, sip.tcp_port
        finally:
            await sip.close()

    udp_port, tcp_port = asyncio.run(main())
    assert len(tried) == clashes and 0 not in tried
    assert udp_port == tcp_port and udp_port not in (0, 5060)


def test_ephemeral_ports_give_up_after_a_bounded_number_of_clashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried = _clashing_tcp(monkeypatch, EPHEMERAL_ATTEMPTS + 5)
    with pytest.raises(OSError, match="in use"):
        asyncio.run(_transports(5060).start())
    assert len(tried) == EPHEMERAL_ATTEMPTS
