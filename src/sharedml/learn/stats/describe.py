"""Per-party summary statistics, computed where the data are (no protocol).

What a party then shares is its own decision: the summary reveals
aggregates (count, mean, spread, quantiles, extremes) of its columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def describe(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """count, missing, mean, std, min, quartiles, max per numeric column (a row each)."""
    cols = columns if columns is not None else [
        c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
    ]
    data = frame[cols].astype(np.float64)
    out = data.describe().T
    out.insert(1, "missing", data.isna().sum())
    return out
