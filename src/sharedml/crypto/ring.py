"""The ring Z_2^64 on numpy ``uint64``: wrap-around arithmetic, exact products.

Math only. Elements are ``np.uint64`` arrays; numpy's unsigned integer
arithmetic already wraps modulo 2^64, so addition, subtraction, negation and
element-wise multiplication are the native operators. Signed readings (two's
complement) use :func:`to_signed`.

Matrix products: ``np.matmul`` on uint64 has no BLAS path (a 1000³ product
takes about 1.8 s here). :func:`matmul` splits each operand into signed limbs
held in float64 and does five BLAS products:

* ``a = l0 + l1·2^21 + l2·2^42 (mod 2^64)`` with ``l0, l1`` the signed 21-bit
  digits (``-2^20 ≤ l < 2^20``) and ``l2`` the top 22 bits, signed
  (``-2^21 ≤ l2 < 2^21``); besides them the split keeps ``l01 = l0 + l1``
  (``|l01| ≤ 2^21``) and ``low``, the low 22 bits of ``a``, signed
  (``-2^21 ≤ low < 2^21``).
* ``a·b`` has terms of weight 2^0, 2^21, 2^42 and 2^63 below 2^64:
  level 0 = A0·B0; level 1 = A0·B1 + A1·B0, by Karatsuba
  ``(A01·B01) - A0·B0 - A1·B1``; level 2 (needed mod 2^22, with the weight-2^63
  terms A1·B2 + A2·B1 folded in) = A1·B1 + LOW_a·B2 + A2·LOW_b, because
  ``A0·B2 + 2^21·A1·B2 = (A0 + 2^21·A1)·B2`` and ``A0 + 2^21·A1 ≡ a
  (mod 2^42)``, so ≡ LOW_a·B2 (mod 2^22); likewise for A2·LOW_b. The five
  products are A0·B0, A1·B1, A01·B01, LOW_a·B2 and A2·LOW_b (six with the
  three-limb split of 22 bits).
* Exactness: every product's terms have magnitude ≤ 2^42 (2^40 for A0·B0 and
  A1·B1), so each entry of a product with inner dimension ``k ≤ 2^11 = 2048``
  and every partial sum on the way is an integer of magnitude ≤ 2^53: exact in
  float64 whatever BLAS's summation order or use of FMA. Level 1 is formed in
  float64: ``A01·B01 - A0·B0`` equals A0·B1 + A1·B0 + A1·B1, of magnitude
  ≤ 3k·2^40 < 2^53, and the final value ≤ 2k·2^40, so both subtractions of
  exact integers are exact. Each level is then converted to int64 (exact, all
  below 2^53) and combined in the ring: ``L0 + L1·2^21 + (A1·B1 + LOW_a·B2 +
  A2·LOW_b)·2^42 mod 2^64``. Longer inner dimensions are cut into chunks of
  2048 whose products are summed in the ring. The result is bit-exact (tests
  compare with the uint64 ``np.matmul``).
* The two level-2 products stay separate BLAS calls: as one call with inner
  dimension 2k (``[LOW_a | A2]·[B2 ; LOW_b]``) a sum could reach 2k·2^42 and
  the chunks would have to halve, and it measured slower (stacking copies).

A 1000³ product here: 0.22 s with one BLAS thread, 0.135 s with two (the
three-limb split of 22 bits with six products: 0.27 s and 0.16 s);
``bench/mpc.py`` prints both. Keeping the split of an operand used many times
(:class:`Limbs`, e.g. a ``FixedOperand``) saves the split: it takes five
float64 arrays of the operand's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BITS = 64
DTYPE = np.uint64
#: Inner dimension up to which one float64 limb product is exact.
MAX_EXACT_INNER = 2048
_LIMB = 21
#: Elements per block in :func:`split` (two int64 temporaries of 256 KB).
_SPLIT_BLOCK = 1 << 15


def to_signed(a: np.ndarray) -> np.ndarray:
    """The two's-complement reading of ring elements (a view, no copy)."""
    return np.asarray(a, dtype=DTYPE).view(np.int64)


def from_signed(a: np.ndarray | int) -> np.ndarray:
    """Signed 64-bit integers as ring elements (a view when possible)."""
    return np.asarray(a, dtype=np.int64).view(DTYPE)


def as_ring(a: object) -> np.ndarray:
    """Integers (any sign) reduced modulo 2^64 as a uint64 array."""
    arr = np.asarray(a)
    if arr.dtype == DTYPE:
        return arr
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).view(DTYPE) if arr.dtype.kind == "i" else arr.astype(DTYPE)
    raise TypeError(f"ring elements must be integers, got {arr.dtype}")


def msb(a: np.ndarray) -> np.ndarray:
    """The top bit of each element (0 or 1, as uint64)."""
    return a >> np.uint64(63)


def arshift(a: np.ndarray, bits: int) -> np.ndarray:
    """Arithmetic (sign-extending) right shift of the signed reading."""
    return (to_signed(a) >> np.int64(bits)).view(DTYPE)


@dataclass(frozen=True)
class Limbs:
    """An operand split for :func:`matmul` (float64 arrays of its shape): the
    signed limbs ``l0``, ``l1`` (21 bits) and ``l2`` (22 bits), their sum
    ``l01 = l0 + l1`` and ``low``, its low 22 bits signed (see module doc)."""

    l0: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    l01: np.ndarray
    low: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.l0.shape

    @property
    def nbytes(self) -> int:
        return 5 * self.l0.nbytes

    def _map(self, fn: Any) -> Limbs:
        return Limbs(fn(self.l0), fn(self.l1), fn(self.l2), fn(self.l01), fn(self.low))

    @property
    def T(self) -> Limbs:
        return self._map(lambda x: x.T)

    def rows(self, index: Any) -> Limbs:
        return self._map(lambda x: x[index])

    def cols(self, index: Any) -> Limbs:
        return self._map(lambda x: x[:, index])


def split(a: np.ndarray) -> Limbs:
    """The limbs of ``a``: ``a = l0 + l1·2^21 + l2·2^42 (mod 2^64)``, plus
    ``l01 = l0 + l1`` and ``low ≡ a (mod 2^22)`` (all signed; see module doc).

    Works through the operand in blocks of :data:`_SPLIT_BLOCK` elements so
    that its two integer temporaries stay in cache (about 20% faster than
    whole-array passes for a 1000² operand)."""
    s = np.ascontiguousarray(np.asarray(a, dtype=DTYPE)).view(np.int64)
    flat = s.reshape(-1)
    n = flat.size
    l0, l1, l2, l01, low = (np.empty(n, np.float64) for _ in range(5))
    t_buf = np.empty(min(n, _SPLIT_BLOCK), np.int64)
    r_buf = np.empty_like(t_buf)
    for lo in range(0, n, _SPLIT_BLOCK):
        hi = min(n, lo + _SPLIT_BLOCK)
        x, t, rest = flat[lo:hi], t_buf[: hi - lo], r_buf[: hi - lo]
        # arithmetic shifts of the two's-complement reading sign-extend each field
        np.left_shift(x, np.int64(43), out=t)
        t >>= np.int64(43)  # l0: bits 0..20, in [-2^20, 2^20)
        l0[lo:hi] = t
        np.subtract(x, t, out=rest)  # low 21 bits now zero
        np.left_shift(x, np.int64(42), out=t)
        t >>= np.int64(42)  # low: bits 0..21, in [-2^21, 2^21)
        low[lo:hi] = t
        np.left_shift(rest, np.int64(22), out=t)
        t >>= np.int64(43)  # l1: bits 21..41 (carry included), in [-2^20, 2^20)
        l1[lo:hi] = t
        t <<= np.int64(_LIMB)
        rest -= t  # low 42 bits now zero
        rest >>= np.int64(42)  # l2: the top 22 bits, in [-2^21, 2^21)
        l2[lo:hi] = rest
        np.add(l0[lo:hi], l1[lo:hi], out=l01[lo:hi])
    return Limbs(*(v.reshape(s.shape) for v in (l0, l1, l2, l01, low)))


def matmul_limbs(a: Limbs, b: Limbs) -> np.ndarray:
    """``a @ b`` in Z_2^64 from limbs; inner dimension ≤ :data:`MAX_EXACT_INNER`.

    Five BLAS products (see module doc). Each float64 level is converted to
    int64 (exact: all are integers below 2^53) into a buffer already freed, so
    the whole product takes four arrays of the result's size.
    """
    f1 = a.l0 @ b.l0  # A0·B0
    f2 = a.l1 @ b.l1  # A1·B1
    f3 = a.l01 @ b.l01
    f3 -= f1  # level 1 = A01·B01 - A0·B0 - A1·B1, exact in float64
    f3 -= f2
    w = f1.astype(np.int64).view(DTYPE)  # level 0, in the ring
    scratch = f1.view(np.int64)  # f1's memory is free now
    np.copyto(scratch, f3, casting="unsafe")  # level 1
    scratch_ring = scratch.view(DTYPE)  # ring arithmetic on uint64 readings only
    scratch_ring <<= np.uint64(_LIMB)
    w += scratch_ring
    level2 = f3.view(np.int64)  # f3's memory is free now
    np.copyto(level2, f2, casting="unsafe")  # A1·B1; f2's memory is free now
    level2_ring = level2.view(DTYPE)
    for left, right in ((a.low, b.l2), (a.l2, b.low)):
        np.matmul(left, right, out=f2)
        np.copyto(scratch, f2, casting="unsafe")
        level2_ring += scratch_ring
    level2_ring <<= np.uint64(2 * _LIMB)
    w += level2_ring
    return w


def matmul(a: np.ndarray | Limbs, b: np.ndarray | Limbs) -> np.ndarray:
    """The exact product ``a @ b`` of 2-D operands in Z_2^64 (see module doc).

    An inner dimension over :data:`MAX_EXACT_INNER` is cut into chunks whose
    products are summed in the ring; the operands' chunks are read as views,
    never stacked whole.
    """
    la = a if isinstance(a, Limbs) else split(np.atleast_2d(a))
    lb = b if isinstance(b, Limbs) else split(np.atleast_2d(b))
    k = la.shape[1]
    if lb.shape[0] != k:
        raise ValueError(f"matmul: inner dimensions differ ({la.shape} @ {lb.shape})")
    if k <= MAX_EXACT_INNER:
        return matmul_limbs(la, lb)
    acc = matmul_limbs(la.cols(slice(0, MAX_EXACT_INNER)), lb.rows(slice(0, MAX_EXACT_INNER)))
    for lo in range(MAX_EXACT_INNER, k, MAX_EXACT_INNER):
        part = slice(lo, min(k, lo + MAX_EXACT_INNER))
        acc += matmul_limbs(la.cols(part), lb.rows(part))
    return acc


#: below this many multiply-adds numpy's own uint64 product (exact mod 2^64, no
#: BLAS) beats the limb split; far below for thin operands (a 1024×32 by 32×1
#: product: 0.03 ms against 2 ms)
SMALL_PRODUCT = 1 << 22


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D operands in Z_2^64, by whichever way is faster for
    their size: numpy's own uint64 contraction for small products (einsum,
    whose loop reads a transposed view in order: a 10×1024 by 1024×32
    product from a transposed view took 0.33 ms against np.matmul's 0.83),
    :func:`matmul`'s limbs above :data:`SMALL_PRODUCT` multiply-adds."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= SMALL_PRODUCT:
        return np.einsum("ij,jk->ik", a, b)
    return matmul(a, b)
