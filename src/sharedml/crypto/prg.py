"""AES-128-CTR pseudo-random generator for shares and masks.

Math only: no transport, no protocol. Every secret share, mask and piece of
correlated randomness in :mod:`sharedml.mpc` comes from here (or from
:mod:`secrets`), never from numpy's generators (STYLE.md 9).

A :class:`Prg` holds one 128-bit AES key. Each draw names a 64-bit *nonce*;
the keystream of AES-128 in counter mode under (key, nonce) is the output, so

* two holders of the same key draw the same words for the same nonce with no
  communication (this is how a dealer and a party agree on triples), and
* different nonces give independent-looking streams (AES is a PRP; a stream
  may hold up to 2^64 blocks before the counter would wrap).

Output is written into a caller-provided or freshly allocated buffer with
``update_into`` (no intermediate copy); on this machine it produces about
6 GB/s.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sharedml.errors import ConfigError

KEY_BYTES = 16
_ZEROS = bytearray(1 << 16)


def derive_key(secret: bytes, label: str) -> bytes:
    """A 128-bit AES key derived from ``secret`` (≥ 128 bits) for ``label``.

    HMAC-SHA-256 as a PRF (the extract-and-expand step of HKDF with a fixed
    label); distinct labels give independent keys.
    """
    if len(secret) < KEY_BYTES:
        raise ConfigError(f"PRG secret of {len(secret) * 8} bits is too short (need ≥ 128)")
    return hmac.new(secret, label.encode(), hashlib.sha256).digest()[:KEY_BYTES]


def _zeros(nbytes: int) -> memoryview:
    global _ZEROS
    if len(_ZEROS) < nbytes:
        _ZEROS = bytearray(max(nbytes, 2 * len(_ZEROS)))
    return memoryview(_ZEROS)[:nbytes]


class Prg:
    """AES-128-CTR keystream generator under one secret key."""

    __slots__ = ("_algo",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"PRG key must be {KEY_BYTES} bytes, got {len(key)}")
        self._algo = algorithms.AES(key)

    @classmethod
    def fresh(cls) -> Prg:
        """A generator under a new key from :mod:`secrets`."""
        return cls(secrets.token_bytes(KEY_BYTES))

    def words(self, nonce: int, count: int, buffer: np.ndarray | None = None) -> np.ndarray:
        """``count`` pseudo-random uint64 words from the stream ``nonce``.

        ``buffer`` (uint64, at least ``count + 2`` words: ``update_into`` needs
        a block of slack) is reused instead of allocating; the result is a view
        of it.
        """
        if buffer is None:
            buffer = np.empty(count + 2, dtype=np.uint64)
        elif buffer.dtype != np.uint64 or buffer.size < count + 2 or not buffer.flags.c_contiguous:
            raise ConfigError(f"PRG buffer must hold {count + 2} contiguous uint64 words")
        self._fill(nonce, buffer.view(np.uint8), 8 * count)
        return buffer[:count]

    def uint64(
        self, nonce: int, shape: tuple[int, ...] | int, buffer: np.ndarray | None = None
    ) -> np.ndarray:
        """An array of uniform ring elements of ``shape`` from stream ``nonce``."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = 1
        for dim in shape:
            count *= dim
        return self.words(nonce, count, buffer).reshape(shape)

    def _fill(self, nonce: int, buf: np.ndarray, nbytes: int) -> None:
        if not 0 <= nonce < 1 << 64:
            raise ConfigError(f"PRG nonce {nonce} outside [0, 2^64)")
        iv = nonce.to_bytes(8, "big") + bytes(8)
        enc = Cipher(self._algo, modes.CTR(iv)).encryptor()
        if nbytes:
            enc.update_into(_zeros(nbytes), buf.data)


class BufferPool:
    """Reusable uint64 buffers for PRG output, so large draws do not pay for
    fresh pages every time. ``take`` a buffer, ``give`` it back when no array
    viewing it is used any more. Holds at most ``limit_bytes`` of idle buffers.
    """

    def __init__(self, limit_bytes: int = 1 << 28) -> None:
        self.limit = limit_bytes
        self._idle: dict[int, list[np.ndarray]] = {}
        self._bytes = 0

    def take(self, count: int) -> np.ndarray:
        """A buffer of at least ``count + 2`` words (PRG slack included)."""
        stack = self._idle.get(count + 2)
        if stack:
            buf = stack.pop()
            self._bytes -= buf.nbytes
            return buf
        return np.empty(count + 2, dtype=np.uint64)

    def give(self, buffer: np.ndarray) -> None:
        if self._bytes + buffer.nbytes > self.limit:
            return
        self._idle.setdefault(buffer.size, []).append(buffer)
        self._bytes += buffer.nbytes


def secret_words(shape: tuple[int, ...] | int) -> np.ndarray:
    """Uniform uint64 words under a one-time key from :mod:`secrets`."""
    return Prg.fresh().uint64(0, shape)
