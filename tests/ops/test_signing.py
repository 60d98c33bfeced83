"""Pure parts of the webhook: URL, signature, backoff, status classes, record format."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from srs.errors import ConfigError, UsageError
from srs.ops.webhook.outbox import (
    FAILED_DIR,
    DeliveryRecord,
    Outbox,
    OutboxError,
    OutboxFull,
    decode_record,
    encode_record,
    new_delivery_id,
)
from srs.ops.webhook.sender import completion_body
from srs.ops.webhook.signing import (
    WebhookUrl,
    backoff_delay_s,
    classify_status,
    parse_retry_after,
    sign,
    verify,
)

BODY = b'{"event":"session.finished"}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # What a receiver computes with nothing but the stdlib (README snippet).
    expected = hmac.new(b"k", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, BODY) == "sha256=" + expected


@pytest.mark.parametrize(
    ("secret", "timestamp", "signature_ts", "body", "now", "reason"),
    [
        ("k", "1700000000", 1700000000, BODY, 1700000100, ""),
        ("wrong", "1700000000", 1700000000, BODY, 1700000000, "signature mismatch"),
        ("k", "1700000000", 1700000000, BODY + b" ", 1700000000, "signature mismatch"),
        ("k", "1700000001", 1700000000, BODY, 1700000000, "signature mismatch"),
        ("k", "1700000000", 1700000000, BODY, 1700000301, "timestamp outside the tolerance window"),
        ("k", "1700000000", 1700000000, BODY, 1699999699, "timestamp outside the tolerance window"),
        ("k", "17e8", 1700000000, BODY, 1700000000, "missing or malformed timestamp"),
        ("k", None, 1700000000, BODY, 1700000000, "missing or malformed timestamp"),
    ],
)
def test_verify(secret: str, timestamp: str | None, signature_ts: int, body: bytes, now: float,
                reason: str) -> None:
    verdict = verify(secret, timestamp, sign("k", signature_ts, BODY), body, now=now)
    assert (verdict.ok, verdict.reason) == (reason == "", reason)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(UsageError):
        sign("", 1, BODY)


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    low = [backoff_delay_s(n, base_s=2, max_s=60, jitter=0.0) for n in range(1, 9)]
    high = [backoff_delay_s(n, base_s=2, max_s=60, jitter=1.0) for n in range(1, 9)]
    assert low == [1, 2, 4, 8, 16, 30, 30, 30]
    assert high == [2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay_s(10_000, base_s=2, max_s=60, jitter=0.5) == 45
    with pytest.raises(UsageError):
        backoff_delay_s(0, base_s=2, max_s=60, jitter=0.5)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "delivered"), (204, "delivered"), (301, "permanent"), (302, "permanent"),
     (400, "permanent"), (401, "permanent"), (404, "permanent"), (408, "retry"),
     (429, "retry"), (500, "retry"), (503, "retry"), (599, "retry"), (100, "permanent")],
)
def test_classify_status(status: int, verdict: str) -> None:
    assert classify_status(status) == verdict


def test_retry_after_delay_seconds_only() -> None:
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def test_url_parsing() -> None:
    url = WebhookUrl.parse("https://hooks.example.com/srs/done?token=abc")
    assert (url.host, url.port, url.target, url.tls) == ("hooks.example.com", 443,
                                                         "/srs/done?token=abc", True)
    assert str(url) == "https://hooks.example.com"  # no path or query: safe to log
    v6 = WebhookUrl.parse("http://[::1]:8081")
    assert (v6.host, v6.port, v6.target, v6.host_header) == ("::1", 8081, "/", "[::1]:8081")


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://example.com/", "http:// or https://"), ("example.com/hook", "http:// or https://"),
     ("https://user:pw@example.com/", "user information"), ("http:///path", "needs a host"),
     ("http://example.com:99999/", "not a URL"), ("http://exa mple.com/", "whitespace")],
)
def test_bad_urls_name_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        WebhookUrl.parse(url)
    assert info.value.key == "webhook.url" and problem in info.value.problem
    assert "pw" not in str(info.value)


def test_completion_body_wraps_the_sidecar() -> None:
    body = completion_body("id-1", "2026/11/23/x", b'{"status": "complete"}')
    assert body == (b'{"event":"session.finished","delivery_id":"id-1",'
                    b'"directory":"2026/11/23/x","session":{"status":"complete"}}')
    with pytest.raises(ValueError, match="not a JSON object"):
        completion_body("id-1", "d", b"[1]")


def test_record_round_trip_keeps_body_bytes() -> None:
    record = DeliveryRecord(new_delivery_id(), "session.finished", 1.5, 2, 9.25, "503 x")
    body = b"\n{\"a\":1}\n\x00\xff"
    assert decode_record(encode_record(record, body)) == (record, body)


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b"no newline", "no header line"), (b"{not json\n", "not JSON"),
     (b'{"format":"other"}\n', "not srs-webhook/1"),
     (b'{"format":"srs-webhook/1","id":"../../etc","event":"e","created_at":1,'
      b'"attempts":0,"next_attempt_at":1}\n', "delivery id"),
     (b'{"format":"srs-webhook/1","event":"e","created_at":1,"attempts":0,'
      b'"next_attempt_at":1}\n', "'id' is missing"),
     (b'{"format":"srs-webhook/1","id":"x","event":"e","created_at":"1",'
      b'"attempts":0,"next_attempt_at":1}\n', "'created_at' is missing or not a number")],
)
def test_record_errors(data: bytes, problem: str) -> None:
    with pytest.raises(OutboxError, match=problem.replace("(", r"\(")):
        decode_record(data)


def test_outbox_bounds_and_recovery(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_pending=2, max_failed=2, max_body_bytes=100)
    first = outbox.put(b"one", event="session.finished", now=1.0)
    outbox.put(b"two", event="session.finished", now=2.0)
    with pytest.raises(OutboxFull):
        outbox.put(b"three", event="session.finished", now=3.0)
    with pytest.raises(OutboxError, match="over 100"):
        Outbox(tmp_path / "b", max_body_bytes=100).put(b"x" * 101, event="e", now=1)
    # An interrupted write's temporary file and a file that is not a delivery.
    (tmp_path / f".{first.id}.abc.tmp").write_bytes(b"partial")
    junk = f"{new_delivery_id()}.delivery"
    (tmp_path / junk).write_bytes(b"garbage")
    records, broken = outbox.load()
    assert [r.created_at for r in records] == [1.0, 2.0]
    assert [name for name, _ in broken] == [junk]
    assert sorted(os.listdir(tmp_path / FAILED_DIR)) == [junk]
    assert not list(tmp_path.glob(".*.tmp"))
    assert outbox.read(first.id) == (first, b"one")
    # failed/ keeps the newest max_failed files.
    for record in records:
        outbox.fail(record.id)
    assert len(os.listdir(tmp_path / FAILED_DIR)) == 2
    assert outbox.pending_count() == 0
