"""Binning, histograms and split gains against direct computations."""

from __future__ import annotations

import numpy as np

from sharedml.learn.tree.binning import bin_index, bins_per_feature, quantile_edges
from sharedml.learn.tree.core import (
    SplitParams,
    best_split,
    bin_offsets,
    histogram,
    leaf_weight,
    logistic_grad_hess,
)
from sharedml.learn.tree.model import SplitTable, Tree


def _data(n=400, f=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[:, 2] = rng.integers(0, 3, n)  # a discrete column
    return X


def test_bins_agree_with_thresholds():
    X = _data()
    edges = quantile_edges(X, 8)
    bins = bin_index(X, edges)
    assert all(len(e) <= 7 for e in edges)
    assert len(edges[2]) == 2  # cuts at 1 and 2 for values {0, 1, 2}
    for f, cuts in enumerate(edges):
        for b, t in enumerate(cuts):
            np.testing.assert_array_equal(bins[:, f] <= b, X[:, f] < t)


def test_histogram_matches_loops():
    X = _data()
    edges = quantile_edges(X, 8)
    bins = bin_index(X, edges)
    nb = bins_per_feature(edges)
    rng = np.random.default_rng(1)
    g, h = rng.normal(size=len(X)), rng.uniform(size=len(X))
    hist = histogram(bins, bin_offsets(nb), int(nb.sum()), g, h)
    off = bin_offsets(nb)
    for f in range(X.shape[1]):
        for b in range(nb[f]):
            at = bins[:, f] == b
            np.testing.assert_allclose(hist[off[f] + b], [g[at].sum(), h[at].sum()])


def test_best_split_is_exhaustive_optimum():
    X = _data(seed=3)
    y = (X[:, 1] > 0.3).astype(float)
    g, h = logistic_grad_hess(y, np.zeros(len(y)))
    edges = quantile_edges(X, 16)
    bins = bin_index(X, edges)
    nb = bins_per_feature(edges)
    hist = histogram(bins, bin_offsets(nb), int(nb.sum()), g, h)
    params = SplitParams(reg_lambda=1.0, gamma=0.0, min_child_weight=1.0)
    cand = best_split(hist, nb, params)
    assert cand is not None and cand.feature == 1

    def score(G, H):
        return G * G / (H + 1.0)

    best = -np.inf
    for f in range(X.shape[1]):
        for b in range(nb[f] - 1):
            left = bins[:, f] <= b
            if h[left].sum() < 1 or h[~left].sum() < 1:
                continue
            gain = 0.5 * (
                score(g[left].sum(), h[left].sum())
                + score(g[~left].sum(), h[~left].sum())
                - score(g.sum(), h.sum())
            )
            best = max(best, gain)
    assert np.isclose(cand.gain, best)
    # a gamma above the best gain forbids splitting; a feature mask is obeyed
    assert best_split(hist, nb, SplitParams(1.0, best + 1, 1.0)) is None
    masked = best_split(hist, nb, params, np.array([True, False, True]))
    assert masked is None or masked.feature != 1
    assert leaf_weight(2.0, 3.0, 1.0) == -0.5


def test_tree_predict_follows_directions():
    tree = Tree()
    root = tree.add_node()
    left, right = tree.add_node(), tree.add_node()
    tree.left[root], tree.right[root], tree.owner[root], tree.record[root] = left, right, "host", 0
    tree.value[left], tree.value[right] = -1.0, 2.0
    table = SplitTable()
    table.add(0, 0.5)
    X = np.array([[0.1], [0.9]])
    dirs = {("host", 0): table.directions(X, np.array([0]))[0]}
    np.testing.assert_array_equal(tree.predict(2, dirs), [-1.0, 2.0])
    assert Tree.from_dict(tree.to_dict()) == tree


def test_indicator_without_last_bins_gives_the_full_histogram():
    from sharedml.learn.tree.ss_histograms import indicator, with_last_bins

    rng = np.random.default_rng(3)
    nb = np.array([4, 1, 3, 6])
    bins = np.stack([rng.integers(0, k, 300) for k in nb], axis=1)
    g, h = rng.normal(size=300), rng.uniform(size=300)
    B = indicator(bins, nb).astype(np.float64)
    assert B.shape == (300, int(nb.sum()) - len(nb))
    sums = B.T @ np.stack([g, h], axis=1)
    got = with_last_bins(sums[None], nb, np.array([[g.sum(), h.sum()]]))[0]
    want = histogram(bins, bin_offsets(nb), int(nb.sum()), g, h)
    np.testing.assert_allclose(got, want, atol=1e-9)
