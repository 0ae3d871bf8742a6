"""Equal-width and equal-frequency binning, and one-hot encoding (local math).

Binning runs where the column lives (each party bins its own features in
vertical data); the bin index per row never leaves the party. Missing values
get their own bin, index ``n_bins`` (the last one).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from sharedml.errors import ConfigError

BinMethod = Literal["width", "frequency"]


def bin_edges(x: np.ndarray, n_bins: int = 10, method: BinMethod = "frequency") -> np.ndarray:
    """Inner edges (``<= n_bins - 1`` of them, ascending, unique) for one column."""
    if n_bins < 2:
        raise ConfigError(f"n_bins must be at least 2, got {n_bins}")
    vals = np.asarray(x, dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return np.zeros(0)
    if method == "width":
        lo, hi = vals.min(), vals.max()
        edges = np.linspace(lo, hi, n_bins + 1)[1:-1]
    elif method == "frequency":
        edges = np.quantile(vals, np.linspace(0, 1, n_bins + 1)[1:-1])
    else:
        raise ConfigError(f"unknown binning method {method!r}; use 'width' or 'frequency'")
    return np.unique(edges)


def apply_bins(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per row: ``searchsorted(edges, x, 'right')``; NaN → ``len(edges) + 1``."""
    vals = np.asarray(x, dtype=np.float64)
    out = np.searchsorted(edges, vals, side="right").astype(np.int64)
    out[np.isnan(vals)] = len(edges) + 1
    return out


def one_hot(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Indicator columns ``col=value`` for each category (pandas ``get_dummies``)."""
    cols = columns if columns is not None else [
        c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
    ]
    return pd.get_dummies(frame, columns=cols, prefix_sep="=", dtype=np.float64)
