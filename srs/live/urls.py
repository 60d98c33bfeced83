"""A consumer's WebSocket URL, checked once at start-up (RFC 6455 §3)."""

from __future__ import annotations

from dataclasses import dataclass

from srs.config.checks import split_url
from srs.errors import ConfigError

__all__ = ["LiveUrl"]


@dataclass(frozen=True, slots=True)
class LiveUrl:
    """A ``ws://`` or ``wss://`` URL.  User information is refused (a credential in a URL
    ends up in logs and process lists: ``stream.headers`` carries it instead).  ``str()``
    is the form the sidecar and the log show: scheme, host, port and path, never the
    query, which can carry a token."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, *, key: str = "stream.url") -> LiveUrl:
        parts, scheme, host, port = split_url(url, key, {"ws": 80, "wss": 443},
                                              "use stream.headers")
        if parts.fragment:
            raise ConfigError(key, "must not have a fragment (RFC 6455 §3)")
        return cls(url, scheme, host, port, parts.path or "/")

    @property
    def tls(self) -> bool:
        return self.scheme == "wss"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"
