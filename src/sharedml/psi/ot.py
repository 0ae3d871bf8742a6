"""Oblivious-transfer building blocks for OT-based PSI: base OTs, PRG, bit transpose.

Math and two small two-party exchanges; the PSI protocol that uses them is
:mod:`sharedml.psi.kkrt`.

Base OT (:func:`base_ot_send`, :func:`base_ot_receive`) is the "simplest OT" of
Chou and Orlandi on the prime-order subgroup of Edwards25519, through
libsodium (PyNaCl's bindings), for ``w`` random 128-bit seed pairs at once:

1. The sender draws a secret scalar ``a`` and sends ``A = [a]G``.
2. For each ``i`` the receiver, with choice bit ``c_i``, draws ``b_i`` and
   sends ``B_i = [b_i]G`` if ``c_i = 0`` else ``A + [b_i]G``.
3. The sender derives ``k_i^0 = KDF(i, A, B_i, [a]B_i)`` and
   ``k_i^1 = KDF(i, A, B_i, [a](B_i - A))``; the receiver derives
   ``k_i^{c_i} = KDF(i, A, B_i, [b_i]A)``.

Reveals: the sender learns nothing about the choice bits (``B_i`` is a uniform
group element either way); the receiver learns ``k_i^{c_i}`` and nothing about
``k_i^{1-c_i}`` (computational Diffie-Hellman, KDF a random oracle).
Security: semi-honest (the scheme's known weaknesses concern malicious
receivers and UC composition, outside this model). Reference: T. Chou,
C. Orlandi, "The simplest protocol for oblivious transfer", LATINCRYPT 2015.

PRG: AES-128 in counter mode keyed by a seed (:func:`prg_streams`), read as a
stream, so column ``i`` of an OT-extension matrix can be produced in pieces.

Bit transpose (:func:`transpose_bits`): an ``r × c`` bit matrix, packed
little-endian along rows into ``(r, c/8)`` bytes, becomes its ``c × r``
transpose, packed the same way. It works on 8×8 bit blocks held in one
``uint64`` each with three delta swaps (Hacker's Delight, §7-3), vectorised
over all blocks, instead of unpacking every bit to a byte.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)

from sharedml.errors import ProtocolAbort
from sharedml.session import Session

SEED_BYTES = 16
POINT_BYTES = 32
_KDF = b"sharedml/psi/base-ot/v1"


def _scalar() -> bytes:
    return bytes(crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64)))


def _kdf(i: int, a: bytes, b: bytes, shared: bytes) -> bytes:
    return hashlib.sha256(_KDF + i.to_bytes(4, "little") + a + b + shared).digest()[:SEED_BYTES]


def _points(obj: object, count: int, party: str, what: str) -> list[bytes]:
    """Check a peer's points: ``(count, 32)`` bytes, each a valid group element."""
    arr = np.asarray(obj) if isinstance(obj, np.ndarray) else None
    if arr is None or arr.dtype != np.uint8 or arr.shape != (count, POINT_BYTES):
        raise ProtocolAbort(
            f"base OT: {what} has shape {getattr(obj, 'shape', type(obj).__name__)}, "
            f"expected ({count}, {POINT_BYTES}) uint8",
            party=party,
            step="psi/base-ot",
        )
    pts = [bytes(row) for row in arr]
    if not all(crypto_core_ed25519_is_valid_point(p) for p in pts):
        raise ProtocolAbort(
            f"base OT: {what} holds a point outside the prime-order group",
            party=party,
            step="psi/base-ot",
            remedy="the peer's PSI build is faulty or hostile; abort the job",
        )
    return pts


def base_ot_send(session: Session, peer: str, count: int, tag: str = "bot") -> np.ndarray:
    """Act as base-OT sender for ``count`` random seed pairs; returns ``(count, 2, 16)``."""
    a = _scalar()
    big_a = bytes(crypto_scalarmult_ed25519_base_noclamp(a))
    session.channel.send(peer, f"{tag}/A", np.frombuffer(big_a, np.uint8).reshape(1, POINT_BYTES))
    bs = _points(session.channel.recv(peer, f"{tag}/B"), count, session.party, "the B points")
    out = np.empty((count, 2, SEED_BYTES), np.uint8)
    for i, b in enumerate(bs):
        k0 = _kdf(i, big_a, b, bytes(crypto_scalarmult_ed25519_noclamp(a, b)))
        k1 = _kdf(i, big_a, b, bytes(crypto_scalarmult_ed25519_noclamp(a, crypto_core_ed25519_sub(b, big_a))))
        out[i, 0] = np.frombuffer(k0, np.uint8)
        out[i, 1] = np.frombuffer(k1, np.uint8)
    return out


def base_ot_receive(
    session: Session, peer: str, choices: Sequence[int] | np.ndarray, tag: str = "bot"
) -> np.ndarray:
    """Act as base-OT receiver with ``choices`` (0/1 each); returns ``(count, 16)`` seeds."""
    bits = np.asarray(choices, dtype=np.uint8)
    (big_a,) = _points(session.channel.recv(peer, f"{tag}/A"), 1, session.party, "the A point")
    scalars = [_scalar() for _ in range(len(bits))]
    sent = np.empty((len(bits), POINT_BYTES), np.uint8)
    for i, (b, c) in enumerate(zip(scalars, bits, strict=True)):
        pt = bytes(crypto_scalarmult_ed25519_base_noclamp(b))
        if c:
            pt = bytes(crypto_core_ed25519_add(big_a, pt))
        sent[i] = np.frombuffer(pt, np.uint8)
    session.channel.send(peer, f"{tag}/B", sent)
    out = np.empty((len(bits), SEED_BYTES), np.uint8)
    for i, b in enumerate(scalars):
        shared = bytes(crypto_scalarmult_ed25519_noclamp(b, big_a))
        out[i] = np.frombuffer(_kdf(i, big_a, bytes(sent[i]), shared), np.uint8)
    return out


def prg_streams(seeds: np.ndarray) -> list[CipherContext]:
    """One AES-128-CTR keystream per 16-byte seed (counter from zero), read with ``update``."""
    zero = bytes(16)
    return [
        Cipher(algorithms.AES(bytes(s)), modes.CTR(zero)).encryptor() for s in np.asarray(seeds)
    ]


def prg_take(streams: Sequence[CipherContext], nbytes: int) -> np.ndarray:
    """The next ``nbytes`` of every stream, as a ``(len(streams), nbytes)`` uint8 matrix."""
    out = np.empty((len(streams), nbytes), np.uint8)
    zero = bytes(nbytes)
    for i, s in enumerate(streams):
        out[i] = np.frombuffer(s.update(zero), np.uint8)
    return out


def _transpose8x8(x: np.ndarray) -> None:
    """In place: each uint64 as an 8×8 bit matrix (byte k = row k, bit b = column b) transposed."""
    for shift, mask in (
        (7, 0x00AA00AA00AA00AA),
        (14, 0x0000CCCC0000CCCC),
        (28, 0x00000000F0F0F0F0),
    ):
        s, m = np.uint64(shift), np.uint64(mask)
        t = (x ^ (x >> s)) & m
        x ^= t
        x ^= t << s


def transpose_bits(m: np.ndarray) -> np.ndarray:
    """Transpose an ``r × 8c`` bit matrix packed as ``(r, c)`` bytes (``r`` a multiple of 8).

    Bits are little-endian within each byte (``np.unpackbits(..., bitorder="little")``):
    bit ``b`` of byte ``[i, J]`` is entry ``(i, 8J + b)``. Returns ``(8c, r/8)`` bytes.
    """
    r, c = m.shape
    if r % 8:
        raise ValueError(f"transpose_bits needs a multiple of 8 rows, got {r}")
    blocks = np.ascontiguousarray(m.reshape(r // 8, 8, c).transpose(2, 0, 1))
    x = blocks.view(np.uint64).reshape(c, r // 8)
    _transpose8x8(x)
    return np.ascontiguousarray(
        x.view(np.uint8).reshape(c, r // 8, 8).transpose(0, 2, 1)
    ).reshape(8 * c, r // 8)
