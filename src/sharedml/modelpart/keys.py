"""A node's own keys: sealing at rest and signing exports — the key-management seam.

Every data party's node holds two secrets of its own, never sent anywhere:

* an **at-rest key** (AES-256-GCM) that seals its model parts, its batch
  prediction outputs and (for the serving gateway) its cache of remote results;
* a **signing key** (Ed25519) that signs the model parts it exports, so the
  node importing them can tell they come from a node it trusts, unaltered.

Subkeys for other purposes (the serving audit's keyed id hashes) are
derived from the at-rest key by HKDF-SHA256 with the purpose as info
(:meth:`NodeKeys.derive`), so one key file backs them all.

:class:`NodeKeys` is the seam. :class:`FileNodeKeys` keeps both keys in files
of mode 0600 in one folder (created by ``sharedml model keys DIR``, by a node
agent on its first start, or by ``sharedml run`` for each party). An HSM or a
cloud KMS replaces it by implementing the same five calls — ``seal``/``open``
as the KMS's encrypt/decrypt (or envelope encryption under a KMS-held key),
``sign``/``public_key_pem`` as its asymmetric signing key and ``derive`` as its
key derivation (an HMAC key it holds); callers never see key bytes.

Sealed blob format (version 1): ``b"SMLK"``, a version byte, the 8-byte key
id (the first bytes of SHA-256 of the signing public key: which node's key),
a 12-byte random nonce, then the AES-256-GCM ciphertext and tag. The caller's
associated data (e.g. a part file's header) is authenticated, not stored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import ConfigError, DataError

__all__ = ["FileNodeKeys", "NodeKeys", "key_id_of", "verify_signature", "write_private"]

MAGIC = b"SMLK"
VERSION = 1
_NONCE = 12
_KEY_ID = 8
AT_REST_FILE = "at-rest.key"
SIGNING_FILE = "signing.key"
PUBLIC_FILE = "signing.pub.pem"


class NodeKeys(Protocol):
    """What callers may do with a node's keys (an HSM/KMS implements the same)."""

    @property
    def key_id(self) -> bytes:
        """8 bytes naming this node's keys (from the signing public key)."""

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt and authenticate ``plaintext`` (and ``aad``) under the at-rest key."""

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of :meth:`seal`; a :class:`DataError` if it was altered,
        sealed by another node or with other associated data."""

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature of ``data`` by this node."""

    def public_key_pem(self) -> bytes:
        """This node's signing public key (PEM), for the nodes that verify its exports."""

    def derive(self, purpose: str) -> bytes:
        """A 32-byte subkey for ``purpose``, stable across restarts."""


def key_id_of(public_pem: bytes) -> bytes:
    """The key id of a signing public key: the first 8 bytes of SHA-256 of its raw form."""
    raw = _public(public_pem).public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:_KEY_ID]


def verify_signature(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public_pem``'s signature of ``data``."""
    try:
        _public(public_pem).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _public(public_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        raise DataError("not a PEM public key", remedy="pass the node's signing.pub.pem") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DataError("not an Ed25519 public key", remedy="pass the node's signing.pub.pem")
    return key


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` with mode 0600 from the start (then rename into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class FileNodeKeys:
    """The node's keys as files of mode 0600 in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        at_rest = self._read(AT_REST_FILE)
        self._aead = AESGCM(at_rest)
        self._kdf_input = at_rest
        signing = serialization.load_pem_private_key(self._read(SIGNING_FILE), password=None)
        if not isinstance(signing, Ed25519PrivateKey):
            raise ConfigError(f"{self.directory / SIGNING_FILE} is not an Ed25519 key",
                              remedy="create the node's keys with 'sharedml model keys DIR'")
        self._signing = signing
        self._public_pem = signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self._key_id = key_id_of(self._public_pem)

    @classmethod
    def create(cls, directory: Path) -> FileNodeKeys:
        """Make a node's keys in ``directory`` (refused if any key file exists)."""
        directory = Path(directory)
        existing = [n for n in (AT_REST_FILE, SIGNING_FILE) if (directory / n).exists()]
        if existing:
            raise ConfigError(f"{directory} already holds node keys {existing}",
                              remedy="use them (FileNodeKeys.open_or_create) or pick another folder")
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        signing = Ed25519PrivateKey.generate()
        write_private(directory / AT_REST_FILE, AESGCM.generate_key(bit_length=256))
        write_private(directory / SIGNING_FILE, signing.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (directory / PUBLIC_FILE).write_bytes(signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(directory)

    @classmethod
    def open_or_create(cls, directory: Path) -> FileNodeKeys:
        """The keys in ``directory``, made there first if it holds none."""
        if (Path(directory) / AT_REST_FILE).exists():
            return cls(directory)
        return cls.create(directory)

    def _read(self, name: str) -> bytes:
        path = self.directory / name
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read node key {path}: {exc.strerror}",
                              remedy="create the node's keys with 'sharedml model keys DIR'"
                              ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"node key {path} is readable by others (mode {oct(mode & 0o777)})",
                              remedy=f"chmod 600 {path}")
        return data

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        head = MAGIC + bytes([VERSION]) + self._key_id
        return head + nonce + self._aead.encrypt(nonce, plaintext, head + aad)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        head_len = len(MAGIC) + 1 + _KEY_ID
        if len(sealed) < head_len + _NONCE + 16 or sealed[:len(MAGIC)] != MAGIC:
            raise DataError("not a sealed sharedml blob (bad magic or too short)")
        if sealed[len(MAGIC)] != VERSION:
            raise DataError(f"sealed blob version {sealed[len(MAGIC)]} is not {VERSION}")
        head = sealed[:head_len]
        if head[len(MAGIC) + 1:] != self._key_id:
            raise DataError(
                f"sealed by another node's key ({head[len(MAGIC) + 1:].hex()}, this node's is "
                f"{self._key_id.hex()})", remedy="open it on the node that wrote it, or import "
                "an export of it ('sharedml model import')")
        nonce = sealed[head_len:head_len + _NONCE]
        try:
            return self._aead.decrypt(nonce, sealed[head_len + _NONCE:], head + aad)
        except InvalidTag:
            raise DataError("sealed data failed authentication: it was altered or its "
                            "header changed") from None

    def sign(self, data: bytes) -> bytes:
        return self._signing.sign(data)

    def public_key_pem(self) -> bytes:
        return self._public_pem

    def derive(self, purpose: str) -> bytes:
        info = b"sharedml node subkey v1/" + purpose.encode("utf-8")
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._kdf_input)
