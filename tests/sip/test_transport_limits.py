"""SipTransports under hostile connections and sends, on loopback sockets.

A second loopback address (127.0.0.2) stands for another host, so that per-source limits
apply to it and not to the client that is expected to be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from srs.config import TlsSettings
from srs.server.tls import ensure_self_signed, server_context
from srs.sip import transport
from srs.sip.parser import SipMessageError
from srs.sip.transport import Peer, SipTransports

OTHER_HOST = "127.0.0.2"


def options(call_id: str, *, cseq: bool = True) -> bytes:
    return (f"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:a@x>;tag=1\r\nTo: <sip:srs@x>\r\nCall-ID: {call_id}\r\n"
            + ("CSeq: 1 OPTIONS\r\n" if cseq else "")
            + "Content-Length: 0\r\n\r\n").encode()


def other_host_usable() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((OTHER_HOST, 0))
    except OSError:
        return False
    return True


needs_other_host = pytest.mark.skipif(not other_host_usable(),
                                      reason=f"{OTHER_HOST} is not a local address here")


class Harness:
    def __init__(self, sip: SipTransports) -> None:
        self.sip = sip
        self.messages: list[tuple[Any, Peer]] = []
        self.errors: list[tuple[SipMessageError, Peer]] = []
        self.arrived = asyncio.Event()

    def on_message(self, message: Any, peer: Peer) -> None:
        self.messages.append((message, peer))
        self.arrived.set()

    def on_parse_error(self, error: SipMessageError, peer: Peer) -> None:
        self.errors.append((error, peer))
        self.arrived.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):  # counters set no event: re-check
                    await asyncio.wait_for(self.arrived.wait(), 0.05)

    async def connect(self, source: str = "127.0.0.1", port: int | None = None,
                      tls: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return await asyncio.open_connection(
            "127.0.0.1", port or self.sip.tcp_port, local_addr=(source, 0), ssl=context)


def run(body: Callable[[Harness], Awaitable[None]], *, loop: str = "asyncio",
        tls_dir: Path | None = None, **kwargs: Any) -> None:
    async def main() -> None:
        context = None
        if tls_dir is not None:
            cert, key, _ = ensure_self_signed(tls_dir)
            context = server_context(cert, key, TlsSettings())
        holder: list[Harness] = []
        sip = SipTransports(host="127.0.0.1", port=5060, tls_port=5061 if context else 0,
                            tls_context=context, ephemeral=True,
                            on_message=lambda m, p: holder[0].on_message(m, p),
                            on_parse_error=lambda e, p: holder[0].on_parse_error(e, p),
                            **kwargs)
        holder.append(Harness(sip))
        await sip.start()
        try:
            await asyncio.wait_for(body(holder[0]), 30)
        finally:
            await sip.close()

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())


async def closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """Wait until the server closes the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionResetError, ssl.SSLError):
        return True
    return True


# -- accepting ----------------------------------------------------------------------------


@needs_other_host
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_source_outside_the_allow_list_is_closed_before_a_byte_is_read(
    loop: str, tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        for tls in (False, True):
            port = h.sip.bound_tls_port if tls else h.sip.tcp_port
            # The TLS client's handshake fails: the server closed without answering it.
            try:
                reader, writer = await h.connect(OTHER_HOST, port, tls=tls)
                writer.write(options(f"outside-{tls}"))
                assert await closed(reader)
                writer.close()
            except (ssl.SSLError, ConnectionResetError):
                assert tls
            reader, writer = await h.connect("127.0.0.1", port, tls=tls)
            writer.write(options(f"inside-{tls}"))
            name = "tls" if tls else "tcp"
            await h.wait(lambda: any(p.transport == name for _, p in h.messages))  # noqa: B023 - awaited here
            writer.close()
        assert h.sip.counters["connections_not_allowed"] == 2
        assert h.sip.counters["tls_handshake_failed"] == 0  # no handshake was attempted
        assert [m.headers.get("Call-ID") for m, _ in h.messages] == ["inside-False",
                                                                     "inside-True"]

    run(body, loop=loop, tls_dir=tmp_path,
        allow_networks=[ipaddress.ip_network("127.0.0.1/32")])


@needs_other_host
def test_one_source_is_capped_and_the_others_are_served() -> None:
    async def body(h: Harness) -> None:
        held = [await h.connect(OTHER_HOST) for _ in range(3)]
        reader, writer = await h.connect(OTHER_HOST)
        assert await closed(reader)  # the fourth from that host
        writer.close()
        assert h.sip.counters["connections_refused_source"] == 1
        _, mine = await h.connect("127.0.0.1")
        mine.write(options("served"))
        await h.wait(lambda: bool(h.messages))
        assert h.messages[0][1].host == "127.0.0.1"
        assert len(h.sip.connections) == 4
        for _, w in [*held, (None, mine)]:
            w.close()

    run(body, max_connections_per_ip=3)


@needs_other_host
def test_a_full_server_evicts_the_oldest_silent_connection_and_refuses_when_none_is() -> None:
    calls: set[int] = set()  # connection ids that carry a dialog (SipCore.connection_in_use)

    async def body(h: Harness) -> None:
        first, _ = await h.connect(OTHER_HOST)
        second, second_w = await h.connect(OTHER_HOST)
        await h.wait(lambda: len(h.sip.connections) == 2)
        _, w = await h.connect("127.0.0.1")
        assert await closed(first)  # the oldest that has sent nothing made way
        assert h.sip.counters["connections_evicted"] == 1
        w.write(options("newcomer"))
        second_w.write(options("second"))
        await h.wait(lambda: len(h.messages) == 2)
        # Both have sent a message; neither carries a call: a message earns no seat, the
        # oldest makes way (16 hosts sending one OPTIONS per connection shut nobody out).
        third, third_w = await h.connect(OTHER_HOST)
        assert await closed(second)
        assert h.sip.counters["connections_evicted"] == 2
        # Both remaining carry a call now: a newcomer is refused.
        third_w.write(options("third"))
        await h.wait(lambda: len(h.messages) == 3)
        calls.update(h.sip.connections)
        fourth, fourth_w = await h.connect(OTHER_HOST)
        assert await closed(fourth)
        assert h.sip.counters["connections_refused"] == 1
        assert len(h.sip.connections) == 2
        assert not third.at_eof()
        for writer in (w, second_w, third_w, fourth_w):
            writer.close()

    run(body, max_connections=2, in_use=lambda connection_id: connection_id in calls)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_without_a_complete_first_message_is_closed_at_its_deadline(
    loop: str, tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        silent, silent_w = await h.connect()
        partial, partial_w = await h.connect()
        partial_w.write(options("partial")[:40])
        # A TCP connection that never starts its TLS handshake.
        no_tls, no_tls_w = await h.connect(port=h.sip.bound_tls_port)
        _, talker_w = await h.connect()
        talker_w.write(options("talker"))
        await h.wait(lambda: len(h.messages) == 1)
        for reader in (silent, partial, no_tls):
            assert await closed(reader)
        # The silent TLS one meets two deadlines at once, the sweep's and the handshake's
        # (ssl_handshake_timeout): whichever fires first closes and counts it.
        counters = h.sip.counters
        assert counters["first_message_timeout"] >= 2
        assert counters["first_message_timeout"] + counters["tls_handshake_failed"] == 3
        # The connection that sent a message within its deadline is still served.
        talker_w.write(options("talker-again"))
        await h.wait(lambda: len(h.messages) == 2)
        assert h.sip.counters["idle_closed"] == 0
        for writer in (silent_w, partial_w, no_tls_w, talker_w):
            writer.close()

    run(body, loop=loop, tls_dir=tmp_path, first_message_timeout_s=0.3)


def test_a_sweep_works_on_what_is_due_not_on_every_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_at: list[int] = []
    deadline = transport._Stream.deadline

    def counted(stream: transport._Stream, first_s: float, idle_s: float) -> float:
        looked_at.append(stream.peer.connection_id or 0)
        return deadline(stream, first_s, idle_s)

    monkeypatch.setattr(transport._Stream, "deadline", counted)

    async def body(h: Harness) -> None:
        talkers = []
        for i in range(50):
            talkers.append(await h.connect())
            talkers[-1][1].write(options(f"talker-{i}"))
        await h.wait(lambda: len(h.messages) == 50)
        # Each talker's first-message entry comes due once and is put back at its idle
        # deadline, an hour away.
        far = asyncio.get_running_loop().time() + 1800
        await h.wait(lambda: all(due > far for due, _ in h.sip._deadlines))
        looked_at.clear()
        _, silent = await h.connect()
        await h.wait(lambda: h.sip.counters["first_message_timeout"] == 1)
        assert len(looked_at) == 1  # the silent connection; none of the 50 others
        for _, writer in [*talkers, (None, silent)]:
            writer.close()

    run(body, first_message_timeout_s=0.2, idle_timeout_s=3600)


# -- framing ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_message_behind_a_bad_one_is_processed_without_more_bytes(loop: str) -> None:
    async def body(h: Harness) -> None:
        _, writer = await h.connect()
        writer.write(options("bad", cseq=False) + options("good"))  # one segment
        await h.wait(lambda: len(h.messages) == 1)
        assert [str(e) for e, _ in h.errors] == ["missing CSeq"]
        assert h.messages[0][0].headers.get("Call-ID") == "good"
        writer.close()

    run(body, loop=loop)


# -- sending ------------------------------------------------------------------------------


def test_sends_to_gone_closing_or_slow_connections_are_counted_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "MAX_WRITE_BUFFER_BYTES", 0)

    async def body(h: Harness) -> None:
        counters = h.sip.counters
        h.sip.send(Peer("tcp", "127.0.0.1", 9, 12345), b"nobody")
        assert counters["send_no_connection"] == 1
        # A connection whose transport is closing (asyncio took its EOF, say).
        _, writer = await h.connect()
        writer.write(options("closing"))
        await h.wait(lambda: len(h.messages) == 1)
        peer = h.messages[0][1]
        stream = h.sip.connections[peer.connection_id or 0]
        assert stream.transport is not None
        stream.transport.close()
        h.sip.send(peer, b"late")
        assert counters["send_dropped"] == 1
        writer.close()
        # A peer that does not read: the write buffer fills, the connection is aborted.
        _, slow = await h.connect()
        slow.write(options("slow"))
        await h.wait(lambda: len(h.messages) == 2)
        peer = h.messages[1][1]
        for _ in range(200):
            h.sip.send(peer, b"x" * (1 << 20))
            if counters["slow_peer_closed"]:
                break
            await asyncio.sleep(0)
        assert counters["slow_peer_closed"] == 1
        h.sip.send(peer, b"after")
        assert counters["send_no_connection"] == 2
        slow.close()

    run(body)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_udp_sends_to_unusable_destinations_are_dropped_without_a_lookup(loop: str) -> None:
    async def body(h: Harness) -> None:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        port = receiver.getsockname()[1]
        loop_ = asyncio.get_running_loop()
        try:
            # A name (asyncio would resolve "localhost" and deliver), IPv6 on an IPv4
            # socket, ports out of range (asyncio closes its UDP transport on those), a
            # broadcast the socket may not send to.
            for host, to in (("localhost", port), ("::1", port), ("127.0.0.1", 0),
                             ("127.0.0.1", 70000), ("not an address", port),
                             ("255.255.255.255", port)):
                h.sip.send(Peer("udp", host, to), b"must not arrive")
            dropped = h.sip.counters["udp_send_dropped"] + h.sip.counters["udp_errors"]
            assert dropped >= 5
            h.sip.send(Peer("udp", "127.0.0.1", port), b"marker")  # the socket still works
            data = await asyncio.wait_for(loop_.sock_recv(receiver, 100), 5)
            assert data == b"marker"
        finally:
            receiver.close()

    run(body, loop=loop)
