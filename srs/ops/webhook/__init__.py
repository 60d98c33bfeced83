"""The completion webhook: a signed POST of each finished session's ``session.json``.

* :mod:`srs.ops.webhook.signing` -- pure: URL, HMAC-SHA256 signature, retry schedule;
* :mod:`srs.ops.webhook.outbox` -- the durable outbox, one file per pending delivery;
* :mod:`srs.ops.webhook.http` -- a bounded HTTP/1.1 POST on asyncio streams;
* :mod:`srs.ops.webhook.sender` -- the asyncio sender the server runs.
"""

from srs.ops.webhook.outbox import Outbox
from srs.ops.webhook.sender import WebhookConfig, WebhookSender, completion_body, make_ssl_context
from srs.ops.webhook.signing import WebhookUrl, sign, verify

__all__ = [
    "Outbox",
    "WebhookConfig",
    "WebhookSender",
    "WebhookUrl",
    "completion_body",
    "make_ssl_context",
    "sign",
    "verify",
]
