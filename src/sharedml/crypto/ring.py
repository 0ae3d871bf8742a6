"""The ring Z_2^64 on numpy ``uint64``: wrap-around arithmetic, exact products.

Math only. Elements are ``np.uint64`` arrays; numpy's unsigned integer
arithmetic already wraps modulo 2^64, so addition, subtraction, negation and
element-wise multiplication are the native operators. Signed readings (two's
complement) use :func:`to_signed`.

Matrix products: ``np.matmul`` on uint64 has no BLAS path (a 1000³ product
takes about 1.8 s here). :func:`matmul` instead splits each operand into three
*signed* 22-bit limbs held in float64 (``a = l0 + l1·2^22 + l2·2^44 mod 2^64``
with ``|l0|, |l1| ≤ 2^21`` and ``|l2| ≤ 2^19``), forms the six limb products
whose weight is below 2^64 with BLAS, and recombines them in uint64. Each limb
product entry is a sum of ``k`` terms of magnitude ≤ 2^42, so it is an exact
integer in float64 while ``k ≤ 2^11 = 2048`` (the 53-bit mantissa); longer inner
dimensions are cut into chunks of 2048 and summed in the ring. The result is
bit-exact (tests compare with the uint64 ``np.matmul``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BITS = 64
DTYPE = np.uint64
#: Inner dimension up to which one float64 limb product is exact.
MAX_EXACT_INNER = 2048
_LIMB = 22
_HALF = np.uint64(1 << (_LIMB - 1))
_MASK = np.uint64((1 << _LIMB) - 1)
_TOP_HALF = np.uint64(1 << 19)
_TOP_MASK = np.uint64((1 << 20) - 1)
_SHIFT = np.uint64(_LIMB)


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
    """An operand split into three signed 22-bit limbs (float64), ready for BLAS."""

    l0: np.ndarray
    l1: np.ndarray
    l2: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.l0.shape

    @property
    def T(self) -> Limbs:
        return Limbs(self.l0.T, self.l1.T, self.l2.T)

    def rows(self, index: Any) -> Limbs:
        return Limbs(self.l0[index], self.l1[index], self.l2[index])


def split(a: np.ndarray) -> Limbs:
    """Signed-digit limbs of ``a``: ``a = l0 + l1·2^22 + l2·2^44 (mod 2^64)``."""
    a = np.asarray(a, dtype=DTYPE)
    l0 = ((a + _HALF) & _MASK).view(np.int64) - np.int64(_HALF)
    a1 = (a - l0.view(DTYPE)) >> _SHIFT
    l1 = ((a1 + _HALF) & _MASK).view(np.int64) - np.int64(_HALF)
    a2 = (a1 - l1.view(DTYPE)) >> _SHIFT
    l2 = ((a2 + _TOP_HALF) & _TOP_MASK).view(np.int64) - np.int64(_TOP_HALF)
    return Limbs(l0.astype(np.float64), l1.astype(np.float64), l2.astype(np.float64))


def _ring(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64).view(DTYPE)


def _weighted(a: Limbs, b: Limbs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The limb products of weight 2^0, 2^22 and 2^44 of ``a @ b``, in the ring.

    Three BLAS calls; the narrower operand's limbs are stacked (copied) so the
    other, larger one is read in place: ``a``'s rows when ``a`` has at most as
    many rows as ``b`` has columns, else ``b``'s columns.
    """
    m, n = a.l0.shape[0], b.l0.shape[1]
    if m <= n:
        s0 = np.vstack((a.l0, a.l1, a.l2)) @ b.l0
        s1 = np.vstack((a.l0, a.l1)) @ b.l1
        s2 = a.l0 @ b.l2
        w0 = _ring(s0[:m])
        w1 = _ring(s0[m : 2 * m])
        w1 += _ring(s1[:m])
        w2 = _ring(s0[2 * m :])
        w2 += _ring(s1[m:])
        w2 += _ring(s2)
        return w0, w1, w2
    bs = np.hstack((b.l0, b.l1, b.l2))
    p0 = a.l0 @ bs
    p1 = a.l1 @ bs[:, : 2 * n]
    p2 = a.l2 @ b.l0
    w0 = _ring(p0[:, :n])
    w1 = _ring(p0[:, n : 2 * n])
    w1 += _ring(p1[:, :n])
    w2 = _ring(p0[:, 2 * n :])
    w2 += _ring(p1[:, n:])
    w2 += _ring(p2)
    return w0, w1, w2


def _recombine(w0: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    w1 <<= _SHIFT
    w2 <<= np.uint64(2 * _LIMB)
    w0 += w1
    w0 += w2
    return w0


def matmul_limbs(a: Limbs, b: Limbs) -> np.ndarray:
    """``a @ b`` in Z_2^64 from limbs; inner dimension ≤ :data:`MAX_EXACT_INNER`."""
    return _recombine(*_weighted(a, b))


def matmul(a: np.ndarray | Limbs, b: np.ndarray | Limbs) -> np.ndarray:
    """The exact product ``a @ b`` of 2-D operands in Z_2^64 (see module doc).

    An inner dimension over :data:`MAX_EXACT_INNER` is cut into chunks whose
    weighted limb products are summed in the ring, in place; the operands'
    chunks are read as views, never stacked whole.
    """
    la = a if isinstance(a, Limbs) else split(np.atleast_2d(a))
    lb = b if isinstance(b, Limbs) else split(np.atleast_2d(b))
    k = la.shape[1]
    if lb.shape[0] != k:
        raise ValueError(f"matmul: inner dimensions differ ({la.shape} @ {lb.shape})")
    if k <= MAX_EXACT_INNER:
        return matmul_limbs(la, lb)
    acc: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for lo in range(0, k, MAX_EXACT_INNER):
        cols = slice(lo, min(k, lo + MAX_EXACT_INNER))
        part = _weighted(Limbs(la.l0[:, cols], la.l1[:, cols], la.l2[:, cols]), lb.rows(cols))
        if acc is None:
            acc = part
        else:
            for total, w in zip(acc, part, strict=True):
                total += w
    assert acc is not None
    return _recombine(*acc)
