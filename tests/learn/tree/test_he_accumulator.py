"""The HE feature holder's per-bin sums: the fullest-bin shortcut changes no sum."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto.paillier import generate_keypair
from sharedml.learn.tree.core import bin_offsets
from sharedml.learn.tree.he_histograms import _Accumulator


@pytest.mark.parametrize("skewed", [True, False])
def test_bin_sums_match_plaintext(skewed: bool):
    pk, sk = generate_keypair(1024)
    rng = np.random.default_rng(1)
    n_bins = np.array([4, 6, 3], dtype=np.int64)
    n = 120
    bins = np.stack([rng.integers(0, k, n) for k in n_bins], axis=1)
    if skewed:  # most rows in one bin per feature: the shortcut applies
        bins[rng.random(n) < 0.8] = [1, 0, 2]
    flat = bins + bin_offsets(n_bins)[None, :]
    values = rng.integers(-1000, 1000, n)
    cts = [pk.encrypt(int(v)) for v in values]
    rows = np.sort(rng.choice(n, 90, replace=False))
    acc = _Accumulator(pk.n_sq, flat, rows, n_bins)
    assert acc.skip == skewed
    acc.add(0, [cts[r] for r in rows[:40]])
    acc.add(40, [cts[r] for r in rows[40:]])
    got = [sk.decrypt_signed(c) for c in acc.finish()]
    want = np.zeros(int(n_bins.sum()), dtype=np.int64)
    for f in range(flat.shape[1]):
        np.add.at(want, flat[rows, f], values[rows])
    assert got == want.tolist()
