"""Pure parts of the completion webhook: the URL, the signature, the retry schedule.

No asyncio, no logging, no I/O.  The sender (``sender.py``) and any receiver can rely on
these alone.

Signature scheme (documented for receivers in README "Completion webhook"):

* ``X-Srs-Timestamp``: the Unix time of this attempt, in whole seconds;
* ``X-Srs-Signature``: ``sha256=`` and the lower-case hex HMAC-SHA256 (RFC 2104, FIPS 180-4)
  keyed with the shared secret (UTF-8) over the bytes ``<timestamp>.<body>``, i.e. the
  timestamp header's ASCII digits, one ``.`` and the exact request body;
* ``X-Srs-Delivery``: the delivery id, the same on every attempt of one delivery.

Binding the timestamp into the MAC lets a receiver refuse a replay outside its tolerance
window (five minutes is usual) while still accepting a retry, which is signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from srs.config.checks import split_url
from srs.errors import UsageError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_PREFIX",
    "DEFAULT_TOLERANCE_S",
    "WebhookUrl",
    "Verdict",
    "sign",
    "signature_headers",
    "verify",
    "backoff_delay_s",
    "Outcome",
    "classify_status",
    "parse_retry_after",
]

Outcome: TypeAlias = Literal["delivered", "retry", "permanent"]
"""What one delivery attempt came to (:func:`classify_status`)."""

SIGNATURE_HEADER: Final = "X-Srs-Signature"
TIMESTAMP_HEADER: Final = "X-Srs-Timestamp"
DELIVERY_HEADER: Final = "X-Srs-Delivery"
EVENT_HEADER: Final = "X-Srs-Event"
SIGNATURE_PREFIX: Final = "sha256="
DEFAULT_TOLERANCE_S: Final = 300


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """An ``http``/``https`` URL reduced to what the client needs.

    User information is refused: a credential in a URL ends up in logs and process lists;
    the body is authenticated by the HMAC instead.  ``str()`` gives a form safe to log
    (scheme, host and port; the path and query can carry tokens and are left out).
    """

    scheme: str
    host: str
    port: int
    target: str  # RFC 9112 §3.2.1 origin-form: path and query

    @classmethod
    def parse(cls, url: str, *, key: str = "webhook.url") -> WebhookUrl:
        parts, scheme, host, port = split_url(url, key, {"http": 80, "https": 443},
                                              "the body is signed")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return cls(scheme, host, port, target)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """RFC 9110 §7.2 ``Host``: brackets around an IPv6 literal, the port when not default."""
        try:
            literal = ipaddress.ip_address(self.host).version == 6
        except ValueError:
            literal = False
        host = f"[{self.host}]" if literal else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``b"<timestamp>." + body`` with HMAC-SHA256 (RFC 2104)."""
    if not secret:
        raise UsageError("an empty webhook secret signs nothing")
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Verdict:
    """What a receiver does (srs uses it in its tests): constant-time comparison, and a
    timestamp no further than ``tolerance_s`` from ``now`` in either direction."""
    if not timestamp_header or not timestamp_header.isascii() or not timestamp_header.isdigit():
        return Verdict(False, "missing or malformed timestamp")
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance_s:
        return Verdict(False, "timestamp outside the tolerance window")
    if not signature_header:
        return Verdict(False, "missing signature")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature_header.strip().encode()):
        return Verdict(False, "signature mismatch")
    return Verdict(True)


def backoff_delay_s(attempt: int, *, base_s: float, max_s: float, jitter: float) -> float:
    """Delay before attempt ``attempt + 1`` after ``attempt`` (1-based) failed.

    Exponential, ``base_s * 2**(attempt-1)`` capped at ``max_s``, with "equal jitter":
    the upper half of that is random (``jitter`` in [0, 1)), so concurrent senders spread
    out and a delay is never less than half the nominal value.
    """
    if attempt < 1 or base_s <= 0 or max_s < base_s or not 0.0 <= jitter <= 1.0:
        raise UsageError(f"backoff({attempt}, base {base_s}, max {max_s}, jitter {jitter})")
    nominal = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return nominal / 2.0 + nominal / 2.0 * jitter


def classify_status(status: int) -> Outcome:
    """``delivered`` (2xx), ``retry`` (408, 429, 5xx) or ``permanent`` (anything else).

    RFC 9110 §15.5.9 408 and RFC 6585 §4 429 say "try later"; other 4xx say the request
    itself is wrong and repeating it cannot help.  3xx is permanent too: redirects are not
    followed, so the signed body never goes anywhere but the configured URL.
    """
    if 200 <= status <= 299:
        return "delivered"
    if status in (408, 429) or 500 <= status <= 599:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3 ``Retry-After`` in delay-seconds; an HTTP-date is ignored (None)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    return float(int(value))
