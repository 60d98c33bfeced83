"""A send that fails never stops the server: the rest of the batch still runs, the SIP
timer stays armed (retransmissions and timeouts of other transactions keep firing), and
shutdown finalises every session whatever its BYEs' sends do.

The failing send is a transport whose ``send`` raises ``OSError`` for chosen peers, as a
socket does for an unreachable destination."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from srs.server.timer import CoreTimer
from srs.sip.timers import SipTimers
from srs.sip.transport import Peer
from srs.sip.uas import Transmit
from tests.conftest import TOKEN, RunningServer, start_server
from tests.sipclient import Call, SipClient, metadata, multipart, sdp_offer

# RFC 3261 Table 4 at 1/25 scale: a 2xx is retransmitted every 20-160 ms, Timer L
# (the wait for its ACK) ends at 1.28 s.
FAST = SipTimers(t1_s=0.02, t2_s=0.16, t4_s=0.2, timer_d_s=1.28)


class FailingSends:
    """Wraps the server's ``transports.send``: raises ``OSError`` for the peers chosen
    (except for the provisional answers when ``provisional`` is set), passes every other
    send on, and records what it refused."""

    def __init__(self, server: RunningServer, *, provisional: bool = False) -> None:
        self.send: Callable[[Peer, bytes], None] = server.app.transports.send
        self.provisional = provisional
        self.ports: set[int] = set()
        self.everything = False
        self.refused: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()
        server.app.transports.send = self  # type: ignore[method-assign]

    def __call__(self, peer: Peer, data: bytes) -> None:
        passes = self.provisional and data.startswith(b"SIP/2.0 1")
        if (self.everything or peer.port in self.ports) and not passes:
            with self.lock:
                self.refused.append((peer.port, data))
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        self.send(peer, data)

    def refused_to(self, port: int) -> list[bytes]:
        with self.lock:
            return [data for p, data in self.refused if p == port]


@pytest.fixture
def fast_server(tmp_path: Any) -> Iterator[RunningServer]:
    running = start_server(tmp_path)
    # Set before any traffic: each transaction reads its timers when it is created.
    running.app.core.transactions.timers = FAST
    running.app.core.client.timers = FAST
    try:
        yield running
    finally:
        running.stop()


def send_invite(client: SipClient) -> Call:
    """An authenticated SIPREC INVITE, sent without waiting for its answer."""
    call = Call(uuid.uuid4().hex + "@0.0.0.0", uuid.uuid4().hex[:8])
    content_type, body = multipart(sdp_offer([40000, 40002], ["inbound", "outbound"]),
                                   metadata(["inbound", "outbound"]))
    client.request("INVITE", call, body=body, content_type=content_type,
                   headers=[("Require", "siprec")])
    return call


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def sidecar_of(server: RunningServer, call_id: str) -> dict[str, Any] | None:
    for directory in server.sessions():
        doc = json.loads((directory / "session.json").read_text())
        if doc["call_id"] == call_id:
            return doc
    return None


def test_a_failing_send_leaves_the_timer_running_for_other_transactions(
    fast_server: RunningServer,
) -> None:
    # The failing peer's INVITE gets its 100 Trying, so its session starts and its 2xx,
    # whose sends raise, is retransmitted on the same timer as the good peer's.
    failing = FailingSends(fast_server, provisional=True)
    bad = SipClient("127.0.0.1", fast_server.sip_port, token=TOKEN)
    good = SipClient("127.0.0.1", fast_server.sip_port, token=TOKEN)
    failing.ports.add(bad.local_port)
    try:
        send_invite(bad)
        wait_until(lambda: any(d.startswith(b"SIP/2.0 200") for d in failing.refused_to(
            bad.local_port)), "the 200 to the failing peer was attempted")
        call, answer = good.invite(ack=False)
        assert answer.status == 200
        # RFC 6026 §8.1 / RFC 3261 §13.3.1.4: the unacknowledged 2xx is retransmitted…
        again = [good.final(timeout=5.0) for _ in range(3)]
        assert [r.status for r in again] == [200, 200, 200]
        assert {r.to.tag for r in again} == {answer.to.tag}
        # …and the missing ACK ends the session (Timer L): srs sends BYE and finalises.
        bye = good.receive(timeout=10.0)
        while not hasattr(bye, "method"):
            bye = good.receive(timeout=10.0)
        assert bye.method == "BYE"
        wait_until(lambda: (sidecar_of(fast_server, call.call_id) or {}).get("status")
                   == "complete", "the good call's session was finalised")
        doc = sidecar_of(fast_server, call.call_id)
        assert doc is not None and doc["end_reason"] == "timeout"
        # The failing peer's call went on too: its 2xx, retransmitted and refused each
        # time, and the BYE that ended it for want of an ACK.
        refused = failing.refused_to(bad.local_port)
        assert sum(d.startswith(b"SIP/2.0 200") for d in refused) >= 3
        wait_until(lambda: any(d.startswith(b"BYE ") for d in failing.refused_to(
            bad.local_port)), "the failing peer's session ended with a BYE")
    finally:
        bad.close()
        good.close()


def test_one_failing_send_does_not_drop_the_rest_of_its_batch(server: RunningServer) -> None:
    failing = FailingSends(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        failing.ports.add(port + 1)
        udp = Peer("udp", "127.0.0.1", 0)
        batch = [
            # A Via maddr naming a host: never resolved, dropped by the transport.
            Transmit(udp, b"SIP/2.0 200 OK\r\n\r\nname", "sbc.example.com", port),
            Transmit(udp, b"SIP/2.0 200 OK\r\n\r\nraises", "127.0.0.1", port + 1),
            Transmit(udp, b"SIP/2.0 200 OK\r\n\r\ndelivered", "127.0.0.1", port),
        ]
        server.loop.call_soon_threadsafe(server.app._execute, batch)
        data, _ = receiver.recvfrom(65535)
    assert data.endswith(b"delivered")
    assert failing.refused_to(port + 1) == [batch[1].data]
    metrics = asyncio.run_coroutine_threadsafe(_exposition(server), server.loop).result(5)
    assert 'srs_sip_send_errors_total{reason="raised"} 1.0' in metrics
    assert 'srs_sip_send_errors_total{reason="udp_dropped"} 1.0' in metrics
    assert 'srs_sip_send_errors_total{reason="no_connection"} 0.0' in metrics
    failed = server.wait_event("sip_send_failed")
    assert failed["dst"] == f"127.0.0.1:{port + 1}"


async def _exposition(server: RunningServer) -> str:
    return server.app.metrics.exposition().decode()


def test_shutdown_finalises_every_session_when_its_byes_cannot_be_sent(
    server: RunningServer,
) -> None:
    failing = FailingSends(server)
    clients = [SipClient("127.0.0.1", server.sip_port, token=TOKEN) for _ in range(3)]
    try:
        calls = []
        for client in clients:
            call, answer = client.invite()
            assert answer.status == 200
            calls.append(call)
        server.wait_event("session_started")
        failing.everything = True  # from now on every send raises, the BYEs included
        server.stop()  # what SIGTERM runs: Application.shutdown
    finally:
        for client in clients:
            client.close()
    byes = [d for _, d in failing.refused if d.startswith(b"BYE ")]
    assert all(any(call.call_id.encode() in bye for bye in byes) for call in calls)
    for call in calls:
        doc = sidecar_of(server, call.call_id)
        assert doc is not None
        assert (doc["status"], doc["end_reason"]) == ("complete", "shutdown")


def test_the_core_timer_is_re_armed_when_its_work_raises() -> None:
    fired: list[float] = []
    errors: list[BaseException] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        deadlines = [loop.time() + 0.01, loop.time() + 0.02]

        def fire() -> None:
            fired.append(deadlines.pop(0))
            if len(fired) == 1:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")

        timer = CoreTimer(lambda: deadlines[0] if deadlines else None, fire)
        timer.arm()
        for _ in range(100):
            if not deadlines:
                break
            await asyncio.sleep(0.01)
        timer.cancel()

    asyncio.run(main())
    assert len(fired) == 2  # the second deadline fired although the first work raised
    assert [type(e) for e in errors] == [OSError]  # and the failure surfaced


def test_one_client_may_set_up_max_sessions_calls_within_timer_l(tmp_path: Path) -> None:
    """An answered INVITE's transaction lives 32 s: the table grows with server.max_sessions
    so that one SBC can fill the server within that time, not only 2,048 calls of it."""
    from srs.config import load_settings
    from srs.server.app import Application

    for max_sessions, per_source in ((500, 2048), (2500, 5000)):
        settings = load_settings(None, {}, {"server": {"max_sessions": max_sessions,
                                                      "state_dir": str(tmp_path / "state")},
                                            "recordings": {"dir": str(tmp_path / "rec")}})
        app = Application(settings, tls_context=None)
        assert app.core.transactions.max_per_source == per_source
