"""Secure truncation: bring a product's 2f fractional bits back to f.

``truncate(x, k)`` returns a sharing of ``x / 2^k`` (x read as a signed integer
in ring units). Two methods, chosen per runtime (``MPC(trunc=...)``):

**pair** (default) — one round, no failure probability. With a truncation
pair from the provider (r uniform in Z_2^64, shares of r_hi = ⌊r/2^k⌋ and of
r_msb = r >> 63):

1. Offset: x' = x + 2^62 (P_0 adds the constant), so 0 ≤ x' < 2^63 whenever
   -2^62 ≤ x < 2^62.
2. Open c = x' + r mod 2^64 (one round). Two parties and a tensor of more
   than :data:`SMALL_OPEN` elements: P_1 sends its masked share to P_0 only
   and P_0 sends back msb(c), one bit per element (8 MB + 125 kB per 1M
   elements instead of 8 MB each way, for a second one-way delay); more
   parties, or a small tensor (where the delay costs more than the bytes):
   everyone, in one exchange.
3. Because x' < 2^63, the sum wrapped iff r_msb = 1 and msb(c) = 0, so
   w = r_msb·(1 - msb(c)) is linear in the shares of r_msb.
4. P_i sets y_i = [i=0](⌊c/2^k⌋ - 2^(62-k)) - r_hi_i + w_i·2^(64-k).

Then y = ⌊x/2^k⌋ + β with β ∈ {0, 1} the borrow of the low k bits: the error
is at most one ulp (2^-f after a fixed-point product), for every |x| < 2^62,
always. Reveals: c (to P_0 only with two parties, to every party with more)
(to every party for a small tensor) and msb(c), uniform because r is
uniform and unknown to all.

With a provider that cannot deal pairs (two parties, HE), P_1 draws r itself,
P_1 sends x_1 + r to P_0 only, P_0 learns c and the bit product
r_msb·(1 - msb(c)) of two private bits is computed with one Beaver
multiplication: two rounds, same result and bound. Reveals: c to P_0 only
(uniform), masked values of the Beaver step.

**local** — SecureML's local truncation, no round, two parties: P_0 keeps
x_0 >> k, P_1 keeps -((-x_1) >> k) (arithmetic shifts). Error at most one ulp,
except with probability at most 2^(l+1-64) per element for |x| < 2^l, when
the result is wrong by about 2^(64-k) (a catastrophic failure). At f = 16
after a product (k = 16), values with |x·y| < 2^8 have l = 40: p ≤ 2^-23.

Security model: semi-honest, as the provider. Reference: Mohassel & Zhang,
"SecureML", S&P 2017, Thm. 1 (local); Escudero, Ghosh, Keller, Rachuri,
Scholl, "Improved primitives for MPC over mixed arithmetic-binary circuits",
CRYPTO 2020 (probabilistic truncation with a pair and a known-MSB wrap bit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError
from sharedml.mpc.material import Kind
from sharedml.mpc.provider import Material
from sharedml.mpc.tensor import SharedTensor

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC

_OFFSET_BITS = 62
#: Up to this many elements, two parties open a truncation to both (one
#: one-way delay, 2 x 8 bytes an element) rather than at P_0 with msb(c)
#: sent back (two delays, ~8.1 bytes an element): 32 kB each way at most.
SMALL_OPEN = 4096
_U63 = np.uint64(63)


def prefetch(mpc: MPC, shape: tuple[int, ...], scale: int) -> Material | None:
    """Ask for the truncation pair a product of ``shape`` and ``scale`` will need.

    Asking before the product lets the dealer make the pair while the product's
    round is in flight. Returns ``None`` when no pair will be used.
    """
    extra = scale - mpc.frac_bits
    if extra <= 0 or mpc.trunc_mode == "local" or not mpc.provider.supports_pairs:
        return None
    return mpc.provider.request(Kind.TRUNC, (extra, *shape))


def rescale(x: SharedTensor, pair: Material | None = None) -> SharedTensor:
    """Truncate ``x`` down to the runtime's frac_bits when it carries more.

    ``pair`` is material from :func:`prefetch` for exactly this shape and scale.
    """
    extra = x.scale - x.mpc.frac_bits
    if extra <= 0:
        return x
    out = truncate(x, extra, pair)
    out.scale = x.mpc.frac_bits
    return out


def truncate(x: SharedTensor, bits: int, pair: Material | None = None) -> SharedTensor:
    """A sharing of ``⌊x / 2^bits⌋`` (+0 or +1 ulp); see the module docstring."""
    mpc = x.mpc
    if not 0 < bits < 62:
        raise ConfigError(f"truncate: cannot drop {bits} bits")
    if mpc.trunc_mode == "local":
        return _local(x, bits)
    if mpc.provider.supports_pairs:
        return _with_pair(x, bits, pair)
    if mpc.n != 2:
        raise ConfigError("truncation without pairs works for two parties only")
    return _two_round(x, bits)


def _local(x: SharedTensor, bits: int) -> SharedTensor:
    share = ring.arshift(x.share, bits) if x.mpc.index == 0 else -ring.arshift(-x.share, bits)
    return SharedTensor(x.mpc, share, x.scale - bits)


def _with_pair(x: SharedTensor, bits: int, pair: Material | None) -> SharedTensor:
    mpc = x.mpc
    mat = pair if pair is not None else mpc.provider.request(Kind.TRUNC, (bits, *x.shape))
    masked = x.share + mat["r"]
    if mpc.index == 0:
        masked += np.uint64(1 << _OFFSET_BITS)
    if mpc.n == 2 and masked.size > SMALL_OPEN:
        c, tmp = _open_to_first(mpc, masked)
    else:
        c = mpc.open("trunc", masked)
        tmp = c >> _U63  # (not the sent buffer: a transport may still hold it)
    # w·2^(64-k) = r_msb · (1 - msb(c)) · 2^(64-k), computed in one buffer
    tmp ^= np.uint64(1)
    tmp <<= np.uint64(64 - bits)
    tmp *= mat["r_msb"]
    y = np.negative(mat["r_hi"])
    y += tmp
    if mpc.index == 0:
        assert c is not None  # P_0 always opens c
        np.right_shift(c, np.uint64(bits), out=tmp)
        tmp -= np.uint64(1 << (_OFFSET_BITS - bits))
        y += tmp
    mat.release()
    return SharedTensor(mpc, y, x.scale - bits)


def _open_to_first(mpc: MPC, masked: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Two parties: P_1 sends its masked share to P_0 only; P_0 opens c and
    sends back msb(c), one bit per element. Returns (c at P_0 else None,
    msb(c) as uint64 words 0/1 in a fresh buffer)."""
    p0, p1 = mpc.parties
    tag = mpc.tag("trunc")
    words = -(-masked.size // 64)
    if mpc.index == 1:
        mpc.channel.send(p0, tag, np.ascontiguousarray(masked))
        packed = mpc.recv_array(p0, tag + "/msb", (words,), "trunc")
        bits = np.unpackbits(packed.view(np.uint8), count=masked.size)
        return None, bits.astype(np.uint64).reshape(masked.shape)
    c = masked  # P_0's masked share is never sent: open c in its buffer
    c += mpc.recv_array(p1, tag, masked.shape, "trunc")
    msb = c >> _U63
    out = np.zeros(words, dtype=np.uint64)
    packed = np.packbits(msb.reshape(-1).astype(np.uint8))
    out.view(np.uint8)[: packed.size] = packed
    mpc.channel.send(p1, tag + "/msb", out)
    return c, msb


def _two_round(x: SharedTensor, bits: int) -> SharedTensor:
    from sharedml.mpc.beaver import mul

    mpc = x.mpc
    p0, p1 = mpc.parties
    tag = mpc.tag("trunc2")
    if mpc.index == 1:
        r = mpc.local_words(x.shape)
        mpc.channel.send(p0, tag, x.share + r)
        y = -(r >> np.uint64(bits))
        mine_bit = r >> _U63
    else:
        other = mpc.recv_array(p1, tag, x.shape, "trunc")
        c = x.share + other + np.uint64(1 << _OFFSET_BITS)
        y = (c >> np.uint64(bits)) - np.uint64(1 << (_OFFSET_BITS - bits))
        mine_bit = np.uint64(1) - (c >> _U63)
    # w = r_msb(P_1) · (1 - msb(c))(P_0): product of two private bits.
    zero = np.zeros(x.shape, dtype=ring.DTYPE)
    a = SharedTensor(mpc, mine_bit if mpc.index == 1 else zero, 0)
    b = SharedTensor(mpc, mine_bit if mpc.index == 0 else zero, 0)
    w = mul(a, b)
    y += w.share << np.uint64(64 - bits)
    return SharedTensor(mpc, y, x.scale - bits)
