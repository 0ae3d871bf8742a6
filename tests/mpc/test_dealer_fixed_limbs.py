"""The dealer keeps the limb split of each fixed mask: same products, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto import ring
from sharedml.crypto.prg import Prg, derive_key
from sharedml.mpc.dealer import FixedMasks
from sharedml.mpc.material import Kind, Request, derive


def _words(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return Prg(derive_key(bytes(16), f"fixed-limbs/{seed}")).uint64(0, shape)


def test_limbs_are_split_once_and_reconstruct() -> None:
    masks = FixedMasks()
    masks[7] = _words(1, (300, 4))
    first = masks.limbs(7)
    assert masks.limbs(7) is first  # cached, not split again
    want = ring.split(masks[7])
    for got, ref in zip((first.l0, first.l1, first.l2), (want.l0, want.l1, want.l2), strict=True):
        assert np.array_equal(got, ref)
    assert masks.cached_bytes == first.nbytes == 5 * masks[7].nbytes


def test_limb_cache_stays_within_budget() -> None:
    one = 5 * 100 * 4 * 8  # limbs of a 100 × 4 mask (five float64 arrays)
    masks = FixedMasks(budget=2 * one)
    for fid in (1, 2, 3):
        masks[fid] = _words(fid, (100, 4))
    a, b = masks.limbs(1), masks.limbs(2)
    masks.limbs(1)  # 1 is now the most recently used
    masks.limbs(3)  # evicts 2, not 1
    assert masks.cached_bytes == 2 * one
    assert masks.limbs(1) is a and masks.limbs(2) is not b
    masks[9] = _words(9, (300, 4))  # larger than the budget: split, never kept
    assert np.array_equal(ring.matmul(masks.limbs(9), masks[1].T), masks[9] @ masks[1].T)
    assert masks.cached_bytes <= 2 * one


@pytest.mark.parametrize("rows", [None, np.array([2999, 0, 17, 17, 1500, 4])])
@pytest.mark.parametrize("transpose", [0, 1])
def test_products_with_cached_limbs_are_exact(rows: np.ndarray | None, transpose: int) -> None:
    # inner dimension 3000 when transposed: the chunked ring product
    fid, n = 5, 3
    masks = FixedMasks()
    masks[fid] = _words(2, (3000, 6))
    a = masks[fid] if rows is None else masks[fid][rows]
    at = a.T if transpose else a
    b = _words(3, (at.shape[1], n))
    req = Request(Kind.FIXED_MATMUL, 9, (fid, transpose, n), rows)
    for limbs in (masks.limbs, None):
        got = derive(req, {"b": b}, masks.__getitem__, limbs)["c"]
        assert np.array_equal(got, at @ b)

    m = a.shape[0]
    r = _words(4, (m, 1))
    req = Request(Kind.TRUNC_FIXED, 10, (fid, 12, m), rows)
    got = derive(req, {"r": r}, masks.__getitem__, masks.limbs)
    assert np.array_equal(got["c"], a.T @ (r >> np.uint64(12)))
    assert np.array_equal(got["M"], a.T * (r >> np.uint64(63)).reshape(1, -1))
