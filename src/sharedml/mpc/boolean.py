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

Two parties: seven rounds. The sign bit alone (comparisons, :func:`ltz`)
uses a carry *tree* instead (:func:`msb_bits`): same rounds, but each level
keeps only the bits it still needs and packs them, so it opens about 6 words
per element instead of 14. ``b2a`` of single bits uses a daBit (a random bit
shared both ways): open c = b ⊕ r (one round, 64 bits per word), b = c + r - 2cr.
``bit_mul`` (a bit times an arithmetic value) folds ``b2a`` into the product:
with DABIT_MUL material (rb, ra = rb, a, c = ra·a) it opens c = b ⊕ rb and
d = y - a in one round; ra·y = d·ra + c locally, b·y = c·y + (1 - 2c)·ra·y.

Reveals: only d, e (and c in b2a and bit_mul), uniform since a, b, r are
uniform and unknown to all parties. Security model: semi-honest, as the provider.

References: Demmler, Schneider, Zohner, "ABY", NDSS 2015 (A2B with a
boolean adder); Kogge & Stone, IEEE Trans. Comput. 1973 (prefix adder);
Rotaru & Wood, "MArBled circuits", INDOCRYPT 2019 (daBits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError
from sharedml.mpc.material import Kind
from sharedml.mpc.tensor import SharedTensor

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC

_ONE = np.uint64(1)
_U63 = np.uint64(63)


class BooleanTensor:
    """This party's XOR share of a tensor of 64-bit words."""

    __slots__ = ("mpc", "share")

    def __init__(self, mpc: MPC, share: np.ndarray) -> None:
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
        return self.mpc.open("reveal_bool", self.share, boolean=True)


def and_(x: BooleanTensor, y: BooleanTensor) -> BooleanTensor:
    """x & y, one round (see module docstring)."""
    mpc = x.mpc
    mat = mpc.provider.request(Kind.AND, x.shape)
    a, b = mat["a"], mat["b"]
    d, e = mpc.open_many("and", [x.share ^ a, y.share ^ b], boolean=True)
    z = mat["c"] ^ (d & b)
    z ^= e & a
    if mpc.index == 0:
        z ^= d & e
    mat.release()
    return BooleanTensor(mpc, z)


def _level(g: BooleanTensor, p: BooleanTensor, s: int) -> tuple[BooleanTensor, BooleanTensor]:
    """One Kogge–Stone level: (G ⊕ (P & (G << s)), P & (P << s)) in one round."""
    mpc = g.mpc
    us = np.uint64(s)
    mat = mpc.provider.request(Kind.ADDER, (s, *g.shape))
    a, b = mat["a"], mat["b"]
    shifted = g.share << us
    shifted ^= b
    d, e = mpc.open_many("adder", [p.share ^ a, shifted], boolean=True)
    tmp = np.empty_like(d)
    gz = d & b
    gz ^= np.bitwise_and(e, a, out=tmp)
    gz ^= mat["c1"]
    gz ^= g.share
    pz = d & np.left_shift(a, us, out=tmp)
    d_shifted = d << us
    pz ^= np.bitwise_and(a, d_shifted, out=tmp)
    pz ^= mat["c2"]
    if mpc.index == 0:
        gz ^= np.bitwise_and(d, e, out=tmp)
        pz ^= np.bitwise_and(d, d_shifted, out=tmp)
    mat.release()
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


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(bits.astype(np.uint8), bitorder="little")
    pad = (-packed.size) % 8
    return np.concatenate([packed, np.zeros(pad, dtype=np.uint8)]).view(np.uint64)


def b2a(bits: BooleanTensor) -> SharedTensor:
    """Arithmetic shares (integers, scale 0) of the lowest bit of each word.

    The opened bits c = b ⊕ r travel packed, 64 per word.
    """
    mpc = bits.mpc
    mat = mpc.provider.request(Kind.DABIT, bits.shape)
    masked = ((bits.share & _ONE) ^ mat["rb"]).ravel()
    opened = mpc.open("b2a", _pack_bits(masked), boolean=True)
    unpacked = np.unpackbits(opened.view(np.uint8), bitorder="little")[: masked.size]
    c = unpacked.astype(ring.DTYPE).reshape(bits.shape)
    out = mat["ra"] * (_ONE - (c << _ONE))
    if mpc.index == 0:
        out += c
    mat.release()
    return SharedTensor(mpc, out, 0)


def bit_mul(bits: BooleanTensor, y: SharedTensor) -> SharedTensor:
    """Shared ``b·y`` for the lowest bit b of each word of ``bits``; one round
    with a provider that deals DABIT_MUL material (see module docstring),
    else ``b2a`` then a Beaver product (two rounds). Scale of ``y``; exact."""
    mpc = bits.mpc
    if not mpc.provider.supports_bit_mul or bits.shape != y.shape:
        from sharedml.mpc.beaver import mul

        return mul(b2a(bits), y)
    mat = mpc.provider.request(Kind.DABIT_MUL, bits.shape)
    masked = ((bits.share & _ONE) ^ mat["rb"]).ravel()
    packed = _pack_bits(masked)
    a = mat["a"]
    # one message per peer: the packed bits (XOR-opened) then y - a (sum-opened)
    got = mpc.exchange("bit_mul", np.concatenate([packed, (y.share - a).ravel()]))
    mine = got[mpc.party]
    opened_bits, d = mine[: packed.size].copy(), mine[packed.size :].copy()
    for p in mpc.others:
        theirs = got[p]
        opened_bits ^= theirs[: packed.size]
        d += theirs[packed.size :]
    unpacked = np.unpackbits(opened_bits.view(np.uint8), bitorder="little")[: masked.size]
    c = unpacked.astype(ring.DTYPE).reshape(bits.shape)
    ra_y = d.reshape(bits.shape) * mat["ra"]  # this party's share of ra·y
    ra_y += mat["c"]
    ra_y *= _ONE - (c << _ONE)
    ra_y += c * y.share
    mat.release()
    return SharedTensor(mpc, ra_y, y.scale)


_COMPRESS = [
    (1, np.uint64(0x3333333333333333)),
    (2, np.uint64(0x0F0F0F0F0F0F0F0F)),
    (4, np.uint64(0x00FF00FF00FF00FF)),
    (8, np.uint64(0x0000FFFF0000FFFF)),
    (16, np.uint64(0x00000000FFFFFFFF)),
]
_ODD = np.uint64(0x5555555555555555)


def _odd_bits_packed(words: np.ndarray) -> np.ndarray:
    """The odd bits of each word, compressed to 32 bits, two words per output word.

    A bit permutation, so it applies to XOR shares share by share.
    """
    x = (words >> _ONE) & _ODD
    for shift, mask in _COMPRESS:
        x = (x | (x >> np.uint64(shift))) & mask
    return x.astype(np.uint32).view(np.uint64)


_LANES = {64: np.uint64, 32: np.uint32, 16: np.uint16, 8: np.uint8}


def _carry_tree(u: BooleanTensor, v: BooleanTensor, levels: int = 6) -> np.ndarray:
    """Boolean shares of the carry out of each lane of u + v (one bit per lane out).

    Lanes are 2^levels bits wide. A reduction tree instead of Kogge–Stone:
    each level combines adjacent (G, P) pairs at odd positions,
    G' = G_hi ⊕ (P_hi & G_lo), P' = P_hi & P_lo (one ADDER round with shift 1),
    then keeps only the odd bits and packs two words into one, so every level
    opens half as much as the one before. Needs a word count that is a
    multiple of 2^levels.
    """
    p = u ^ v
    g = and_(u, v)
    for _ in range(levels - 1):
        g, p = _level(g, p, 1)
        g = BooleanTensor(g.mpc, _odd_bits_packed(g.share))
        p = BooleanTensor(p.mpc, _odd_bits_packed(p.share))
    g = g ^ and_(p, g << 1)
    return _odd_bits_packed(g.share)


def msb_bits(x: SharedTensor, bits: int = 64, *, drop: int = 0) -> BooleanTensor:
    """Boolean shares of the sign bit of x, in the lowest bit of each word.

    The sign of x = x' + x_last is bit 63 of the sum, i.e. the two top bits
    XOR the carry into bit 63. Shifting both addends left by one puts that
    carry at the top of a 64-bit carry tree (:func:`_carry_tree`): 1 + 6
    rounds, opening about 6 words per element instead of 14 for a full adder.

    ``bits < 64`` (32, 16 or 8) promises |x| < 2^(bits-1) in ring units. Then
    the shares reduced mod 2^bits are shares of x mod 2^bits, whose top bit is
    the sign — exactly, no failure probability — and 64/bits elements travel
    in one word: 1 + log2(bits) rounds and bits/64 of the traffic. A broken
    promise gives wrong signs.

    ``drop`` > 0 first shifts every share right by ``drop`` bits (logical, each
    party locally): the shifted shares sum to ⌊x / 2^drop⌋ - c mod 2^(64-drop)
    with a carry c ∈ [0, n-1] from the dropped bits — exact modular arithmetic,
    no failure probability. The sign is then exact for x < 0 and for
    x ≥ (n-1)·2^drop; for 0 ≤ x < (n-1)·2^drop it may read negative. The
    promise becomes |x| < 2^(bits-1+drop) - (n-1)·2^drop, and
    ``bits + drop`` ≤ 64. Callers whose use of the sign is continuous at 0
    (ReLU-like terms) trade that one-sided band for a narrower, cheaper
    comparison.
    """
    if bits not in _LANES:
        raise ConfigError(f"comparison width must be one of {sorted(_LANES)}, got {bits}")
    if drop < 0 or bits + drop > 64:
        raise ConfigError(f"comparison: cannot drop {drop} bits before a {bits}-bit sign")
    mpc = x.mpc
    flat = x.share.ravel()
    if drop:
        flat = flat >> np.uint64(drop)
        x = SharedTensor(mpc, flat.reshape(x.shape), x.scale)
    count = flat.size
    padded = -(-max(count, 1) // 64) * 64
    if padded > 1.25 * count:  # small batches: padding would cost more than it saves
        return BooleanTensor(mpc, (a2b(x).share >> np.uint64(bits - 1)) & _ONE)
    zeros = np.zeros(padded, dtype=ring.DTYPE)

    def own(j: int) -> np.ndarray:
        out = zeros.copy()
        if mpc.index == j:
            out[:count] = flat
        return out

    if mpc.n == 2:
        u, v = own(0), own(1)
    else:  # add all but the last party's shares with full adders
        acc = BooleanTensor(mpc, own(0))
        for j in range(1, mpc.n - 1):
            acc = add(acc, BooleanTensor(mpc, own(j)))
        u, v = acc.share, own(mpc.n - 1)
    top = ((u ^ v) >> np.uint64(bits - 1)) & _ONE
    if bits < 64:
        lane = _LANES[bits]
        u, v = u.astype(lane).view(np.uint64), v.astype(lane).view(np.uint64)
        keep = ~np.zeros(1, dtype=lane).astype(lane)
        keep[0] ^= lane(1)  # every bit but the lowest of a lane
        mask = np.repeat(keep, 64 // bits).view(np.uint64)[0]
        su, sv = (u << _ONE) & mask, (v << _ONE) & mask
    else:
        su, sv = u << _ONE, v << _ONE
    levels = bits.bit_length() - 1
    carry = _carry_tree(BooleanTensor(mpc, su), BooleanTensor(mpc, sv), levels)
    carries = np.unpackbits(carry.view(np.uint8), bitorder="little").astype(ring.DTYPE)
    sign = (carries ^ top)[:count].reshape(x.shape)
    return BooleanTensor(mpc, sign)


def msb(x: SharedTensor) -> BooleanTensor:
    """Boolean share of the sign bit of x (in the lowest bit of each word)."""
    return msb_bits(x)


def ltz(x: SharedTensor, bits: int = 64, *, drop: int = 0) -> SharedTensor:
    """[x < 0] as a shared integer 0/1, exact for |x| < 2^(bits-1) in ring units
    (``bits`` < 64 is faster; ``drop``: see :func:`msb_bits`)."""
    return b2a(msb_bits(x, bits, drop=drop))
