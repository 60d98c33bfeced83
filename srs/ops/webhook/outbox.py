"""The durable webhook outbox: one file per pending delivery in the state directory.

A delivery is written (atomically: temporary file, fsync, rename, fsync of the directory)
before its first attempt, rewritten with its attempt count and next due time after each
failed attempt, removed once delivered or refused for good, and moved to ``failed/``
after its last attempt.  A restart reads the directory and carries on where it stopped,
with the attempt count kept, so the bound on attempts holds across restarts.

File format (``<id>.delivery``)::

    {"format": "srs-webhook/1", "id": ..., "event": ..., "created_at": ..., "attempts": ...,
     "next_attempt_at": ..., "last_error": ...}\\n
    <request body, exactly the bytes that are signed and sent>

The first line is a small JSON header (times are Unix seconds); everything after its
newline is the body.  A file that does not parse is moved to ``failed/`` on loading.

Synchronous file I/O, no asyncio and no logging: the sender calls these in worker threads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from srs.errors import SrsError, UsageError

__all__ = [
    "RECORD_FORMAT",
    "SUFFIX",
    "FAILED_DIR",
    "MAX_HEADER_BYTES",
    "DeliveryRecord",
    "OutboxError",
    "OutboxFull",
    "Outbox",
    "encode_record",
    "decode_record",
    "new_delivery_id",
]

RECORD_FORMAT: Final = "srs-webhook/1"
SUFFIX: Final = ".delivery"
FAILED_DIR: Final = "failed"
MAX_HEADER_BYTES: Final = 4096
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EVENT = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_MAX_ERROR_CHARS: Final = 200


class OutboxError(SrsError):
    """A delivery file that cannot be stored or read as a delivery."""


class OutboxFull(OutboxError):
    """The outbox holds ``max_pending`` deliveries already: the new one is not stored."""


def new_delivery_id() -> str:
    """A random (RFC 9562 version 4) UUID: the idempotency key a receiver deduplicates on."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    event: str
    created_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None

    def __post_init__(self) -> None:
        if _ID.fullmatch(self.id) is None or _EVENT.fullmatch(self.event) is None:
            raise UsageError(f"delivery id {self.id!r} / event {self.event!r}")
        if self.attempts < 0:
            raise UsageError("attempts must not be negative")

    @property
    def file_name(self) -> str:
        return self.id + SUFFIX

    def after_failure(self, error: str, next_attempt_at: float) -> DeliveryRecord:
        return replace(self, attempts=self.attempts + 1, next_attempt_at=next_attempt_at,
                       last_error=error[:_MAX_ERROR_CHARS])


def encode_record(record: DeliveryRecord, body: bytes) -> bytes:
    header = {
        "format": RECORD_FORMAT,
        "id": record.id,
        "event": record.event,
        "created_at": record.created_at,
        "attempts": record.attempts,
        "next_attempt_at": record.next_attempt_at,
        "last_error": record.last_error,
    }
    line = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return line + b"\n" + body


def decode_record(data: bytes) -> tuple[DeliveryRecord, bytes]:
    """Parse a delivery file; :class:`OutboxError` names what is wrong."""
    line, newline, body = data.partition(b"\n")
    if not newline or len(line) > MAX_HEADER_BYTES:
        raise OutboxError("no header line")
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise OutboxError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != RECORD_FORMAT:
        raise OutboxError(f"header is not {RECORD_FORMAT}")
    last_error = header.get("last_error")
    try:
        record = DeliveryRecord(
            id=_text(header, "id"),
            event=_text(header, "event"),
            created_at=_number(header, "created_at"),
            attempts=int(_number(header, "attempts")),
            next_attempt_at=_number(header, "next_attempt_at"),
            last_error=last_error if isinstance(last_error, str) else None,
        )
    except UsageError as exc:
        raise OutboxError(str(exc)) from None
    return record, body


def _text(header: dict[str, object], key: str) -> str:
    value = header.get(key)
    if not isinstance(value, str):
        raise OutboxError(f"header field {key!r} is missing or not a string")
    return value


def _number(header: dict[str, object], key: str) -> float:
    value = header.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OutboxError(f"header field {key!r} is missing or not a number")
    return float(value)


class Outbox:
    """The directory of pending deliveries, bounded in count and body size."""

    def __init__(self, directory: Path, *, max_pending: int = 1000, max_failed: int = 1000,
                 max_body_bytes: int = 5 * 1024 * 1024) -> None:
        if min(max_pending, max_failed, max_body_bytes) < 1:
            raise UsageError("outbox bounds must be positive")
        self.directory = directory
        self.failed_directory = directory / FAILED_DIR
        self.max_pending = max_pending
        self.max_failed = max_failed
        self.max_body_bytes = max_body_bytes

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.failed_directory.mkdir(exist_ok=True, mode=0o700)

    def pending_count(self) -> int:
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for e in entries if e.name.endswith(SUFFIX) and e.is_file())
        except FileNotFoundError:
            return 0

    def put(self, body: bytes, *, event: str, now: float,
            delivery_id: str | None = None) -> DeliveryRecord:
        """Store a new delivery, due now.  Raises OutboxFull, OutboxError (body too large)
        or OSError (the state directory refuses)."""
        if len(body) > self.max_body_bytes:
            raise OutboxError(f"body of {len(body)} bytes is over {self.max_body_bytes}")
        self._ensure()
        if self.pending_count() >= self.max_pending:
            raise OutboxFull(f"{self.max_pending} deliveries pending")
        record = DeliveryRecord(delivery_id or new_delivery_id(), event, created_at=now,
                                next_attempt_at=now)
        self._write(record, body)
        return record

    def update(self, record: DeliveryRecord, body: bytes) -> None:
        """Replace a delivery's file after a failed attempt (same body, new header)."""
        self._write(record, body)

    def read(self, delivery_id: str) -> tuple[DeliveryRecord, bytes]:
        path = self.directory / (delivery_id + SUFFIX)
        with open(path, "rb") as f:
            data = f.read(MAX_HEADER_BYTES + 1 + self.max_body_bytes + 1)
        if len(data) > MAX_HEADER_BYTES + 1 + self.max_body_bytes:
            raise OutboxError(f"{path.name} is larger than a delivery may be")
        return decode_record(data)

    def load(self) -> tuple[list[DeliveryRecord], list[tuple[str, str]]]:
        """Every pending delivery, oldest first, and the files set aside as unreadable
        (name, problem), which are moved to ``failed/``.  Leftover temporary files of an
        interrupted write are removed: the previous version, if any, is still in place."""
        self._ensure()
        records: list[DeliveryRecord] = []
        broken: list[tuple[str, str]] = []
        with os.scandir(self.directory) as entries:
            names = sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                (self.directory / name).unlink(missing_ok=True)
                continue
            if not name.endswith(SUFFIX):
                continue
            try:
                with open(self.directory / name, "rb") as f:
                    record, _ = decode_record(f.read(MAX_HEADER_BYTES + 1))
                if record.file_name != name:
                    raise OutboxError("file name does not match its id")
            except (OutboxError, UnicodeDecodeError) as exc:
                broken.append((name, str(exc)))
                self._move_to_failed(name)
                continue
            if len(records) < self.max_pending:
                records.append(record)
        records.sort(key=lambda r: (r.created_at, r.id))
        return records, broken

    def remove(self, delivery_id: str) -> None:
        (self.directory / (delivery_id + SUFFIX)).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def fail(self, delivery_id: str) -> None:
        """Move a delivery whose attempts are exhausted to ``failed/`` (kept for an
        operator; moving it back into the outbox and restarting delivers it again)."""
        self._move_to_failed(delivery_id + SUFFIX)

    def _move_to_failed(self, name: str) -> None:
        self._ensure()
        os.replace(self.directory / name, self.failed_directory / name)
        _fsync_directory(self.failed_directory)
        _fsync_directory(self.directory)
        self._prune_failed()

    def _prune_failed(self) -> None:
        """Keep at most ``max_failed`` files in ``failed/``: the oldest go first."""
        with os.scandir(self.failed_directory) as entries:
            files = [(e.stat(follow_symlinks=False).st_mtime, e.name) for e in entries
                     if e.is_file(follow_symlinks=False)]
        if len(files) <= self.max_failed:
            return
        files.sort()
        for _, name in files[: len(files) - self.max_failed]:
            (self.failed_directory / name).unlink(missing_ok=True)

    def _write(self, record: DeliveryRecord, body: bytes) -> None:
        data = encode_record(record, body)
        fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", suffix=".tmp", dir=self.directory)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / record.file_name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
