"""The serving node's key: the seam between serving and key management.

Online scoring keeps two things at rest that need a node-held secret: the
cache of partners' answers (sealed with AES-256-GCM when it is written to
disk) and the audit log's keyed hashes of ids (so a log does not list
customers, yet the node can still find a given id in it). Both ask a
:class:`NodeKey` — ``seal``/``open`` and ``derive`` — and never read key
bytes themselves, so a deployment can put the key in an HSM or a KMS by
implementing those three methods. :class:`FileNodeKey` is the default: 32
random bytes in one file of mode 0600, created on first use.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import AuthError, ConfigError

_NONCE = 12


class NodeKey(Protocol):
    """What serving asks of a node's key (implement it to use an HSM or a KMS)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, sealed: bytes, aad: bytes) -> bytes: ...

    def derive(self, purpose: str) -> bytes:
        """A 32-byte subkey for ``purpose`` (stable across restarts)."""
        ...


class FileNodeKey:
    """A 256-bit key in a file of mode 0600 (created if it does not exist)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        key = path.read_bytes()
        if len(key) != 32:
            raise ConfigError(f"node key {path} is not 32 bytes",
                              remedy="restore the node's key file; never edit it")
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"node key {path} is readable by others",
                              remedy=f"chmod 600 {path}")
        self._key = key
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise AuthError("a sealed serving file could not be opened",
                            remedy="it was written under another node key, or altered") from None

    def derive(self, purpose: str) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt=None, info=purpose.encode()).derive(self._key)
