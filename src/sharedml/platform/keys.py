"""The platform's at-rest key: AES-256-GCM, one file in the data dir (mode 0600).

It seals secrets the database must hold but must not show, such as users'
TOTP secrets: a copy of the database alone does not reveal them. A backup of
the database is restorable only together with this key file
(``DATA_DIR/platform.key``); keep the two apart.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import AuthError, ConfigError

KEY_FILE = "platform.key"
_NONCE = 12


class SecretBox:
    """Seal and open small secrets with AES-GCM; ``aad`` binds a secret to its owner."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError(
                "the platform key must be 32 bytes", remedy=f"delete a corrupt {KEY_FILE}"
            )
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """32 bytes for one ``purpose`` (HKDF-SHA256): other keys kept by this one file."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=purpose.encode()).derive(self._key)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> SecretBox:
        """Load ``DATA_DIR/platform.key``, creating it (0600) on first start."""
        path = Path(data_dir) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(AESGCM.generate_key(bit_length=256))
        return cls(path.read_bytes())

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise AuthError(
                "a sealed secret could not be opened",
                remedy=f"the database and {KEY_FILE} must come from the same platform",
            ) from None
