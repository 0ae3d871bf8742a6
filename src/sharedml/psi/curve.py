"""Curve25519 arithmetic for ECDH-PSI: hash to the curve and blind, batch-wise.

Math only — no channel, no protocol. Each function takes and returns packed
byte buffers (``n * 32`` bytes) so a batch crosses into a worker process as one
object, never as ``n`` Python objects (the caller views the result as a
``(n, 32)`` numpy ``uint8`` array).

Blinding is the X25519 function (RFC 7748): ``X25519(k, u) = u([clamp(k)] P)``
for the point ``P`` with Montgomery u-coordinate ``u``. Because the ladder works
on u-coordinates, which identify ``P`` with ``-P``, and scalar multiplication
commutes, ``X25519(a, X25519(b, u)) = X25519(b, X25519(a, u))``: this is the
commutative blinding ECDH-PSI needs. libsodium's ``crypto_scalarmult`` (through
PyNaCl) measured 32.2k/s per core here against 30.2k/s for ``cryptography``'s
``X25519PrivateKey.exchange`` (which builds two OpenSSL key objects per call)
and 31.6k/s for ``openssl speed ecdhx25519``; ``bench/psi.py`` re-measures it.

Hash to the curve (:func:`hash_to_u`), try-and-increment:

1. ``d = SHA-256(DOMAIN || ctr || digest)`` for ``ctr = 0, 1, ...``, where
   ``digest`` is the SHA-256 of the normalised key (``sharedml.psi.keys``).
2. ``u = d`` read little-endian with bit 255 cleared; rejected if ``u >= p``.
3. Accept ``u`` when ``u^3 + A u^2 + u`` is a non-zero square mod ``p``
   (Legendre symbol 1), i.e. ``u`` is the u-coordinate of a point on
   Curve25519 itself and not on its quadratic twist; else next ``ctr``.

Why this is sound: modelling SHA-256 as a random oracle, the accepted ``u`` is
uniform over the u-coordinates of curve points, so the map is a random oracle
into ``E(F_p)/{±1}`` (Boneh–Lynn–Shacham's MapToGroup; about two tries on
average). ``E(F_p)`` has order ``8·ℓ`` with ``ℓ`` a 252-bit prime; X25519
clamps every scalar to a multiple of 8, so ``[clamp(k)] P`` always lands in the
prime-order subgroup and the cofactor never carries information: blinded
points live in a group of prime order ``ℓ`` where DDH is assumed hard, which is
what ECDH-PSI's security rests on. Points of small order (probability about
``2^-250`` for a hashed ``u``) make libsodium fail loudly rather than output
zero. A peer that sends a twist point (outside the semi-honest model) gets a
twist point back, harmless because Curve25519 is twist-secure (twist order
``4·ℓ'``, ``ℓ'`` prime) and clamping clears the twist's cofactor too. The
number of tries depends only on this party's own ids and is not sent.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import gmpy2
from nacl.bindings import crypto_scalarmult

try:  # PyNaCl's cffi module: one call per point without the bindings' per-call checks
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - a PyNaCl without it falls back to the bindings
    _lib = None

P = 2**255 - 19
A = 486662
DOMAIN = b"sharedml/psi/x25519-tai/v1"
POINT_BYTES = 32
_P = gmpy2.mpz(P)
_A = gmpy2.mpz(A)
_MASK255 = (1 << 255) - 1


def new_key() -> bytes:
    """A fresh secret blinding scalar (32 bytes from :mod:`secrets`)."""
    return secrets.token_bytes(32)


def hash_to_u(digest: bytes) -> bytes:
    """The u-coordinate (32 bytes, little-endian) of a curve point for ``digest``."""
    for ctr in range(256):
        d = hashlib.sha256(DOMAIN + bytes((ctr,)) + digest).digest()
        u = int.from_bytes(d, "little") & _MASK255
        if u >= P:
            continue
        m = gmpy2.mpz(u)
        if gmpy2.legendre((m * m + _A * m + 1) * m % _P, _P) == 1:
            return u.to_bytes(32, "little")
    raise ArithmeticError("hash_to_u found no curve point in 256 tries")  # probability 2^-256


def hash_and_blind(key: bytes, digests: bytes) -> bytes:
    """``[k] H(d)`` for each 32-byte digest in the packed buffer ``digests``."""
    return blind(key, b"".join(hash_to_u(digests[o : o + 32]) for o in range(0, len(digests), 32)))


def blind(key: bytes, points: bytes) -> bytes:
    """``[k] X`` for each 32-byte u-coordinate in the packed buffer ``points``.

    libsodium releases the GIL during each multiplication (cffi does), so
    threads calling this run on every core. A result of zero (an input of
    small order, which a hashed point is not) raises ``ArithmeticError``.
    """
    if len(key) != 32 or len(points) % 32:
        raise ValueError("blind needs a 32-byte key and whole 32-byte points")
    if _lib is None:
        out = bytearray(len(points))
        for off in range(0, len(points), 32):
            out[off : off + 32] = crypto_scalarmult(key, points[off : off + 32])
        return bytes(out)
    buf = _ffi.new("unsigned char[]", len(points))
    src = _ffi.from_buffer(points)
    mult = _lib.crypto_scalarmult
    for off in range(0, len(points), 32):
        if mult(buf + off, key, src + off) != 0:
            raise ArithmeticError("X25519 of a small-order point (all-zero result)")
    return bytes(_ffi.buffer(buf))


def raw_rate(seconds: float = 1.0) -> float:
    """Single-core X25519 scalar multiplications per CPU-second (for benches)."""
    key = new_key()
    point = hash_to_u(b"\x00" * 32)
    done = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(1000):
            point = crypto_scalarmult(key, point)
        done += 1000
    return done / (time.process_time() - start)
