"""Shared bin edges for horizontal trees from secure sums: a quantile sketch (pure numpy parts).

No party's values leave it. Two secure sums agree the edges:

1. *Moments.* Each party sums ``[Σx, Σx², n]`` per feature; the pooled mean
   and standard deviation fix, per feature, a grid of ``cells`` equal cells
   over ``mean ± spread·std`` plus one overflow cell at each end
   (:func:`moment_sums`, :func:`grid`).
2. *Fine histogram.* Each party counts its rows per cell; the pooled counts
   give the quantile edges: the cut for quantile ``q`` is the upper edge of
   the cell in which the cumulative count reaches ``q·n``
   (:func:`cell_counts`, :func:`edges_from_counts`). Cuts are cell edges, so
   a feature with few distinct values (further apart than a cell) gets cuts
   between its values, as an exact sketch would; a quantile lands at most
   one cell (``2·spread·std / cells``) from the pooled rows' exact quantile.

Reveals (to whoever receives the sums — the server): per feature the pooled
mean, variance and the histogram over the grid; never one party's.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import DataError

SPREAD = 5.0


def moment_sums(X: np.ndarray) -> np.ndarray:
    """``[Σx (F), Σx² (F), n]`` of one party's rows."""
    X = check_features(X)
    return np.concatenate([X.sum(axis=0), (X * X).sum(axis=0), [X.shape[0]]])


def grid(moments: np.ndarray, cells: int, spread: float = SPREAD) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the grid's lower end and cell width from pooled moment sums."""
    F = (moments.size - 1) // 2
    n = max(float(moments[-1]), 1.0)
    mean = moments[:F] / n
    std = np.sqrt(np.maximum(moments[F : 2 * F] / n - mean * mean, 0.0))
    half = np.where(std > 0, spread * std, np.maximum(np.abs(mean), 1.0) * 1e-6)
    return mean - half, 2 * half / cells


def cell_counts(X: np.ndarray, low: np.ndarray, width: np.ndarray, cells: int) -> np.ndarray:
    """Rows per cell, shape ``(F, cells + 2)`` flattened: cell 0 and ``cells + 1`` overflow."""
    X = check_features(X)
    idx = np.floor((X - low) / width).astype(np.int64) + 1
    idx = np.clip(idx, 0, cells + 1)
    F = X.shape[1]
    flat = idx + (np.arange(F) * (cells + 2))[None, :]
    return np.bincount(flat.ravel(), minlength=F * (cells + 2)).astype(np.float64)


def edges_from_counts(
    counts: np.ndarray, low: np.ndarray, width: np.ndarray, cells: int, n_bins: int
) -> list[np.ndarray]:
    """Per feature, at most ``n_bins − 1`` distinct cut points from pooled cell counts."""
    F = low.size
    table = np.rint(counts).reshape(F, cells + 2)
    qs = np.arange(1, n_bins) / n_bins
    out = []
    for f in range(F):
        cum = np.cumsum(table[f])
        total = cum[-1]
        if total <= 0:
            out.append(np.empty(0))
            continue
        cell = np.searchsorted(cum, qs * total, side="left")  # first cell reaching each quantile
        cell = np.unique(cell[cell < cells + 1])  # the top overflow cell has no upper edge
        upper = low[f] + cell * width[f]  # the upper edge of grid cell c - 1 is low + c·width
        occupied_above = cum[-1] - cum[cell] > 0  # a cut with nothing above it splits nothing
        out.append(np.unique(upper[occupied_above]))
    return out


def check_features(X: np.ndarray, party: str | None = None) -> np.ndarray:
    """``X`` as a float64 table; :class:`DataError` (naming ``party``) if it is not
    2-D or holds NaN or infinity."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"features must be a 2-D table, got shape {X.shape}", party=party)
    if not np.isfinite(X).all():
        rows = int(np.sum(~np.isfinite(X).all(axis=1)))
        raise DataError(
            f"features hold NaN or infinity in {rows} rows",
            party=party,
            remedy="fill missing values first (the fill step)",
        )
    return X
