"""Small secrets in files readable by their owner only (0600): tokens, a database password.

One place writes them (created 0600, never widened by the umask) and one reads
them, refusing a file that others may read, as ``ssh`` refuses a key: a
secret whose mode was widened may already have been read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sharedml.errors import ConfigError


def write_secret(path: Path, secret: str) -> Path:
    """``secret`` and a newline in ``path``, made (or truncated) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def read_secret(path: Path, what: str, who: str, remedy: str, min_length: int = 1) -> str:
    """The secret in ``path`` (its first line); refuses a file others may read, or a short one.

    ``what`` names the secret and ``who`` the reader in the error (e.g. "the metrics token",
    "node bank")."""
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{who}: cannot read {what} in {path} ({type(exc).__name__})",
                          remedy=remedy) from None
    secret = lines[0].strip() if lines else ""
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{who}: {what} in {path} is readable by others "
                          f"(mode {stat.S_IMODE(mode):o})", remedy=f"chmod 600 {path}; {remedy}")
    if len(secret) < min_length:
        raise ConfigError(f"{who}: {what} in {path} is shorter than {min_length} characters",
                          remedy=remedy)
    return secret
