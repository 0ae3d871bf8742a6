"""The cryptographic building blocks of secure aggregation (no I/O, no protocol state).

* **Key agreement**: X25519 (``cryptography``); a shared secret is turned into
  a 128-bit key by HKDF-SHA-256 with a label naming the round, the purpose and
  the ordered pair, so keys of different rounds, purposes or pairs are
  independent.
* **Share encryption**: AES-128-GCM under the ``c`` agreement key of a pair,
  with the round and both indices as associated data (a ciphertext moved to
  another round or pair fails to open).
* **Shamir sharing** over the prime field of 2^521 − 1
  (:mod:`sharedml.crypto.shamir`, which says why not pycryptodome's); the
  server builds one :class:`~sharedml.crypto.shamir.Recombiner` per round and
  recovers every client's secret with it.
* **Mask expansion**: the project's PRG construction (AES-128-CTR under a
  128-bit key, counter block ``nonce ‖ 0``, as :class:`sharedml.crypto.prg.Prg`,
  whose keystream bytes it reads as the ring's words: uint64, or uint32 on
  the 32-bit ring) added to or subtracted from the vector chunk by chunk, so the vector stays in cache while every mask of a
  chunk is applied. Never numpy's generator (STYLE.md 9).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.crypto import shamir

KEY_BYTES = 16
PUBLIC_BYTES = 32
PRIVATE_BYTES = 32
SHARE_BYTES = shamir.SHARE_BYTES
NONCE_BYTES = 12
#: Words per chunk of mask expansion: up to 256 KB of keystream, two such buffers fit in L2.
CHUNK_WORDS = 1 << 15
_ZEROS = bytes(8 * CHUNK_WORDS)
#: Bytes of slack ``update_into`` wants past the data (one AES block, less one byte).
_SLACK = 16


class OpenFailed(Exception):
    """A share ciphertext did not authenticate (wrong key, round or pair)."""


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def agree(private: X25519PrivateKey | bytes, public: bytes, label: str) -> bytes:
    """A 128-bit key shared by the holders of ``private`` and the key behind ``public``.

    Raises ``ValueError`` for a malformed or low-order public key (X25519
    refuses an all-zero shared secret).
    """
    if isinstance(private, bytes):
        private = X25519PrivateKey.from_private_bytes(private)
    secret = private.exchange(X25519PublicKey.from_public_bytes(public))
    return HKDF(hashes.SHA256(), KEY_BYTES, None, f"sharedml/secagg/{label}".encode()).derive(
        secret
    )


def pair_label(purpose: str, round_id: int, u: int, v: int) -> str:
    """The HKDF label of the pair ``{u, v}`` (order-free) for ``purpose`` in ``round_id``."""
    lo, hi = sorted((u, v))
    return f"{purpose}/{round_id}/{lo}-{hi}"


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-GCM ciphertext ``nonce ‖ ct ‖ tag`` of ``plaintext`` bound to ``associated``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """The plaintext of :func:`seal`'s output; :class:`OpenFailed` if it does not authenticate."""
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError) as exc:
        raise OpenFailed(str(exc) or "authentication failed") from None


def share_secret(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, bytes]:
    """Shamir shares of ``secret`` at the points ``xs`` (≥ 1); any ``threshold`` recover it."""
    return shamir.split(secret, threshold, xs)


def recoverer(holders: Sequence[int], threshold: int) -> shamir.Recombiner:
    """Recovers secrets from the shares of the first ``threshold`` of ``holders`` (points)."""
    if len(holders) < threshold:
        raise ValueError(f"{len(holders)} holders cannot recover a secret of threshold {threshold}")
    return shamir.Recombiner(sorted(holders)[:threshold], threshold)


def apply_masks(
    out: np.ndarray,
    masks: Sequence[tuple[bytes, int]],
    nonce: int = 0,
    fill: Callable[[int, int, np.ndarray], object] | None = None,
) -> np.ndarray:
    """``out += Σ sign · PRG(key, nonce)`` on ``out``'s ring (uint64 mod 2^64 or uint32
    mod 2^32), chunk by chunk, in place.

    ``masks`` holds ``(key, sign)`` with ``sign`` +1 or −1. With ``fill``,
    ``fill(start, stop, chunk)`` first writes the unmasked words of
    ``out[start:stop]`` into ``chunk`` (so an encoding and its masks touch
    the vector once, while it is in cache). Each key's keystream is the one
    ``Prg(key).words(nonce, ·)`` draws, read as ``out``'s words (on the 32-bit
    ring a mask takes half the keystream, so half the AES work).
    """
    flat = out.reshape(-1)
    width = flat.dtype.itemsize
    iv = nonce.to_bytes(8, "big") + bytes(8)
    streams = [
        (Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor(), sign) for key, sign in masks
    ]
    scratch = np.empty(CHUNK_WORDS * width + _SLACK, dtype=np.uint8)
    raw = scratch.data
    for start in range(0, flat.size, CHUNK_WORDS):
        stop = min(start + CHUNK_WORDS, flat.size)
        chunk = flat[start:stop]
        if fill is not None:
            fill(start, stop, chunk)
        nbytes = width * (stop - start)
        words = scratch[:nbytes].view(flat.dtype)
        for enc, sign in streams:
            enc.update_into(_ZEROS[:nbytes], raw)
            if sign > 0:
                chunk += words
            else:
                chunk -= words
    return out
