"""Boolean (XOR) shares of bit-packed uint64 words, and conversions.

A :class:`BooleanTensor` holds XOR shares: the secret word is the XOR of all
parties' ``uint64`` shares, so each word packs the 64 bits of one ring
element and every gate below works on all 64 bits (and all elements) at once.

Protocol ``and_`` (AND triple a, b, c = a & b): open d = x ⊕ a and e = y ⊕ b
(one round); z_i = c_i ⊕ (d & b_i) ⊕ (e & a_i), and P_0 adds d & e.

Protocol ``a2b`` (arithmetic to boolean, x = Σ x_i mod 2^64):

1. Party i's share x_i is a boolean sharing by itself (P_i holds x_i, the
   others 0); the words are added one party at a time with a boolean adder.
2. The adder is Kogge–Stone (log depth): P = u ⊕ v, G = u & v (one round),
   then for s = 1, 2, 4, 8, 16, 32: G ← G ⊕ (P & (G << s)) and
   P ← P & (P << s), both in one round with ADDER material
   (a, b, a & b, a & (a << s)): opening P ⊕ a also masks P << s, so each level
   opens two words per element. The sum is P₀ ⊕ (G << 1).

Two parties: seven rounds. ``b2a`` of single bits uses a daBit (a random bit
shared both ways): open c = b ⊕ r (one round), b = c + r - 2cr.

Reveals: only d, e (and c in b2a), uniform since a, b, r are uniform and
unknown to all parties. Security model: semi-honest, as the provider.

References: Demmler, Schneider, Zohner, "ABY", NDSS 2015 (A2B with a
boolean adder); Kogge & Stone, IEEE Trans. Comput. 1973 (prefix adder);
Rotaru & Wood, "MArBled circuits", INDOCRYPT 2019 (daBits).
"""

from __future__ import annotations

import numpy as np

from sharedml.crypto import ring
from sharedml.mpc.material import Kind
from sharedml.mpc.tensor import SharedTensor

_ONE = np.uint64(1)
_U63 = np.uint64(63)


class BooleanTensor:
    """This party's XOR share of a tensor of 64-bit words."""

    __slots__ = ("mpc", "share")

    def __init__(self, mpc: object, share: np.ndarray) -> None:
        self.mpc = mpc
        self.share = np.asarray(share, dtype=ring.DTYPE)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.share.shape

    def __xor__(self, other: BooleanTensor) -> BooleanTensor:
        return BooleanTensor(self.mpc, self.share ^ other.share)

    def __lshift__(self, s: int) -> BooleanTensor:
        return BooleanTensor(self.mpc, self.share << np.uint64(s))

    def __rshift__(self, s: int) -> BooleanTensor:
        return BooleanTensor(self.mpc, self.share >> np.uint64(s))

    def reveal(self) -> np.ndarray:
        """Open the words to every party (tests and debugging)."""
        return self.mpc.open("reveal_bool", self.share, boolean=True)  # type: ignore[attr-defined]


def and_(x: BooleanTensor, y: BooleanTensor) -> BooleanTensor:
    """x & y, one round (see module docstring)."""
    mpc = x.mpc
    mat = mpc.provider.request(Kind.AND, x.shape)  # type: ignore[attr-defined]
    a, b = mat["a"], mat["b"]
    d, e = mpc.open_many("and", [x.share ^ a, y.share ^ b], boolean=True)  # type: ignore[attr-defined]
    z = mat["c"] ^ (d & b)
    z ^= e & a
    if mpc.index == 0:  # type: ignore[attr-defined]
        z ^= d & e
    return BooleanTensor(mpc, z)


def _level(g: BooleanTensor, p: BooleanTensor, s: int) -> tuple[BooleanTensor, BooleanTensor]:
    """One Kogge–Stone level: (G ⊕ (P & (G << s)), P & (P << s)) in one round."""
    mpc = g.mpc
    us = np.uint64(s)
    mat = mpc.provider.request(Kind.ADDER, (s, *g.shape))  # type: ignore[attr-defined]
    a, b = mat["a"], mat["b"]
    d, e = mpc.open_many("adder", [p.share ^ a, (g.share << us) ^ b], boolean=True)  # type: ignore[attr-defined]
    gz = mat["c1"] ^ (d & b)
    gz ^= e & a
    pz = mat["c2"] ^ (d & (a << us))
    pz ^= a & (d << us)
    if mpc.index == 0:  # type: ignore[attr-defined]
        gz ^= d & e
        pz ^= d & (d << us)
    gz ^= g.share
    return BooleanTensor(mpc, gz), BooleanTensor(mpc, pz)


def add(u: BooleanTensor, v: BooleanTensor) -> BooleanTensor:
    """The 64-bit sum of two boolean-shared words (log-depth adder)."""
    p0 = u ^ v
    g = and_(u, v)
    p = p0
    for s in (1, 2, 4, 8, 16):
        g, p = _level(g, p, s)
    g = g ^ and_(p, g << 32)
    return p0 ^ (g << 1)


def a2b(x: SharedTensor) -> BooleanTensor:
    """Boolean shares of the ring element x (see module docstring)."""
    mpc = x.mpc
    zeros = np.zeros(x.shape, dtype=ring.DTYPE)
    acc = BooleanTensor(mpc, x.share if mpc.index == 0 else zeros)
    for j in range(1, mpc.n):
        addend = BooleanTensor(mpc, x.share if mpc.index == j else zeros)
        acc = add(acc, addend)
    return acc


def b2a(bits: BooleanTensor) -> SharedTensor:
    """Arithmetic shares (integers, scale 0) of the lowest bit of each word."""
    mpc = bits.mpc
    mat = mpc.provider.request(Kind.DABIT, bits.shape)  # type: ignore[attr-defined]
    c = mpc.open("b2a", (bits.share & _ONE) ^ mat["rb"], boolean=True) & _ONE  # type: ignore[attr-defined]
    out = mat["ra"] * (_ONE - (c << _ONE))
    if mpc.index == 0:  # type: ignore[attr-defined]
        out += c
    return SharedTensor(mpc, out, 0)  # type: ignore[arg-type]


def msb(x: SharedTensor) -> BooleanTensor:
    """Boolean share of the sign bit of x (in the lowest bit of each word)."""
    return a2b(x) >> 63


def ltz(x: SharedTensor) -> SharedTensor:
    """[x < 0] as a shared integer 0/1 (valid for |x| < 2^63 in ring units)."""
    return b2a(msb(x))
