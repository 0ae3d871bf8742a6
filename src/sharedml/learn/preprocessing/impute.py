"""Missing-value filling: mean, median or a constant, local or (mean) across parties.

Vertical data: each party fills its own columns from its own rows. Horizontal
data: the mean is the global one, from two secure sums (``Σx`` over present
values and their count, per column); reveals the global means and the count
of present values per column. Medians across parties are not offered (they
would need secure sorting).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from sharedml.errors import ConfigError, NotFittedError
from sharedml.learn.preprocessing.secure_sum import SecureSummer
from sharedml.session import Session

Strategy = Literal["mean", "median", "constant"]


class Filler:
    """Replace NaN per column with ``fill_``."""

    def __init__(self, strategy: Strategy = "mean", value: float = 0.0) -> None:
        if strategy not in ("mean", "median", "constant"):
            raise ConfigError(f"unknown fill strategy {strategy!r}")
        self.strategy = strategy
        self.value = value

    def fit(self, x: np.ndarray) -> Filler:
        x = np.asarray(x, dtype=np.float64)
        if self.strategy == "constant":
            self.fill_ = np.full(x.shape[1], self.value)
        else:
            stat = np.nanmean if self.strategy == "mean" else np.nanmedian
            with np.errstate(all="ignore"):
                fill = stat(x, axis=0) if len(x) else np.full(x.shape[1], np.nan)
            self.fill_ = np.where(np.isnan(fill), self.value, fill)
        return self

    def fit_horizontal(self, session: Session, x: np.ndarray) -> Filler:
        if self.strategy == "median":
            raise ConfigError("a joint median is not supported; use 'mean' or 'constant'",
                              party=session.party, step="fill")
        if self.strategy == "constant":
            return self.fit(x)
        x = np.asarray(x, dtype=np.float64)
        present = ~np.isnan(x)
        tot = SecureSummer(session).sum(
            np.concatenate([np.where(present, x, 0.0).sum(axis=0), present.sum(axis=0)])
        )
        d = x.shape[1]
        with np.errstate(all="ignore"):
            mean = tot[:d] / tot[d:]
        self.fill_ = np.where(tot[d:] > 0, mean, self.value)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "fill_"):
            raise NotFittedError("Filler.transform before fit")
        x = np.array(x, dtype=np.float64, copy=True)
        rows, cols = np.nonzero(np.isnan(x))
        x[rows, cols] = self.fill_[cols]
        return x
