"""A minimal HTTP/1.1 client for one POST, on asyncio streams.

Why not a library: the project has no HTTP client dependency (aiohttp/httpx are not
installed), urllib is blocking (it would need a thread per delivery and still follows
redirects by default), and a webhook needs one request per connection: RFC 9112 request
framing with ``Content-Length``, ``Connection: close``, and the status line and headers of
the response.  Everything is bounded: the whole exchange by ``timeout_s``, the response
head by ``max_head_bytes``, and at most ``max_body_bytes`` of the response body are read
(kept for the log line of a refused delivery).  Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from srs import __version__
from srs.errors import SrsError
from srs.ops.webhook.signing import WebhookUrl

__all__ = ["HttpResponse", "HttpTransportError", "post", "USER_AGENT"]

USER_AGENT: Final = f"srs/{__version__}"
_MAX_INTERIM: Final = 8


class HttpTransportError(SrsError):
    """No usable response: connection refused or reset, TLS failure, malformed response."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""  # at most max_body_bytes of it


async def post(
    url: WebhookUrl,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
    max_head_bytes: int = 16 * 1024,
    max_body_bytes: int = 1024,
) -> HttpResponse:
    """POST ``body`` to ``url``; raises TimeoutError or :class:`HttpTransportError`."""
    for name, value in headers.items():
        # RFC 9110 §5.5: no CR, LF or NUL in a field value.
        if any(ch in value or ch in name for ch in "\r\n\0"):
            raise HttpTransportError(f"header {name!r} holds a line break")
    head = [
        f"POST {url.target} HTTP/1.1",
        f"Host: {url.host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body
    context = (ssl_context or ssl.create_default_context()) if url.tls else None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            try:
                reader, writer = await asyncio.open_connection(
                    url.host, url.port, ssl=context,
                    server_hostname=url.host if context is not None else None,
                    limit=max_head_bytes)
            except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError)
                raise HttpTransportError(f"connect: {exc}") from None
            try:
                writer.write(request)
                await writer.drain()
                return await _read_response(reader, max_body_bytes)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                # StreamReader raises ValueError when the head is over the limit.
                raise HttpTransportError(f"exchange: {type(exc).__name__}: {exc}") from None
    finally:
        # Outside the exchange's timeout: a slow close never turns a response into a
        # timeout (and so a delivered request into a retry).
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass  # the response (or the error) is what matters; the socket is closed


async def _read_response(reader: asyncio.StreamReader, max_body_bytes: int) -> HttpResponse:
    # RFC 9110 §15.2: any number of 1xx interim responses may precede the final one.
    for _ in range(_MAX_INTERIM):
        raw = await reader.readuntil(b"\r\n\r\n")
        status, reason, headers = _parse_head(raw)
        if status >= 200:
            break
    else:
        raise HttpTransportError("too many interim responses")
    body = await reader.read(max_body_bytes) if max_body_bytes else b""
    return HttpResponse(status, reason, headers, body)


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    """RFC 9112 §4 status line and §5 field lines of a response head."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HttpTransportError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpTransportError(f"malformed header line: {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return int(code), reason.strip(), headers
