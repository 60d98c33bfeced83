"""The completion webhook against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from srs.ops.webhook.outbox import FAILED_DIR, SUFFIX, Outbox, decode_record
from srs.ops.webhook.sender import WebhookConfig, WebhookSender, make_ssl_context
from srs.ops.webhook.signing import WebhookUrl, verify
from srs.server.tls import ensure_self_signed
from tests.ops.receiver import Script, receiver
from tests.ops.sessions import make_session

SECRET = "s3cret-webhook-key-for-tests"
STARTED = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


def config(url: str, **overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = dict(url=WebhookUrl.parse(url), secret=SECRET, timeout_s=5.0,
                                  max_attempts=5, backoff_base_s=0.01, max_delay_s=0.05)
    values.update(overrides)
    return WebhookConfig(**values)


def sender_for(tmp_path: Path, cfg: WebhookConfig, **kwargs: Any) -> WebhookSender:
    return WebhookSender(cfg, Outbox(tmp_path / "state" / "webhook"),
                         recordings_dir=tmp_path / "rec", log=structlog.get_logger(), **kwargs)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 20))


def outbox_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "state" / "webhook").glob("*" + SUFFIX))


def failed_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "state" / "webhook" / FAILED_DIR).iterdir())


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def test_retried_until_delivered_once_with_one_delivery_id(tmp_path: Path) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    script = Script(statuses=[503, 503])

    async def main() -> None:
        with receiver(script) as url, capture_logs() as logs:
            sender = sender_for(tmp_path, config(url))
            await sender.start()
            delivery_id = await sender.submit(session)
            seen = await asyncio.to_thread(script.wait_for, 3)
            await until(lambda: not outbox_files(tmp_path) and sender.pending == 0)
            await sender.close()
        assert len(seen) == 3  # 503, 503, 200: and nothing after the 200
        assert {s.headers["X-Srs-Delivery"] for s in seen} == {delivery_id}
        for s in seen:
            assert s.path == "/hooks/srs?x=1"
            assert s.headers["Content-Type"] == "application/json"
            assert s.headers["X-Srs-Event"] == "session.finished"
            assert verify(SECRET, s.headers["X-Srs-Timestamp"], s.headers["X-Srs-Signature"],
                          s.body, now=time.time()).ok
            assert not verify("other-secret", s.headers["X-Srs-Timestamp"],
                              s.headers["X-Srs-Signature"], s.body, now=time.time()).ok
        doc = json.loads(seen[-1].body)
        assert doc["delivery_id"] == delivery_id
        assert doc["directory"] == session.relative_to(tmp_path / "rec").as_posix()
        assert doc["session"] == json.loads((session / "session.json").read_bytes())
        events = [e["event"] for e in logs]
        assert events.count("webhook_retry") == 2 and events.count("webhook_delivered") == 1
        assert SECRET not in repr(logs)
        assert failed_files(tmp_path) == []

    run(main)


def test_400_is_permanent_not_retried(tmp_path: Path) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    script = Script(statuses=[400])

    async def main() -> None:
        with receiver(script) as url, capture_logs() as logs:
            sender = sender_for(tmp_path, config(url))
            await sender.start()
            delivery_id = await sender.submit(session)
            await until(lambda: not outbox_files(tmp_path) and sender.pending == 0)
            await asyncio.sleep(0.2)  # four backoff bases: a retry would have come by now
            await sender.close()
        assert len(script.requests) == 1
        refused = [e for e in logs if e["event"] == "webhook_refused"]
        assert len(refused) == 1 and refused[0]["response"].startswith("400 Bad Request: nope")
        assert failed_files(tmp_path) == [f"{delivery_id}{SUFFIX}"]

    run(main)


@pytest.mark.parametrize("status", [302, 404])
def test_redirects_and_other_4xx_are_not_followed(tmp_path: Path, status: int) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    script = Script(statuses=[status], extra_headers={"Location": "/elsewhere"})

    async def main() -> None:
        with receiver(script) as url:
            sender = sender_for(tmp_path, config(url))
            await sender.start()
            await sender.submit(session)
            await until(lambda: bool(failed_files(tmp_path)))
            await asyncio.sleep(0.2)
            await sender.close()
        assert [s.path for s in script.requests] == ["/hooks/srs?x=1"]

    run(main)


def test_429_and_408_are_retried_then_given_up_after_max_attempts(tmp_path: Path) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    script = Script(statuses=[429, 408, 500])

    async def main() -> None:
        with receiver(script) as url, capture_logs() as logs:
            sender = sender_for(tmp_path, config(url, max_attempts=3))
            await sender.start()
            delivery_id = await sender.submit(session)
            await until(lambda: bool(failed_files(tmp_path)))
            await asyncio.sleep(0.2)
            await sender.close()
        assert len(script.requests) == 3
        assert failed_files(tmp_path) == [f"{delivery_id}{SUFFIX}"]
        assert outbox_files(tmp_path) == []
        record, _ = decode_record((tmp_path / "state/webhook/failed" /
                                   f"{delivery_id}{SUFFIX}").read_bytes())
        assert record.attempts == 2 and record.last_error == "408 Request Timeout"
        assert [e["attempts"] for e in logs if e["event"] == "webhook_gave_up"] == [3]

    run(main)


def test_restart_resumes_a_pending_delivery_with_its_id_and_attempts(tmp_path: Path) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    first = Script(statuses=[503] * 10)
    second = Script()

    async def main() -> None:
        with receiver(first) as url:
            # A long backoff: the delivery stays pending when this sender stops.
            cfg = config(url, backoff_base_s=600.0, max_delay_s=600.0)
            sender = sender_for(tmp_path, cfg)
            await sender.start()
            delivery_id = await sender.submit(session)
            await asyncio.to_thread(first.wait_for, 1)
            path = tmp_path / "state/webhook" / f"{delivery_id}{SUFFIX}"
            await until(lambda: decode_record(path.read_bytes())[0].attempts == 1)
            await sender.close()
        with receiver(second) as url, capture_logs() as logs:
            # A new process at once: the delivery is not due yet (its backoff was kept).
            early = sender_for(tmp_path, config(url))
            await early.start()
            await asyncio.sleep(0.1)
            await early.close()
            assert second.requests == [] and len(outbox_files(tmp_path)) == 1
            # A new process, an hour later, over the same outbox.
            later = sender_for(tmp_path, config(url), clock=lambda: time.time() + 3600)
            await later.start()
            seen = await asyncio.to_thread(second.wait_for, 1)
            await until(lambda: not outbox_files(tmp_path) and later.pending == 0)
            await later.close()
        delivered = [e for e in logs if e["event"] == "webhook_delivered"]
        assert [e["attempts"] for e in delivered] == [2]  # the count survived the restart
        assert seen[0].headers["X-Srs-Delivery"] == delivery_id
        assert seen[0].body == first.requests[0].body
        assert verify(SECRET, seen[0].headers["X-Srs-Timestamp"],
                      seen[0].headers["X-Srs-Signature"], seen[0].body,
                      now=time.time() + 3600).ok

    run(main)


def test_a_silent_receiver_never_blocks_enqueue(tmp_path: Path) -> None:
    sessions = [make_session(tmp_path / "rec", STARTED, name=f"CA{i}") for i in range(20)]
    # Accepts connections (the kernel's backlog) but never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)

    async def main() -> None:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        sender = sender_for(tmp_path, config(url, timeout_s=60.0, concurrency=2))
        await sender.start()
        async with asyncio.timeout(10):  # far below one attempt's 60 s timeout
            ids = [await sender.submit(s) for s in sessions]
        assert all(ids) and len(set(ids)) == 20
        assert len(outbox_files(tmp_path)) == 20  # durable before any attempt completes
        await sender.close()
        assert len(outbox_files(tmp_path)) == 20  # and still there for the next start

    try:
        run(main)
    finally:
        silent.close()


def test_connection_refused_is_retried(tmp_path: Path) -> None:
    session = make_session(tmp_path / "rec", STARTED)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there

    async def main() -> None:
        with capture_logs() as logs:
            sender = sender_for(tmp_path, config(f"http://127.0.0.1:{port}/", max_attempts=2))
            await sender.start()
            await sender.submit(session)
            await until(lambda: bool(failed_files(tmp_path)))
            await sender.close()
        retry = [e for e in logs if e["event"] == "webhook_retry"]
        assert len(retry) == 1 and retry[0]["error"].startswith("connect:")

    run(main)


def test_https_with_a_configured_ca(tmp_path: Path) -> None:
    import ssl

    cert, key, _ = ensure_self_signed(tmp_path / "tls")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    session = make_session(tmp_path / "rec", STARTED)
    script = Script()

    async def main() -> None:
        with receiver(script, tls=server_tls) as url:
            # Without the CA the certificate is not trusted: a retry, never a delivery.
            untrusted = sender_for(tmp_path, config(url, max_attempts=1))
            with capture_logs() as logs:
                await untrusted.start()
                await untrusted.submit(session)
                await until(lambda: bool(failed_files(tmp_path)))
                await untrusted.close()
            assert "CERTIFICATE_VERIFY_FAILED" in str(logs)
            trusted = sender_for(tmp_path, config(url, ssl_context=make_ssl_context(cert)))
            await trusted.start()
            await trusted.submit(session)
            await asyncio.to_thread(script.wait_for, 1)
            await until(lambda: not outbox_files(tmp_path) and trusted.pending == 0)
            await trusted.close()
        assert len(script.requests) == 1

    run(main)


def test_a_session_without_sidecar_is_logged_not_raised(tmp_path: Path) -> None:
    async def main() -> None:
        with capture_logs() as logs:
            sender = sender_for(tmp_path, config("http://127.0.0.1:9/"))
            await sender.start()
            assert await sender.submit(tmp_path / "rec" / "missing") is None
            await sender.close()
        assert [e["event"] for e in logs] == ["webhook_enqueue_failed"]

    run(main)


def test_submit_before_start_is_sent_once(tmp_path: Path) -> None:
    # The start-up order of the server: repaired sessions are submitted, then start().
    session = make_session(tmp_path / "rec", STARTED, status="interrupted")
    script = Script()

    async def main() -> None:
        with receiver(script) as url:
            sender = sender_for(tmp_path, config(url))
            delivery_id = await sender.submit(session)
            await sender.start()
            await asyncio.to_thread(script.wait_for, 1)
            await until(lambda: not outbox_files(tmp_path) and sender.pending == 0)
            await asyncio.sleep(0.1)
            await sender.close()
        assert [s.headers["X-Srs-Delivery"] for s in script.requests] == [delivery_id]
        assert json.loads(script.requests[0].body)["session"]["status"] == "interrupted"

    run(main)
