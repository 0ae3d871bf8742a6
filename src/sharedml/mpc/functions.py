"""Comparisons and selections built on :func:`sharedml.mpc.boolean.ltz`.

Every function takes and returns :class:`SharedTensor`; comparison results
are shared integers 0/1 (scale 0), so multiplying a real by one needs no
truncation. Costs for two parties: a comparison is 8 rounds (7 for A2B, 1 for
B2A) and batches any number of elements; ``relu``/``select``/``abs`` add one
Beaver round. Inputs of several comparisons are batched into one A2B run.

Exactness: comparisons are exact on the ring (the sign of x - y is exact as
long as |x - y| < 2^63 ring units, i.e. ±2^(63-f) in value). Callers that
know a smaller range pass ``bits`` (32: |x - y| < 2^(31-f), 32768 at f = 16)
and pay about half the traffic and one round less.

Reveals: nothing beyond the sub-protocols' masked openings. Semi-honest.
Reference: ABY (Demmler et al., NDSS 2015); CrypTen (Knott et al., NeurIPS 2021) §3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sharedml.errors import DataError
from sharedml.mpc import boolean
from sharedml.mpc.beaver import mul
from sharedml.mpc.tensor import SharedTensor, concatenate


def ltz_many(xs: Sequence[SharedTensor], bits: int = 64) -> list[SharedTensor]:
    """[x < 0] for several tensors in one batched comparison (``bits``: see :func:`lt`)."""
    if len(xs) == 1:
        return [boolean.ltz(xs[0], bits)]
    flat = concatenate([x.flatten() for x in xs])
    signs = boolean.ltz(flat, bits)
    out, at = [], 0
    for x in xs:
        out.append(signs[at : at + x.size].reshape(x.shape))
        at += x.size
    return out


def _diff(x: SharedTensor, y: object) -> SharedTensor:
    return x - y


def lt(x: SharedTensor, y: object, *, bits: int = 64) -> SharedTensor:
    """[x < y]. With ``bits`` = 32, 16 or 8 the caller promises
    |x - y| < 2^(bits-1-scale) (32768 at 32 bits and f = 16): exact then, and
    about 64/bits times less traffic (:func:`sharedml.mpc.boolean.msb_bits`)."""
    return boolean.ltz(_diff(x, y), bits)


def gt(x: SharedTensor, y: object, *, bits: int = 64) -> SharedTensor:
    """[x > y] (``bits``: see :func:`lt`)."""
    return boolean.ltz(-_diff(x, y), bits)


def ge(x: SharedTensor, y: object) -> SharedTensor:
    return 1 - lt(x, y)


def le(x: SharedTensor, y: object) -> SharedTensor:
    return 1 - gt(x, y)


def eq(x: SharedTensor, y: object) -> SharedTensor:
    """[x == y] = 1 - [x < y] - [y < x], one batched comparison."""
    z = _diff(x, y)
    below, above = ltz_many([z, -z])
    return 1 - below - above


def sign(x: SharedTensor) -> SharedTensor:
    """+1 where x ≥ 0, -1 where x < 0 (integers)."""
    return 1 - 2 * boolean.ltz(x)


def select(cond: SharedTensor, a: object, b: object) -> SharedTensor:
    """cond ? a : b for a shared 0/1 ``cond`` (one Beaver round)."""
    if cond.scale != 0:
        raise DataError("select: the condition must be a 0/1 integer tensor", party=cond.mpc.party, step="select")
    if not isinstance(a, SharedTensor) and not isinstance(b, SharedTensor):
        pub = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        return cond * pub + b
    diff = (a - b) if isinstance(a, SharedTensor) else -(b - a)  # type: ignore[operator]
    return mul(cond, diff) + b


def relu(x: SharedTensor) -> SharedTensor:
    """max(x, 0)."""
    return mul(1 - boolean.ltz(x), x)


def absolute(x: SharedTensor) -> SharedTensor:
    """|x|."""
    return mul(sign(x), x)


def maximum(x: SharedTensor, y: object) -> SharedTensor:
    """Element-wise max(x, y)."""
    return select(lt(x, y), y, x)


def minimum(x: SharedTensor, y: object) -> SharedTensor:
    """Element-wise min(x, y)."""
    return select(lt(x, y), x, y)


def clip(x: SharedTensor, lo: float, hi: float) -> SharedTensor:
    """min(max(x, lo), hi) with one batched comparison and one Beaver round."""
    below, above = ltz_many([x - lo, -(x - hi)])
    # x + below·(lo - x) + above·(hi - x); below and above are never both 1.
    pieces = mul(concatenate([below, above]), concatenate([lo - x, hi - x]))
    n = x.shape[0] if x.ndim else 1
    if x.ndim == 0:
        return x + pieces[0] + pieces[1]
    return x + pieces[:n] + pieces[n:]


def _move_last(x: SharedTensor, axis: int) -> SharedTensor:
    return x.transpose(*[i for i in range(x.ndim) if i != axis % x.ndim], axis % x.ndim)


def max(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """The maximum along ``axis`` by a tree of comparisons (⌈log2 n⌉ levels)."""
    v = _move_last(x, axis)
    while v.shape[-1] > 1:
        half = v.shape[-1] // 2
        left, right = v[..., :half], v[..., half : 2 * half]
        best = maximum(left, right)
        v = concatenate([best, v[..., 2 * half :]], axis=-1) if v.shape[-1] % 2 else best
    return v[..., 0]


def argmax(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """One-hot shared integers marking the first maximum along ``axis`` (moved last)."""
    v = _move_last(x, axis)
    n = v.shape[-1]
    eye = np.eye(n, dtype=np.int64)
    start = np.broadcast_to(eye, (*v.shape, n)).astype(np.uint64)
    onehot = SharedTensor(x.mpc, start if x.mpc.index == 0 else np.zeros_like(start), 0)
    while v.shape[-1] > 1:
        half = v.shape[-1] // 2
        lv, rv = v[..., :half], v[..., half : 2 * half]
        lo, ro = onehot[..., :half, :], onehot[..., half : 2 * half, :]
        take_right = lt(lv, rv)
        flat = mul(
            concatenate([take_right.flatten(), take_right.reshape(*take_right.shape, 1).broadcast_to(lo.shape).flatten()]),
            concatenate([(rv - lv).flatten(), (ro - lo).flatten()]),
        )
        k = lv.size
        best_v = lv + flat[:k].reshape(lv.shape)
        best_o = lo + flat[k:].reshape(lo.shape)
        if v.shape[-1] % 2:
            v = concatenate([best_v, v[..., 2 * half :]], axis=-1)
            onehot = concatenate([best_o, onehot[..., 2 * half :, :]], axis=-2)
        else:
            v, onehot = best_v, best_o
    return onehot[..., 0, :]
