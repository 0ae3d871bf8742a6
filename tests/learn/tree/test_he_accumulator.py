"""The HE feature holder's per-bin sums: grouping features into cells and
skipping each group's fullest cell change no sum."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto.paillier import generate_keypair
from sharedml.learn.tree.core import bin_offsets
from sharedml.learn.tree.he_histograms import CellLayout, _Accumulator


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.mark.parametrize("skewed", [True, False])
def test_bin_sums_match_plaintext(keys, skewed: bool):
    pk, sk = keys
    rng = np.random.default_rng(1)
    n_bins = np.array([4, 6, 3, 2, 12, 3], dtype=np.int64)
    n = 600
    bins = np.stack([rng.integers(0, k, n) for k in n_bins], axis=1)
    if skewed:  # most rows share one bin per feature: few cells, one very full
        bins[rng.random(n) < 0.9] = [1, 0, 2, 1, 5, 0]
    layout = CellLayout.build(bins, n_bins)
    if skewed:
        assert len(layout.starts) < len(n_bins)  # some features were grouped
    flat = bins + bin_offsets(n_bins)[None, :]
    values = rng.integers(-1000, 1000, n)
    cts = [pk.encrypt(int(v)) for v in values]
    for rows in (np.sort(rng.choice(n, 90, replace=False)), np.arange(n), np.array([3])):
        acc = _Accumulator(pk.n_sq, layout, rows)
        half = len(rows) // 2
        acc.add(0, [cts[r] for r in rows[:half]])
        acc.add(half, [cts[r] for r in rows[half:]])
        got = [sk.decrypt_signed(c) for c in acc.finish()]
        want = np.zeros(int(n_bins.sum()), dtype=np.int64)
        for f in range(flat.shape[1]):
            np.add.at(want, flat[rows, f], values[rows])
        assert got == want.tolist()


def test_grouping_cuts_multiplications_on_few_valued_features():
    rng = np.random.default_rng(2)
    n_bins = np.array([3, 2, 4, 3, 3], dtype=np.int64)
    bins = np.stack([rng.integers(0, k, 5000) for k in n_bins], axis=1)
    layout = CellLayout.build(bins, n_bins)
    # 5 features of <= 4 bins: at most 216 cells, so one group beats 5 passes
    assert len(layout.starts) == 1
