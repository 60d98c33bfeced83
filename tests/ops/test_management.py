"""The management listener on a real socket, spoken to by the stdlib's HTTP client."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from srs.ops.management import ManagementServer, readiness_problem
from srs.ops.metrics import Metrics
from srs.ops.retention import StorageGuard


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def serve(tmp_path: Path, body: Callable[[ManagementServer, list[str | None]], Awaitable[None]],
          **kwargs: object) -> None:
    guard = StorageGuard(tmp_path, 0)
    metrics = Metrics(free_bytes=guard.free_bytes)
    state: list[str | None] = [None]

    async def main() -> None:
        server = ManagementServer(host="127.0.0.1", port=0, metrics=metrics,
                                  readiness=lambda: state[0], log=structlog.get_logger(),
                                  **kwargs)  # type: ignore[arg-type]
        await server.start()
        try:
            await body(server, state)
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_health_ready_and_metrics(tmp_path: Path) -> None:
    async def body(server: ManagementServer, state: list[str | None]) -> None:
        status, _, payload = await asyncio.to_thread(get, server.port, "/healthz")
        assert status == 200 and json.loads(payload)["status"] == "ok"
        status, _, payload = await asyncio.to_thread(get, server.port, "/readyz")
        assert (status, payload) == (200, b"ready\n")
        state[0] = "draining: shutting down"
        status, _, payload = await asyncio.to_thread(get, server.port, "/readyz?verbose=1")
        assert (status, payload) == (503, b"not ready: draining: shutting down\n")
        server.metrics.sip_request("INVITE")
        await asyncio.sleep(0.05)  # a few lag measurements
        status, headers, payload = await asyncio.to_thread(get, server.port, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        families = {f.name: f for f in text_string_to_metric_families(payload.decode())}
        assert families["srs_sip_requests"].samples[0].labels == {"method": "INVITE"}
        assert families["srs_recordings_free_bytes"].samples[0].value > 0
        lag = [s for s in families["srs_event_loop_lag_observed_seconds"].samples
               if s.name.endswith("_count")]
        assert lag[0].value >= 1

    serve(tmp_path, body, lag_interval_s=0.005)


def test_refusals(tmp_path: Path) -> None:
    async def body(server: ManagementServer, state: list[str | None]) -> None:
        status, headers, _ = await asyncio.to_thread(get, server.port, "/metrics", "POST")
        assert status == 405 and headers["Allow"] == "GET"
        status, _, _ = await asyncio.to_thread(get, server.port, "/nope")
        assert status == 404
        huge = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
        assert (await raw(server.port, huge)).startswith(b"HTTP/1.1 431 ")
        assert (await raw(server.port, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        started = time.monotonic()
        assert (await raw(server.port, b"GET /healthz HTTP/1.1\r\n")).startswith(
            b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 2

    serve(tmp_path, body, max_head_bytes=1024, request_timeout_s=0.2)


def other_host_usable() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_idle_connections_do_not_stop_health_probes(tmp_path: Path, source: str) -> None:
    """Idle connections (from the prober's own address, or another host's) make way for
    a probe instead of shutting it out."""
    if source != "127.0.0.1" and not other_host_usable():
        pytest.skip("127.0.0.2 is not a local address here")

    async def body(server: ManagementServer, state: list[str | None]) -> None:
        idle = [await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
                for _ in range(40)]
        # Past the limit of one source, each new one evicted the oldest idle one.
        await until(lambda: server.counters["evicted"] == 40 - 8)
        for _ in range(3):
            status, _, payload = await asyncio.to_thread(get, server.port, "/healthz")
            assert status == 200 and json.loads(payload)["status"] == "ok"
        assert server.counters["refused"] == 0
        for _, writer in idle:
            writer.close()
        # A connection left idle does not hold up close() for request_timeout_s.
        await asyncio.open_connection("127.0.0.1", server.port)
        await until(lambda: len(server._sources) >= 1)

    started = time.monotonic()
    serve(tmp_path, body, max_connections_per_ip=8, request_timeout_s=5.0)
    assert time.monotonic() - started < 4


def test_the_global_limit_evicts_idle_connections_of_any_source(tmp_path: Path) -> None:
    async def body(server: ManagementServer, state: list[str | None]) -> None:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
        await until(lambda: len(server._sources) == 4)
        assert (await raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 200 ")
        assert server.counters["evicted"] == 1
        # The evicted one was the oldest: it was closed unanswered.
        assert await asyncio.wait_for(idle[0][0].read(), 5) == b""
        for _, writer in idle:
            writer.close()

    serve(tmp_path, body, max_connections=4, max_connections_per_ip=100)


def test_loop_lag_is_measured(tmp_path: Path) -> None:
    async def body(server: ManagementServer, state: list[str | None]) -> None:
        await asyncio.sleep(0.02)
        time.sleep(0.2)  # block the loop, as an overloaded server would
        await asyncio.sleep(0.02)
        value = server.metrics.registry.get_sample_value("srs_event_loop_lag_seconds")
        histogram_max = server.metrics.registry.get_sample_value(
            "srs_event_loop_lag_observed_seconds_bucket", {"le": "0.1"})
        count = server.metrics.registry.get_sample_value(
            "srs_event_loop_lag_observed_seconds_count")
        assert value is not None and histogram_max is not None and count is not None
        assert count - histogram_max >= 1  # one observation above 100 ms
        assert server.last_lag_s is not None

    serve(tmp_path, body, lag_interval_s=0.01)


@pytest.mark.parametrize(
    ("draining", "active", "storage", "expected"),
    [(False, 0, None, None), (True, 0, None, "draining: shutting down"),
     (False, 5, None, "session limit reached (5 of 5)"),
     (False, 1, "low disk space: 1 bytes free", "low disk space: 1 bytes free")],
)
def test_readiness_problem(draining: bool, active: int, storage: str | None,
                           expected: str | None) -> None:
    assert readiness_problem(draining=draining, active=active, max_sessions=5,
                             storage_problem=storage) == expected
