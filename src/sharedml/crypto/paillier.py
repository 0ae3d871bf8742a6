"""Paillier additively homomorphic encryption on gmpy2.

Math only, no protocol logic. ``Enc(a) * Enc(b) = Enc(a + b)`` and
``Enc(a) ^ k = Enc(k * a)`` modulo ``n``; plaintexts are integers mod ``n``,
with the upper half read as negatives (:meth:`PaillierPrivateKey.decrypt_signed`).

Speed-ups (measured in ``bench/he.py`` where present):

* ``g = n + 1``, so ``g^m = 1 + m*n (mod n^2)`` costs one multiplication.
* The randomiser ``r^n`` is drawn as ``h_s^x`` with ``h_s = h^n mod n^2`` for a
  random ``h`` fixed per key and a fresh secret exponent ``x`` of
  ``2 * SECURITY_BITS`` bits (Damgård–Jurik–Nielsen, "A generalization of
  Paillier's public-key system", PKC 2001, §4.2); a fixed-base window table
  turns each exponentiation into ~``2*SECURITY_BITS/WINDOW`` multiplications.
  Its security rests on the DCR assumption plus the hardness of the subgroup
  discrete logarithm of ``h_s``, the standard assumption of that variant.
* Decryption uses the CRT over ``p^2`` and ``q^2``.

Keys default to 2048-bit moduli (112-bit security). Randomness comes from
:mod:`secrets` only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
from gmpy2 import mpz

from sharedml.errors import ConfigError, ProtocolAbort

SECURITY_BITS = 128
WINDOW = 8


def _random_prime(bits: int) -> mpz:
    while True:
        candidate = mpz(secrets.randbits(bits)) | (mpz(1) << (bits - 1)) | 1
        prime = gmpy2.next_prime(candidate)
        if prime.bit_length() == bits:
            return mpz(prime)


@dataclass
class PaillierPublicKey:
    """Public key ``n``; encrypts, adds and multiplies by plaintext scalars."""

    n: mpz
    h_s: mpz
    n_sq: mpz = field(init=False)
    _table: list[list[mpz]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.n = mpz(self.n)
        self.h_s = mpz(self.h_s)
        self.n_sq = self.n * self.n
        if self.n.bit_length() < 1024:
            raise ConfigError(f"Paillier modulus of {self.n.bit_length()} bits is too small")
        if not 0 < self.h_s < self.n_sq or gmpy2.gcd(self.h_s, self.n) != 1:
            raise ConfigError("Paillier public key has an invalid randomiser base")
        self._table = []
        base = self.h_s
        for _ in range((2 * SECURITY_BITS + WINDOW - 1) // WINDOW):
            row = [mpz(1), base]
            for _ in range(2, 1 << WINDOW):
                row.append(row[-1] * base % self.n_sq)
            self._table.append(row)
            base = row[-1] * base % self.n_sq

    @property
    def ciphertext_bytes(self) -> int:
        return (self.n_sq.bit_length() + 7) // 8

    @property
    def plaintext_bits(self) -> int:
        return self.n.bit_length() - 1

    def _obfuscator(self) -> mpz:
        x = secrets.randbits(2 * SECURITY_BITS)
        acc = mpz(1)
        mask = (1 << WINDOW) - 1
        for row in self._table:
            digit = x & mask
            if digit:
                acc = acc * row[digit] % self.n_sq
            x >>= WINDOW
        return acc

    def encrypt(self, m: int) -> mpz:
        """Encrypt one integer (negative values wrap mod ``n``)."""
        m = mpz(m) % self.n
        return (1 + m * self.n) * self._obfuscator() % self.n_sq

    def encrypt_many(self, ms: Iterable[int]) -> list[mpz]:
        return [self.encrypt(int(m)) for m in ms]

    def add(self, a: mpz, b: mpz) -> mpz:
        return a * b % self.n_sq

    def add_plain(self, a: mpz, m: int) -> mpz:
        return a * (1 + (mpz(m) % self.n) * self.n) % self.n_sq

    def mul_plain(self, a: mpz, k: int) -> mpz:
        return gmpy2.powmod(a, mpz(k) % self.n, self.n_sq)

    def rerandomize(self, a: mpz) -> mpz:
        return a * self._obfuscator() % self.n_sq

    def sum(self, cs: Iterable[mpz]) -> mpz:
        acc = mpz(1)
        for c in cs:
            acc = acc * c % self.n_sq
        return acc

    # -- wire form ------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        size = self.ciphertext_bytes
        return (
            len(self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")).to_bytes(4, "big")
            + int(self.n).to_bytes((self.n.bit_length() + 7) // 8, "big")
            + int(self.h_s).to_bytes(size, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        if len(data) < 4:
            raise ProtocolAbort("truncated Paillier public key")
        nlen = int.from_bytes(data[:4], "big")
        if nlen > 1024 or len(data) <= 4 + nlen:
            raise ProtocolAbort("malformed Paillier public key")
        n = mpz(int.from_bytes(data[4 : 4 + nlen], "big"))
        h_s = mpz(int.from_bytes(data[4 + nlen :], "big"))
        return cls(n, h_s)

    def pack(self, cs: Sequence[mpz]) -> np.ndarray:
        """Ciphertexts as one uint8 array of fixed-width big-endian integers."""
        size = self.ciphertext_bytes
        return np.frombuffer(b"".join(int(c).to_bytes(size, "big") for c in cs), dtype=np.uint8)

    def unpack(self, data: np.ndarray | bytes) -> list[mpz]:
        raw = data.tobytes() if isinstance(data, np.ndarray) else data
        size = self.ciphertext_bytes
        if len(raw) % size:
            raise ProtocolAbort(
                f"ciphertext buffer of {len(raw)} bytes is not a multiple of {size}"
            )
        out = [mpz(int.from_bytes(raw[i : i + size], "big")) for i in range(0, len(raw), size)]
        for c in out:
            if not 0 < c < self.n_sq:
                raise ProtocolAbort("ciphertext out of range")
        return out


@dataclass
class PaillierPrivateKey:
    """The factors of ``n``; decrypts with the CRT."""

    public: PaillierPublicKey
    p: mpz
    q: mpz

    def __post_init__(self) -> None:
        p, q = mpz(self.p), mpz(self.q)
        self._p_sq, self._q_sq = p * p, q * q
        n = self.public.n
        # h_p = L_p(g^(p-1) mod p^2)^-1 mod p with g = n + 1
        self._hp = gmpy2.invert(self._l(gmpy2.powmod(n + 1, p - 1, self._p_sq), p), p)
        self._hq = gmpy2.invert(self._l(gmpy2.powmod(n + 1, q - 1, self._q_sq), q), q)
        self._q_inv_p = gmpy2.invert(q, p)

    @staticmethod
    def _l(x: mpz, d: mpz) -> mpz:
        return (x - 1) // d

    def decrypt(self, c: mpz) -> int:
        """The plaintext in ``[0, n)``."""
        p, q = mpz(self.p), mpz(self.q)
        mp = self._l(gmpy2.powmod(c % self._p_sq, p - 1, self._p_sq), p) * self._hp % p
        mq = self._l(gmpy2.powmod(c % self._q_sq, q - 1, self._q_sq), q) * self._hq % q
        return int(mq + q * ((mp - mq) * self._q_inv_p % p))

    def decrypt_signed(self, c: mpz) -> int:
        """The plaintext read as a signed integer in ``(-n/2, n/2]``."""
        m = self.decrypt(c)
        n = int(self.public.n)
        return m - n if m > n // 2 else m

    def decrypt_many(self, cs: Iterable[mpz], signed: bool = True) -> list[int]:
        f = self.decrypt_signed if signed else self.decrypt
        return [f(c) for c in cs]


def generate_keypair(bits: int = 2048) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A fresh key pair with an ``n`` of ``bits`` bits."""
    if bits < 1024 or bits % 2:
        raise ConfigError(f"Paillier key size must be an even number ≥ 1024, got {bits}")
    while True:
        p, q = _random_prime(bits // 2), _random_prime(bits // 2)
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    n_sq = n * n
    while True:
        h = mpz(secrets.randbelow(int(n - 2))) + 2
        if gmpy2.gcd(h, n) == 1:
            break
    public = PaillierPublicKey(n, gmpy2.powmod(h, n, n_sq))
    return public, PaillierPrivateKey(public, p, q)
