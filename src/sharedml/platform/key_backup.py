"""The platform key in backups (8.3-5): sealed under an operator's passphrase, never invented.

``platform backup`` puts ``DATA_DIR/platform.key`` (which seals the TOTP
secrets in the database, :mod:`sharedml.platform.keys`) into the backup's
header, sealed with scrypt + AES-GCM under the operator's passphrase
(:mod:`sharedml.crypto.passphrase`): the file alone opens nothing.
``platform restore`` puts it back before the database is opened, and refuses
to go on when the key would otherwise be made anew — a restored database
whose sealed secrets no key opens looks fine until the first TOTP login.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sharedml.crypto import passphrase as pp
from sharedml.errors import ConfigError
from sharedml.platform.keys import KEY_FILE

PURPOSE = "platform key"


def seal_key(data_dir: Path, secret: str) -> dict[str, Any]:
    path = Path(data_dir) / KEY_FILE
    if not path.is_file():
        raise ConfigError(f"no platform key at {path}", remedy="back up the data dir it runs on")
    return pp.seal(path.read_bytes(), secret, PURPOSE)


def restore_key(data_dir: Path, sealed: dict[str, Any] | None, secret: str | None,
                *, new_key: bool = False) -> str:
    """Put the backup's key in ``data_dir`` (or check the one there); returns what was done."""
    path = Path(data_dir) / KEY_FILE
    if sealed is None:
        if path.is_file():
            return f"the backup holds no platform key; {path} stays"
        if new_key:
            return "the backup holds no platform key; a new one will be made (--new-key)"
        raise ConfigError(
            f"the backup holds no platform key and {data_dir} has none: a new key would not "
            "open the TOTP secrets in the database",
            remedy=f"copy the old {KEY_FILE} into {data_dir}, or pass --new-key (then every "
            "user with TOTP enrols again)",
        )
    if secret is None:
        raise ConfigError("the backup's platform key is sealed with a passphrase",
                          remedy="give it with --passphrase-file or SHAREDML_BACKUP_PASSPHRASE")
    key = pp.open_sealed(sealed, secret, PURPOSE)
    if path.is_file():
        if path.read_bytes() != key:
            raise ConfigError(
                f"{path} holds another platform's key than the backup's",
                remedy=f"restore into a new data dir, or move {path} away first")
        return f"{path} already holds the backup's key"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return f"restored the platform key to {path}"


def read_secret(passphrase_file: Path | None) -> str | None:
    """The operator's passphrase: a file's first line, else ``SHAREDML_BACKUP_PASSPHRASE``."""
    if passphrase_file is not None:
        try:
            return passphrase_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            raise ConfigError(f"cannot read a passphrase from {passphrase_file}") from None
    return os.environ.get("SHAREDML_BACKUP_PASSPHRASE")
