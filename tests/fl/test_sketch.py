"""The secure quantile sketch's pure parts against exact quantiles of the pooled rows."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.errors import DataError
from sharedml.fl import sketch


def _pooled_edges(parts: list[np.ndarray], n_bins: int, cells: int = 1024) -> list[np.ndarray]:
    low, width = sketch.grid(sum(sketch.moment_sums(X) for X in parts), cells)
    counts = sum(sketch.cell_counts(X, low, width, cells) for X in parts)
    return sketch.edges_from_counts(counts, low, width, cells, n_bins)


def test_cuts_are_within_one_cell_of_the_pooled_quantiles() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.normal(2.0, 3.0, size=(n, 2)) for n in (900, 4000, 300)]
    pooled = np.vstack(parts)
    edges = _pooled_edges(parts, 16)
    for f in range(2):
        col = pooled[:, f]
        assert len(edges[f]) == 15
        width = 2 * sketch.SPREAD * col.std() / 1024
        exact = np.quantile(col, np.arange(1, 16) / 16)
        assert np.max(np.abs(edges[f] - exact)) <= width + 1e-12


def test_a_few_distinct_values_get_cuts_between_them() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.choice([-1.0, 0.0, 2.5], size=(n, 1), p=[0.2, 0.5, 0.3]) for n in (100, 700)]
    [cuts] = _pooled_edges(parts, 32)
    assert len(cuts) == 2
    assert -1.0 < cuts[0] <= 0.0 < cuts[1] <= 2.5


def test_nan_features_are_refused() -> None:
    with pytest.raises(DataError, match="NaN"):
        sketch.moment_sums(np.array([[1.0], [np.nan]]))
