"""The stack's own service credentials: made once, kept 0600, never overwritten, never printed.

The Prefect server serves Secret blocks and the registry accepts pushes; the app's
replicas share the host's loopback with both, so neither may answer anonymously.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import bcrypt


def ensure_credentials(path: Path, user: str) -> str:
    """`user:password` from ``path``, made (0600, in a 0700 directory) on first use and kept thereafter.

    Written to a private temp file and linked into place, so the file is never seen empty; a damaged
    one (empty, or no `user:password`) is an error naming it, never silently replaced.
    """
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if ":" not in existing:
            raise ValueError(f"{path} holds no `user:password` line; remove it to make new credentials")
        return existing
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = f"{user}:{secrets.token_urlsafe(24)}"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        try:
            os.link(temporary, path)  # fails if another `stack up` linked its own first: theirs stands
        except FileExistsError:
            return path.read_text().strip()
    finally:
        os.unlink(temporary)
    return value


# The registry checks the bcrypt hash on every request (no cache): at cost 10 that was ~70 ms of CPU per
# blob, minutes per test run, on the machine the canaries are judged on. The password is 192 random bits,
# so the cost factor adds nothing against guessing: the minimum.
BCRYPT_ROUNDS = 4


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd entry in the only format the registry accepts (bcrypt)."""
    if not user or ":" in user or "\n" in user:
        raise ValueError(f"registry user {user!r} must be non-empty, without ':' or newlines")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()}\n"


def htpasswd_matches(line: str, user: str, password: str) -> bool:
    """Whether an htpasswd entry is ``user``'s with ``password`` at our cost (so an unchanged file is not rewritten)."""
    name, _, hashed = line.strip().partition(":")
    if name != user or not hashed.startswith(f"$2b${BCRYPT_ROUNDS:02d}$"):
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False
