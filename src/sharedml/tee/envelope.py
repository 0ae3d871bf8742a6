"""Encryption to an enclave: HPKE-wrapped data keys and an AEAD chunk stream.

1. The enclave makes its key pair inside (:class:`EnclaveKeys`): an HPKE KEM
   key (X25519, or the hybrid post-quantum ML-KEM-768 + X25519) and an
   Ed25519 signing key. Their public halves, :class:`KeyBundle`, are what the
   attestation evidence binds.
2. A sender draws a fresh 256-bit data key and seals it to the bundle with
   HPKE base mode (RFC 9180: DHKEM/ML-KEM, HKDF-SHA256, AES-256-GCM), ``info``
   binding the stream id and the sender's signed policy.
3. The data follow as AES-256-GCM chunks (:class:`ChunkSealer`): the nonce is
   the chunk's sequence number, the AAD binds stream id, sequence number and
   a final-chunk flag, so a dropped, reordered, duplicated or truncated chunk
   fails to open (:class:`ChunkOpener`).

Reveals: to the host and network, the stream's length and chunk count only.
Reference: RFC 9180; the chunk framing follows the STREAM construction
(Hoang, Reyhanitabar, Rogaway, Vizár, CRYPTO 2015).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sharedml.errors import ConfigError, ProtocolAbort

X25519 = "X25519"
HYBRID = "MLKEM768-X25519"
KEM_NAMES = (X25519, HYBRID)
CHUNK = 1 << 20
TAG = 16
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _suite(kem: str) -> hpke.Suite:
    k = hpke.KEM.X25519 if kem == X25519 else hpke.KEM.MLKEM768_X25519
    return hpke.Suite(k, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class KeyBundle:
    """An enclave's (or a recipient's) public keys, canonically encoded."""

    kem: str
    kem_public: bytes  # X25519 raw, or ML-KEM-768 encapsulation key || X25519 raw
    sign_public: bytes  # Ed25519 raw (empty for a pure recipient)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"kem": self.kem, "kem_public": self.kem_public.hex(), "sign_public": self.sign_public.hex()},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyBundle:
        try:
            raw = json.loads(data)
            bundle = cls(str(raw["kem"]), bytes.fromhex(raw["kem_public"]), bytes.fromhex(raw["sign_public"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolAbort(f"malformed key bundle: {exc}", step="attest") from None
        if bundle.kem not in KEM_NAMES:
            raise ProtocolAbort(f"unknown KEM {bundle.kem!r}", step="attest")
        return bundle

    def _hpke_public(self) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        if self.kem == X25519:
            return x25519.X25519PublicKey.from_public_bytes(self.kem_public)
        split = len(self.kem_public) - 32
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.kem_public[:split]),
            x25519.X25519PublicKey.from_public_bytes(self.kem_public[split:]),
        )

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """HPKE base-mode single-shot encryption to this bundle (``enc || ct``)."""
        return _suite(self.kem).encrypt(plaintext, self._hpke_public(), info=info)

    def verify(self, signature: bytes, message: bytes) -> None:
        ed25519.Ed25519PublicKey.from_public_bytes(self.sign_public).verify(signature, message)


class EnclaveKeys:
    """A KEM key pair and a signing key, generated where this object is made."""

    def __init__(self, kem: str = X25519, *, signing: bool = True) -> None:
        if kem not in KEM_NAMES:
            raise ConfigError(f"unknown KEM {kem!r}", remedy=f"use one of {KEM_NAMES}")
        self.kem = kem
        self._x = x25519.X25519PrivateKey.generate()
        self._m = mlkem.MLKEM768PrivateKey.generate() if kem == HYBRID else None
        self._sign = ed25519.Ed25519PrivateKey.generate() if signing else None
        x_pub = self._x.public_key().public_bytes(*_RAW)
        kem_pub = x_pub if self._m is None else self._m.public_key().public_bytes_raw() + x_pub
        sign_pub = self._sign.public_key().public_bytes(*_RAW) if self._sign else b""
        self.bundle = KeyBundle(kem, kem_pub, sign_pub)

    def export_release(self) -> bytes:
        """The X25519 private key of a release key pair (no ML-KEM, no signing key), to keep at the owner."""
        if self.kem != X25519 or self._sign is not None or self._x is None:
            raise ConfigError("only an X25519 release key pair is exported", step="keys")
        return self._x.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())

    @classmethod
    def release_from(cls, raw: bytes) -> EnclaveKeys:
        """A release key pair from :meth:`export_release`'s bytes."""
        keys = cls(X25519, signing=False)
        keys._x = x25519.X25519PrivateKey.from_private_bytes(raw)
        keys.bundle = KeyBundle(X25519, keys._x.public_key().public_bytes(*_RAW), b"")
        return keys

    def open(self, sealed: bytes, info: bytes) -> bytes:
        if self._x is None:
            raise ProtocolAbort("keys were destroyed", step="decrypt")
        key: x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey = self._x
        if self._m is not None:
            key = hpke.MLKEM768X25519PrivateKey(self._m, self._x)
        try:
            return _suite(self.kem).decrypt(sealed, key, info=info)
        except (InvalidTag, ValueError) as exc:
            raise ProtocolAbort("HPKE envelope does not open", step="decrypt") from exc

    def sign(self, message: bytes) -> bytes:
        if self._sign is None:
            raise ProtocolAbort("no signing key", step="sign")
        return self._sign.sign(message)

    def destroy(self) -> None:
        """Drop every private key (the library holds them; Python cannot wipe them)."""
        self._x = None  # type: ignore[assignment]
        self._m = None
        self._sign = None


def _nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + seq.to_bytes(8, "big")


def _aad(stream_id: bytes, seq: int, last: bool) -> bytes:
    return b"sharedml-tee-chunk/1" + stream_id + seq.to_bytes(8, "big") + (b"\1" if last else b"\0")


class ChunkSealer:
    """Seals a stream of chunks under one data key (fresh per stream)."""

    def __init__(self, key: bytes, stream_id: bytes) -> None:
        self._aead = AESGCM(key)
        self._id = stream_id
        self.seq = 0

    def seal(self, chunk: bytes | memoryview, last: bool) -> bytes:
        ct = self._aead.encrypt(_nonce(self.seq), chunk, _aad(self._id, self.seq, last))
        self.seq += 1
        return ct


class ChunkOpener:
    """Opens chunks strictly in order; knows when the stream ended."""

    def __init__(self, key: bytes, stream_id: bytes) -> None:
        self._aead = AESGCM(key)
        self._id = stream_id
        self.seq = 0
        self.done = False

    def open(self, seq: int, last: bool, chunk: bytes) -> bytes:
        out = bytearray(max(0, len(chunk) - TAG))
        self.open_into(seq, last, chunk, memoryview(out))
        return bytes(out)

    def open_into(self, seq: int, last: bool, chunk: bytes | memoryview, out: memoryview) -> int:
        """Decrypt ``chunk`` into ``out`` (no intermediate copy); return the plaintext length."""
        if self.done or seq != self.seq:
            raise ProtocolAbort(f"chunk {seq} out of order (expected {self.seq})", step="upload")
        n = len(chunk) - TAG
        if n < 0 or n > len(out):
            raise ProtocolAbort(f"chunk {seq} has a bad length", step="upload")
        try:
            self._aead.decrypt_into(_nonce(seq), chunk, _aad(self._id, seq, last), out[:n])
        except InvalidTag:
            raise ProtocolAbort(f"chunk {seq} failed authentication", step="upload") from None
        self.seq += 1
        self.done = last
        return n


def data_key() -> bytes:
    return os.urandom(32)


def upload_info(job: str, upload_id: str, policy_digest: bytes) -> bytes:
    """HPKE ``info`` for an upload's data key: binds job, stream id and signed policy."""
    return b"sharedml-tee-upload/1" + json.dumps([job, upload_id, policy_digest.hex()]).encode()


def release_info(job: str, recipient: str, what: str = "model") -> bytes:
    """HPKE ``info`` for a release: binds job, recipient and what it is (a model, scores)."""
    kind = [] if what == "model" else [what]  # a model's info is unchanged since wire 1
    return b"sharedml-tee-release/1" + json.dumps([job, recipient, *kind]).encode()


def open_chunk(key: bytes, stream_id: bytes, seq: int, last: bool, chunk: bytes) -> bytes:
    """Open one chunk of a stream by its position (re-reading a spool; the upload used :class:`ChunkOpener`)."""
    try:
        return AESGCM(key).decrypt(_nonce(seq), chunk, _aad(stream_id, seq, last))
    except InvalidTag:
        raise ProtocolAbort(f"spooled chunk {seq} failed authentication", step="train") from None
