"""Joint Pearson correlation and VIF across vertically split data, under MPC.

Protocol (parties hold different columns of the same aligned rows; an
:class:`sharedml.mpc.MPC` runtime connects them):

1. Each party standardises its own columns locally,
   ``z = (x − mean) / (std · √n)`` (population std), so ``zᵀz`` is the
   correlation of two columns.
2. Each party secret-shares its block ``Z_p`` (``n × d_p``); the shares are
   concatenated column-wise into ``Z``.
3. ``R = Zᵀ Z`` is computed with one Beaver matrix product and truncation,
   and revealed to the parties named in ``to`` (default: all).
4. VIF is computed from the revealed ``R``: ``VIF_j = (R⁻¹)_jj``.

Reveals: the correlation matrix (hence each party's own-block correlations,
which it knew, and the cross-party ones) and the VIF derived from it; no
mean, variance or value of any party. Security: that of the MPC engine
(semi-honest; with a dealer, the dealer must not collude). Fixed-point error
is about ``n · 2^-f`` on ``zᵀz`` before scaling, i.e. below 1e-4 at the
default 16 fractional bits. Reference: Mohassel & Zhang, "SecureML", S&P 2017
(shared matrix products).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sharedml.errors import ConfigError, DataError
from sharedml.mpc import MPC, concatenate


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns scaled so that ``zᵀz`` is their correlation matrix."""
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise DataError("correlation needs complete columns; fill missing values first",
                        step="correlation")
    # A constant column (max == min) is exactly zero after centring: its float
    # std may come out as 1e-17 rather than 0 and would blow rounding noise up
    # into spurious correlations.
    constant = x.max(axis=0, initial=-np.inf) == x.min(axis=0, initial=np.inf)
    centred = np.where(constant, 0.0, x - x.mean(axis=0)) if len(x) else x
    std = np.where(constant, 1.0, x.std(axis=0) if len(x) else 1.0)
    return centred / (std * np.sqrt(max(len(x), 1)))


def joint_correlation(
    mpc: MPC, x: np.ndarray, *, to: Sequence[str] | None = None
) -> np.ndarray | None:
    """The correlation matrix of every party's columns, in party order (see docstring)."""
    z = standardise(x)
    counts = mpc.exchange("corr_rows", np.array([len(z)], dtype=np.uint64))
    if len({int(v[0]) for v in counts.values()}) != 1:
        raise DataError("parties hold different row counts: align them with psi first",
                        party=mpc.party, step="correlation")
    blocks = [mpc.share(z if p == mpc.party else None, owner=p) for p in mpc.parties]
    zz = concatenate(blocks, axis=1)
    r = zz.T @ zz
    receivers = list(to) if to is not None else list(mpc.parties)
    unknown = set(receivers) - set(mpc.parties)
    if unknown:
        raise ConfigError(f"correlation receivers {sorted(unknown)} are not computing parties")
    if to is None:
        out = r.reveal()
    else:
        out = None
        for p in receivers:
            got = r.reveal(to=p)
            if p == mpc.party:
                out = got
    if out is None:
        return None
    out = (out + out.T) / 2
    np.fill_diagonal(out, 1.0)
    return out


#: Above this condition number a correlation matrix is treated as singular.
SINGULAR_CONDITION = 1e12


def vif(r: np.ndarray) -> np.ndarray:
    """Variance inflation factors from a correlation matrix: ``diag(R⁻¹)``.

    A column in an exact linear relation with others (or constant) has an
    infinite VIF: when ``R`` is singular (condition number over
    :data:`SINGULAR_CONDITION`), the columns whose removal makes the rest
    well conditioned are reported as ``inf`` rather than as the finite
    numbers a pseudo-inverse would give.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.size == 0:
        return np.zeros(0)
    if np.isfinite(r).all() and np.linalg.cond(r) < SINGULAR_CONDITION:
        return np.diag(np.linalg.inv(r)).copy()
    # Singular: a column has infinite VIF iff it lies in the span of the others,
    # i.e. it has a non-zero weight in some null vector of R.
    clean = np.nan_to_num(r, nan=0.0)
    w, v = np.linalg.eigh((clean + clean.T) / 2)
    null = v[:, w < w.max(initial=1.0) / SINGULAR_CONDITION]
    inf = (np.abs(null) > 1e-8).any(axis=1)
    out = np.full(len(r), np.inf)
    keep = ~inf
    if keep.any():
        out[keep] = np.diag(np.linalg.inv(clean[np.ix_(keep, keep)]))
    return out
