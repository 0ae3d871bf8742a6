"""ring.matmul: the five-product limb split is bit-exact against numpy's uint64 matmul."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto import ring
from sharedml.crypto.prg import Prg, derive_key

U = np.uint64
EDGE = np.array(
    [0, 1, 2, 2**63, 2**64 - 1, 2**63 - 1, 2**20, 2**20 - 1, 2**21, 2**21 - 1, 2**22 - 1,
     2**41, 2**42, 2**42 - 1, 2**43 + 2**20, 2**64 - 2**42, 2**64 - 2**20, 0x5555555555555555],
    dtype=U,
)


def _words(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return Prg(derive_key(bytes(16), f"ring-matmul/{seed}")).uint64(0, shape)


def _compose(l0: int, l1: int, l2: int) -> int:
    return (l0 + l1 * 2**21 + l2 * 2**42) % 2**64


@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 1, 1), (7, 13, 5), (1, 2047, 1), (3, 2047, 9), (64, 2048, 3), (3, 2049, 4),
     (2, 4097, 5), (5, 5000, 2), (40, 300, 1), (1, 300, 40), (33, 17, 71)],
)
def test_random_full_range_is_exact(m: int, k: int, n: int) -> None:
    a, b = _words(1, (m, k)), _words(2, (k, n))
    assert np.array_equal(ring.matmul(a, b), a @ b)  # numpy's uint64 matmul wraps mod 2^64


@pytest.mark.parametrize("k", [1, 2047, 2048, 2049, 4097])
def test_extreme_values_are_exact(k: int) -> None:
    a = np.resize(EDGE, (12, k))  # every row a different rotation of the edge values
    b = np.ascontiguousarray(np.resize(EDGE[::-1], (k, 7)))
    assert np.array_equal(ring.matmul(a, b), a @ b)
    for fill in (0, 2**63, 2**64 - 1):
        full = np.full((3, k), fill, dtype=U)
        assert np.array_equal(ring.matmul(full, b), full @ b)
        assert np.array_equal(ring.matmul(a, full.T), a @ full.T)


# The largest odd magnitudes of each product's terms: a float64 sum of more than
# 2048 of them exceeds 2^53 and rounds, so these fail if a chunk ever did.
TOP_SUM = _compose(-(2**20), -(2**20 - 1), 2**21 - 1)  # l0 + l1 = -(2^21 - 1)
TOP_LOW = _compose(1, 2**20 - 1, -(2**21 - 1))  # low 22 bits = -(2^21 - 1), l2 odd too


@pytest.mark.parametrize("k", [2048, 2049, 4096, 4104])
@pytest.mark.parametrize(("x", "y"), [(TOP_SUM, TOP_SUM), (TOP_LOW, TOP_LOW), (TOP_SUM, TOP_LOW)])
def test_largest_limb_magnitudes_stay_exact(k: int, x: int, y: int) -> None:
    limbs = ring.split(np.array([TOP_SUM, TOP_LOW], dtype=U))
    assert limbs.l01[0] == -(2**21 - 1) and limbs.low[1] == -(2**21 - 1)
    a, b = np.full((4, k), x, dtype=U), np.full((k, 3), y, dtype=U)
    assert np.array_equal(ring.matmul(a, b), a @ b)
    assert np.array_equal(ring.matmul(b.T, a.T), (a @ b).T)


def test_limbs_reconstruct_within_bounds() -> None:
    a = np.concatenate([_words(3, (1000,)), EDGE, np.array([TOP_SUM, TOP_LOW], dtype=U)])
    before = a.copy()
    limbs = ring.split(a)
    assert np.array_equal(a, before)  # the input is left alone
    as_ring = [x.astype(np.int64).view(U) for x in (limbs.l0, limbs.l1, limbs.l2, limbs.l01, limbs.low)]
    l0, l1, l2, l01, low = as_ring
    assert np.array_equal(l0 + (l1 << U(21)) + (l2 << U(42)), a)
    assert np.array_equal(l01, l0 + l1)
    assert np.array_equal(low & U(2**22 - 1), a & U(2**22 - 1))
    for limb, half in ((limbs.l0, 2**20), (limbs.l1, 2**20), (limbs.l2, 2**21), (limbs.low, 2**21)):
        assert limb.min() >= -half and limb.max() < half
    assert limbs.nbytes == 5 * a.size * 8


@pytest.mark.parametrize(("m", "n"), [(63, 1), (1, 63), (9, 9)])
def test_presplit_operands_and_views_are_exact(m: int, n: int) -> None:
    # a tall matrix's transpose times a column (a FixedOperand's X[R]ᵀ q), inner
    # dimension 5000 in three chunks, operands split once and read as views
    x = _words(3, (5000, m))
    b = _words(4, (5000, n))
    want = np.ascontiguousarray(x.T) @ b
    lx, lb = ring.split(x), ring.split(b)
    assert np.array_equal(ring.matmul(x.T, b), want)
    assert np.array_equal(ring.matmul(lx.T, lb), want)
    assert np.array_equal(ring.matmul(lx.T, b), want)
    assert np.array_equal(ring.matmul(x.T, lb), want)
    rows = np.array([4999, 0, 17, 17, 2500, 4])
    assert np.array_equal(ring.matmul(lx.rows(rows).T, b[rows]), x[rows].T @ b[rows])
    assert np.array_equal(ring.matmul(lx.rows(rows), b[:m]), x[rows] @ b[:m])
    cols = slice(1, None, 2)
    assert np.array_equal(ring.matmul(lb.cols(cols).T, x), b[:, cols].T @ x)
    # strided, non-contiguous inputs
    assert np.array_equal(ring.matmul(x[::3].T, b[::3]), x[::3].T @ b[::3])


def test_vectors_and_shape_errors() -> None:
    v, w = _words(5, (3000,)), _words(6, (3000, 1))
    assert np.array_equal(ring.matmul(v, w), v.reshape(1, -1) @ w)  # a row times a column
    assert np.array_equal(ring.matmul(w, v), w @ v.reshape(1, -1))  # their outer product
    with pytest.raises(ValueError, match="inner dimensions differ"):
        ring.matmul(_words(7, (3, 4)), _words(8, (5, 2)))


@pytest.mark.parametrize(("m", "k", "n"), [(1024, 10, 32), (7, 13, 5), (1, 2049, 1)])
def test_product_is_exact_below_and_above_the_small_size(m: int, k: int, n: int) -> None:
    a, b = _words(3, (k, m)).T, _words(4, (n, k)).T  # transposed views, as the MLPs pass
    assert np.array_equal(ring.product(a, b), a @ b)
    edge = np.resize(EDGE, (m, k))
    assert np.array_equal(ring.product(edge, b), edge @ b)
    big = _words(5, (300, 150)), _words(6, (150, 100))  # above SMALL_PRODUCT: the limbs
    assert ring.SMALL_PRODUCT < 300 * 150 * 100
    assert np.array_equal(ring.product(*big), big[0] @ big[1])
