"""Files srs keeps in its state directory (not recordings): the generated credential."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["load_or_create_token", "TOKEN_FILE"]

TOKEN_FILE = "auth-token"  # noqa: S105 - the file name, not the token


def load_or_create_token(state_dir: Path) -> tuple[str, bool]:
    """Return the stored credential, creating one on first use.

    The second value is True when the token was created now (the caller prints it once).
    The file is created exclusively with mode 0600, so two starting servers cannot each
    write a different token.
    """
    path = state_dir / TOKEN_FILE
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # state is the owner's alone
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise OSError(f"{path} is empty: delete it to generate a new token") from None
        return token, False
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # pasted after --token, it would read as an option
        token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True
