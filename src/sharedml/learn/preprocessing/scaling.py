"""Standard and min-max scaling, local (vertical data) or across parties (horizontal data).

Vertical data: every party holds whole columns, so it fits its scaler on its
own columns and nothing crosses the wire (scikit-learn does the work).

Horizontal data: every party holds some rows of the same columns.

* Standard scaling uses two secure sums (:mod:`.secure_sum`): ``Σx`` and the
  row count give the mean, then ``Σ(x − mean)²`` the variance (two passes,
  so no cancellation). Reveals: per column the global mean and standard
  deviation and the total row count; no party's own sums.
* Min-max scaling needs the global extremes, which are not sums: each party
  secret-shares its column minima and maxima with the MPC engine, the
  maxima of the shared stack are computed under MPC (secure comparisons)
  and only the global min and max are revealed. Needs a randomness
  provider (``mpc``: a :class:`sharedml.mpc.MPC` runtime over the parties).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from sharedml.errors import ConfigError, NotFittedError
from sharedml.learn.preprocessing.secure_sum import SecureSummer
from sharedml.session import Session

Method = Literal["standard", "minmax"]


class Scaler:
    """``(x - center_) / scale_`` per column; fitted locally or jointly."""

    def __init__(self, method: Method = "standard") -> None:
        if method not in ("standard", "minmax"):
            raise ConfigError(f"scaling method must be 'standard' or 'minmax', got {method!r}")
        self.method = method

    def fit(self, x: np.ndarray) -> Scaler:
        """Local fit (vertical data): scikit-learn's scalers on this party's columns."""
        from sklearn.preprocessing import MinMaxScaler, StandardScaler

        x = np.asarray(x, dtype=np.float64)
        if self.method == "standard":
            sk = StandardScaler().fit(x)
            self.center_, self.scale_ = sk.mean_, sk.scale_
        else:
            mm = MinMaxScaler().fit(x)
            self.center_ = mm.data_min_
            self.scale_ = np.where(mm.data_range_ == 0, 1.0, mm.data_range_)
        return self

    def fit_horizontal(self, session: Session, x: np.ndarray, mpc: object | None = None) -> Scaler:
        """Joint fit over every party's rows (see module docstring)."""
        x = np.asarray(x, dtype=np.float64)
        if self.method == "standard":
            summer = SecureSummer(session)
            tot = summer.sum(np.concatenate([x.sum(axis=0), [len(x)]]))
            n = tot[-1]
            mean = tot[:-1] / n
            var = summer.sum(((x - mean) ** 2).sum(axis=0)) / n
            std = np.sqrt(np.maximum(var, 0.0))
            self.center_, self.scale_ = mean, np.where(std == 0, 1.0, std)
            return self
        if mpc is None:
            raise ConfigError(
                "horizontal min-max scaling needs an MPC runtime for the secure maximum",
                party=session.party,
                step="scale",
                remedy="pass mpc=MPC(session, provider) or use method 'standard'",
            )
        lo, hi = _joint_extremes(mpc, x)
        rng = hi - lo
        self.center_, self.scale_ = lo, np.where(rng == 0, 1.0, rng)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "center_"):
            raise NotFittedError("Scaler.transform before fit")
        return (np.asarray(x, dtype=np.float64) - self.center_) / self.scale_


def _joint_extremes(mpc: object, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sharedml.mpc import MPC, functions, stack

    if not isinstance(mpc, MPC):
        raise ConfigError("mpc must be a sharedml.mpc.MPC runtime")
    local = np.concatenate([x.max(axis=0), -x.min(axis=0)])
    shared = [
        mpc.share(local if p == mpc.party else None, owner=p) for p in mpc.parties
    ]
    top = functions.max(stack(shared, axis=0), axis=0)
    out = top.reveal()
    if out is None:  # reveal() without ``to`` opens to every party
        raise ConfigError("secure maximum was not revealed")
    d = x.shape[1]
    return -out[d:], out[:d]
