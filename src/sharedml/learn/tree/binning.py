"""Quantile binning of one party's features (pure numpy, no I/O).

Each party bins its own columns; the bin edges never leave it. A value ``x``
falls in bin ``b`` when ``edges[b-1] <= x < edges[b]``, so a split "left if
bin <= b" is the same as "left if x < edges[b]" — the threshold the owner
keeps in its split table.
"""

from __future__ import annotations

import numpy as np


def quantile_edges(X: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Per column, the sorted distinct cut points (at most ``n_bins - 1``).

    Cuts are the column's quantiles at ``1/n_bins, ..., (n_bins-1)/n_bins``;
    cuts equal to the column minimum are dropped (nothing lies below them).
    """
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = []
    for col in np.asarray(X, dtype=np.float64).T:
        cuts = np.unique(np.quantile(col, qs, method="linear"))
        edges.append(cuts[cuts > col.min()])
    return edges


def bin_index(X: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Bin of every value, shape ``(n, F)``, dtype int32 (bin ``b`` of column ``f``
    counts ``edges[f] <= x``)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty(X.shape, dtype=np.int32)
    for f, cuts in enumerate(edges):
        out[:, f] = np.searchsorted(cuts, X[:, f], side="right")
    return out


def bins_per_feature(edges: list[np.ndarray]) -> np.ndarray:
    """How many bins each column has (one more than its cuts)."""
    return np.array([len(e) + 1 for e in edges], dtype=np.int64)
