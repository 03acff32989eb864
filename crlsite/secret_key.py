"""The SECRET_KEY of a development set-up: made once into a file that every local process (web, worker) reads."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_secret_key(*, path: Path) -> str:
    """Return the key stored in ``path``, creating it (random, 50 url-safe bytes, file mode 0600) if missing.

    Safe when several processes start at once: the key is written to a private temporary file and
    hard-linked into place, which fails for all but the first process; the others then read the winner's
    key. Raises ``OSError`` when the folder cannot be written, and
    ``ValueError`` naming the file when it exists but is empty.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path}: the secret key file is empty; delete it to have a new key made, or set SECRET_KEY")
    return key
