"""How a session's files and directories are created: one mode for all of them.

Files are created ``0640`` and directories ``0750``, less the process umask: the owner,
plus the group when the umask allows, never other users.  A session holds the audio of a
call, its metadata and possibly a capture with SRTP keys and decrypted SIP (architecture
"File safety"), so no file of it is ever readable by everyone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

__all__ = ["FILE_MODE", "DIR_MODE", "create_file", "create_temporary", "opener", "make_dir",
           "make_dirs"]

FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


def create_file(path: Path, *, exclusive: bool = True, mode: int = FILE_MODE) -> int:
    """Open ``path`` for writing, creating it with ``mode``; returns the fd.

    ``exclusive`` refuses an existing file (EEXIST); otherwise one is truncated.  Raises
    ``OSError``.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | _CLOEXEC
    return os.open(path, flags, mode)


def opener(path: str, flags: int) -> int:
    """For ``open(path, mode, opener=opener)``: the file is created with :data:`FILE_MODE`."""
    return os.open(path, flags | _CLOEXEC, FILE_MODE)


def create_temporary(directory: Path, prefix: str, suffix: str,
                     mode: int = FILE_MODE) -> tuple[int, Path]:
    """A new file ``<prefix><random><suffix>`` in ``directory`` (like ``tempfile.mkstemp``,
    which always uses 0600, but with ``mode``); returns the fd and its path."""
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            return create_file(path, mode=mode), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def make_dir(path: Path) -> None:
    """``mkdir`` with :data:`DIR_MODE`: atomic and exclusive (FileExistsError)."""
    os.mkdir(path, DIR_MODE)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with :data:`DIR_MODE` for every directory it creates (``Path.mkdir``
    gives the parents it creates the default mode)."""
    missing: list[Path] = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    # Under a file, the first mkdir raises NotADirectoryError (ENOTDIR), as mkdir -p does.
    for directory in reversed(missing):
        try:
            make_dir(directory)
        except FileExistsError:
            if not directory.is_dir():
                raise
