"""Logging set-up: structlog events, JSON lines when stdout is not a terminal.

Call context (``call_id``, ``session_id``, ``src``) is bound once per request or session
with ``log.bind(...)``; the asyncio shell is the only place that logs.  Credentials and SRTP
keys are never passed to a logger: the redaction processor below is a second line of
defence that blanks any event key whose name says it holds a secret.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, TextIO, TypeAlias

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["configure_logging", "get_logger", "Logger", "RateLimiter", "redact_secrets"]

Logger: TypeAlias = FilteringBoundLogger
"""What :func:`get_logger` returns: ``configure_logging`` installs structlog's filtering
bound logger, so this is the type to annotate a ``log`` parameter with."""

_SECRET_KEY_PARTS = ("token", "password", "secret", "key_params", "master_key", "inline")


def redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for key in list(event):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEY_PARTS):
            event[key] = "<redacted>"
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process (called once by the CLI)."""
    out = stream if stream is not None else sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Logger:
    """srs's logger with ``context`` bound (structlog's own ``get_logger`` is untyped)."""
    logger: Logger = structlog.get_logger("srs").bind(**context)
    return logger


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 1
    suppressed: int = 0


class RateLimiter:
    """At most ``burst`` events per ``period_s`` for one key; counts what it suppressed.

    Used for warnings about floods of bad packets or requests (docs/architecture.md,
    "Values and names").
    """

    def __init__(self, period_s: float = 10.0, burst: int = 5, max_keys: int = 4096) -> None:
        self.period_s = period_s
        self.burst = burst
        self.max_keys = max_keys
        self._windows: dict[Hashable, _Window] = {}

    def allow(self, key: Hashable, now: float | None = None) -> tuple[bool, int]:
        """Return (log it?, how many were suppressed since the last logged one)."""
        now = time.monotonic() if now is None else now
        window = self._windows.get(key)
        if window is None or now - window.started >= self.period_s:
            suppressed = window.suppressed if window is not None else 0
            if len(self._windows) >= self.max_keys and key not in self._windows:
                self._windows.clear()
            self._windows[key] = _Window(now)
            return True, suppressed
        if window.logged < self.burst:
            window.logged += 1
            return True, 0
        window.suppressed += 1
        return False, 0


def log_entry(log: Any, entry: Any) -> None:
    """Write a :class:`srs.recording.core.Log` (the recording core's log event) to ``log``
    with the session's context bound; a bug's exception goes with its traceback."""
    bound = log.bind(**entry.context)
    if entry.error is not None:
        bound.error(entry.event, exc_info=entry.error, **entry.fields)
    elif entry.level == "error":
        bound.error(entry.event, **entry.fields)
    elif entry.level == "warning":
        bound.warning(entry.event, **entry.fields)
    else:
        bound.info(entry.event, **entry.fields)
