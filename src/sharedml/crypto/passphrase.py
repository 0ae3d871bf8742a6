"""Seal bytes under an operator's passphrase: scrypt, then AES-256-GCM (9.4-1).

For what an operator carries away from a host — a backup of the platform's
key, a node's model parts — so that the copy alone reveals nothing. The
sealed form is a JSON object (``v``, ``kdf`` parameters, ``salt``, ``nonce``,
``sealed``, base64) whose fields are all bound into the AEAD's associated
data with the ``purpose``, so a blob sealed for one purpose does not open as
another. A wrong passphrase and a tampered blob are one error.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sharedml.errors import AuthError, ConfigError

#: scrypt cost (RFC 7914): 2^15 x 8 x 128 bytes = 32 MiB, ~0.1 s.
_N, _R, _P = 2**15, 8, 1
MIN_LENGTH = 12


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _aad(purpose: str, header: dict[str, Any]) -> bytes:
    return f"sharedml/passphrase/v1\n{purpose}\n".encode() + json.dumps(
        header, sort_keys=True).encode()


def seal(data: bytes, passphrase: str, purpose: str) -> dict[str, Any]:
    """``data`` sealed under ``passphrase`` for ``purpose`` (a JSON-ready dict)."""
    if len(passphrase) < MIN_LENGTH:
        raise ConfigError(f"the passphrase must have at least {MIN_LENGTH} characters")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {"v": 1, "kdf": "scrypt", "n": _N, "r": _R, "p": _P,
              "salt": base64.b64encode(salt).decode()}
    sealed = AESGCM(_key(passphrase, salt, _N, _R, _P)).encrypt(nonce, data, _aad(purpose, header))
    return {**header, "nonce": base64.b64encode(nonce).decode(),
            "sealed": base64.b64encode(sealed).decode()}


def open_sealed(blob: dict[str, Any], passphrase: str, purpose: str) -> bytes:
    """The data of :func:`seal`; :class:`AuthError` if the passphrase or blob is wrong."""
    try:
        header = {k: blob[k] for k in ("v", "kdf", "n", "r", "p", "salt")}
        if header["v"] != 1 or header["kdf"] != "scrypt" or header["n"] > 2**20:
            raise ValueError("unknown format")
        key = _key(passphrase, base64.b64decode(header["salt"]), int(header["n"]),
                   int(header["r"]), int(header["p"]))
        return AESGCM(key).decrypt(base64.b64decode(blob["nonce"]),
                                   base64.b64decode(blob["sealed"]), _aad(purpose, header))
    except (KeyError, ValueError, TypeError, InvalidTag):
        raise AuthError(f"the sealed {purpose} does not open",
                        remedy="check the passphrase, and that the file is the one sealed") from None
