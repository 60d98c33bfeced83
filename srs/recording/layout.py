"""Where a recording session's files live, and the only place their names are made.

One directory per session::

    <recordings_dir>/YYYY/MM/DD/<start>_<id>/
        <label>.wav          one mono file per stream
        mix.wav              the two-channel mix, when there is one
        metadata-N.xml       every raw RFC 7865 metadata version, N from 1
        session.json         the sidecar (see sidecar.py)

``YYYY/MM/DD`` and ``<start>`` (``20261123T101500Z``) are the UTC start time.  ``<id>`` is
the SIPREC session id, or the Call-ID when there is none.  Both it and the stream labels
come from the network, so they pass through :func:`sanitise_name` first: a path is never
built from raw header text.

No asyncio, no logging: the asyncio shell calls these in a worker thread and logs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from srs.errors import UsageError
from srs.recording.files import create_file, make_dir, make_dirs
from srs.recording.wav import RecordingIOError, fsync_directory, write_all

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_NAME_CHARS",
    "MIX_FILE",
    "SIDECAR_FILE",
    "SessionLayout",
    "create_session_dir",
    "is_safe_name",
    "metadata_file_name",
    "sanitise_name",
    "session_dir_name",
    "stream_wav_name",
    "unique_stream_stem",
    "write_metadata",
]

MAX_NAME_CHARS: Final = 64
MIX_FILE: Final = "mix.wav"
SIDECAR_FILE: Final = "session.json"
# Raw metadata is kept as received; the metadata parser refuses larger bodies first.
MAX_METADATA_BYTES: Final = 1024 * 1024
# A clash on the session directory (same start second, same id) gets "-2", "-3", ...;
# past this many the recordings dir is being flooded or is broken.
MAX_DIR_ATTEMPTS: Final = 100

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_HASH_HEX_CHARS: Final = 8
# Stems a stream label must not take: mix.wav is the mix's file.
_RESERVED_STEMS: Final = frozenset({"mix"})


def sanitise_name(raw: str, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """Turn network text into a file-name component of ``[A-Za-z0-9._-]``.

    Every other character becomes ``_`` and a leading ``.`` becomes ``_`` (so never ``.``,
    ``..`` or a hidden file).  When that changed anything, or the text was longer than
    ``max_chars`` or empty, ``-`` and 8 hex digits of the text's SHA-256 are appended, so
    two different ids cannot end up with the same name.  The result is at most
    ``max_chars + 9`` characters.
    """
    if max_chars < 1:
        raise UsageError("max_chars must be at least 1")
    cleaned = _UNSAFE.sub("_", raw)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    cleaned = cleaned[:max_chars]
    if cleaned and cleaned == raw:
        return cleaned
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{cleaned or 'x'}-{digest[:_HASH_HEX_CHARS]}"


def is_safe_name(name: str) -> bool:
    """True for a single file-name component that :func:`sanitise_name` could produce."""
    return _SAFE_NAME.fullmatch(name) is not None


def session_dir_name(started_at: datetime, session_id: str) -> str:
    """``20261123T101500Z_<sanitised id>`` for a session that started at ``started_at``."""
    return f"{_utc(started_at):%Y%m%dT%H%M%SZ}_{sanitise_name(session_id)}"


def unique_stream_stem(label: str | None, position: int, taken: Collection[str]) -> str:
    """The file stem (``<stem>.wav``) for a stream, unique within its session.

    ``label`` is the ``a=label`` text (RFC 4574), sanitised; without one the stream is
    ``stream-<position>`` (``position`` from 1).  ``taken`` holds the stems already given
    out in this session; names are compared case-insensitively so a session copied to a
    case-insensitive file system keeps every file.  A clash gets ``-2``, ``-3``, ...
    """
    if position < 1:
        raise UsageError(f"position {position} must start at 1")
    base = sanitise_name(label) if label is not None else f"stream-{position}"
    used = {stem.casefold() for stem in taken} | _RESERVED_STEMS
    candidate = base
    suffix = 1
    while candidate.casefold() in used:
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate


@dataclass(frozen=True, slots=True)
class SessionLayout:
    """The paths of one session directory.  Names only: nothing here touches the disk."""

    directory: Path

    @property
    def sidecar(self) -> Path:
        return self.directory / SIDECAR_FILE

    @property
    def mix(self) -> Path:
        return self.directory / MIX_FILE

    def stream_wav(self, stem: str) -> Path:
        """``<stem>.wav``; ``stem`` must come from :func:`unique_stream_stem`."""
        return self.directory / stream_wav_name(stem)

    def metadata_xml(self, n: int) -> Path:
        """``metadata-<n>.xml`` for the n-th raw metadata version (n from 1)."""
        if n < 1:
            raise UsageError(f"metadata version {n} must start at 1")
        return self.directory / metadata_file_name(n)

    def file(self, name: str) -> Path:
        """A file of this session named in its sidecar; refuses anything but a plain name."""
        _require_safe(name)
        return self.directory / name


def stream_wav_name(stem: str) -> str:
    """``<stem>.wav``: the file name of a stream's track (``stem`` from
    :func:`unique_stream_stem`)."""
    _require_safe(stem)
    return f"{stem}.wav"


def metadata_file_name(n: int) -> str:
    """``metadata-<n>.xml``: the file name of the n-th raw metadata version."""
    return f"metadata-{n}.xml"


def create_session_dir(
    recordings_dir: Path, started_at: datetime, session_id: str
) -> SessionLayout:
    """Create a new, empty session directory and return its layout.

    The directory is made with ``mkdir`` (atomic and exclusive): an existing one is never
    reused; on a clash ``-2``, ``-3``, ... is added.  Raises :class:`RecordingIOError` when
    the recordings dir cannot be written (ENOTDIR, ENOSPC, EROFS ...).
    """
    start = _utc(started_at)
    day_dir = recordings_dir / f"{start:%Y}" / f"{start:%m}" / f"{start:%d}"
    try:
        make_dirs(day_dir)
    except OSError as exc:
        raise RecordingIOError("create directory", day_dir, exc) from exc
    base = session_dir_name(start, session_id)
    for attempt in range(1, MAX_DIR_ATTEMPTS + 1):
        directory = day_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            make_dir(directory)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RecordingIOError("create directory", directory, exc) from exc
        fsync_directory(day_dir)
        return SessionLayout(directory)
    raise RecordingIOError(
        "create directory",
        day_dir / base,
        FileExistsError(errno.EEXIST, f"{MAX_DIR_ATTEMPTS} directories of that name exist"),
    )


def write_metadata(layout: SessionLayout, n: int, raw: bytes) -> Path:
    """Keep the n-th raw metadata version, byte for byte, as ``metadata-<n>.xml``.

    The file is created exclusively (a version is never overwritten) and fsynced: metadata
    arrives a few times per call at most.  Raises :class:`RecordingIOError` on a disk
    failure or when that version already exists (EEXIST).
    """
    if len(raw) > MAX_METADATA_BYTES:
        raise UsageError(f"metadata of {len(raw)} bytes exceeds {MAX_METADATA_BYTES}")
    path = layout.metadata_xml(n)
    try:
        fd = create_file(path)
    except OSError as exc:
        raise RecordingIOError("create", path, exc) from exc
    try:
        write_all(fd, raw, path)
        os.fsync(fd)
    except OSError as exc:
        raise RecordingIOError("fsync", path, exc) from exc
    finally:
        os.close(fd)
    return path


def _utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise UsageError(f"{moment!r} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)


def _require_safe(name: str) -> None:
    if not is_safe_name(name):
        raise UsageError(f"{name!r} is not a sanitised file name")
