"""Evaluation metrics from sums (pure numpy): each party sums its own rows, a secure sum adds them.

Horizontal evaluation never pools predictions: every party turns its own
labels and scores into a fixed-length vector of sums
(:func:`classification_sums`, :func:`regression_sums`), the vectors are added
by secure aggregation, and :func:`classification_metrics` /
:func:`regression_metrics` read the metrics off the total.

Classification sums hold, per label, a histogram of the scores over
``bins`` equal cells of [0, 1]. AUC is computed from the two histograms with
scores in one cell counted as ties (half a pair each), so it differs from the
exact AUC of the pooled rows by at most ``Σ_b pos_b · neg_b / (2 P N)`` —
returned as ``auc_bound`` (about 1e-4 with 4096 cells on default_credit). KS
is read at the cell edges, so it is at most the exact KS and within the mass
of one cell of it. Log-loss and accuracy at 0.5 are exact sums.

Reveals (to whoever receives the total): the pooled score histogram of each
class, the pooled log-loss and the row and positive counts — what a ROC
curve shows — never a party's own.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import DataError

DEFAULT_BINS = 4096
_HEAD = 4  # log-loss sum, rows, positives, correct at 0.5
_EPS = 1e-15


def classification_sums(y: np.ndarray, score: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``[Σ log-loss, rows, positives, correct, hist_pos (bins), hist_neg (bins)]``."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise DataError(f"{y.size} labels but {p.size} scores")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("classification metrics need labels 0/1", remedy="encode the label as 0/1")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise DataError("scores must be probabilities in [0, 1]")
    q = np.clip(p, _EPS, 1 - _EPS)
    logloss = -float(np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))
    cell = np.minimum((p * bins).astype(np.int64), bins - 1)
    pos = np.bincount(cell[y == 1], minlength=bins)
    neg = np.bincount(cell[y == 0], minlength=bins)
    correct = float(np.sum((p >= 0.5) == (y == 1)))
    head = np.array([logloss, y.size, y.sum(), correct])
    return np.concatenate([head, pos, neg]).astype(np.float64)


def classification_metrics(sums: np.ndarray) -> dict[str, float]:
    """AUC (with its tie bound), KS, log-loss and accuracy from summed vectors."""
    bins = (sums.size - _HEAD) // 2
    logloss, rows, positives, correct = (float(v) for v in sums[:_HEAD])
    pos = np.rint(sums[_HEAD : _HEAD + bins])
    neg = np.rint(sums[_HEAD + bins :])
    P, N = pos.sum(), neg.sum()
    out = {"rows": rows, "positives": positives, "logloss": logloss / max(rows, 1.0)}
    out["accuracy"] = correct / max(rows, 1.0)
    if P == 0 or N == 0:
        return {**out, "auc": float("nan"), "auc_bound": 0.0, "ks": float("nan")}
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    out["auc"] = float(np.sum(pos * (below + 0.5 * neg)) / (P * N))
    out["auc_bound"] = float(np.sum(pos * neg) / (2 * P * N))
    # KS over thresholds at the cell edges, ranking by descending score
    tpr = np.cumsum(pos[::-1]) / P
    fpr = np.cumsum(neg[::-1]) / N
    out["ks"] = float(np.max(np.abs(tpr - fpr)))
    return out


def regression_sums(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``[Σ e², Σ |e|, Σ y, Σ y², rows]`` with ``e = pred − y``."""
    y = np.asarray(y, dtype=np.float64).ravel()
    f = np.asarray(pred, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise DataError(f"{y.size} targets but {f.size} predictions")
    e = f - y
    return np.array([e @ e, np.abs(e).sum(), y.sum(), y @ y, y.size])


def regression_metrics(sums: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (against the pooled mean) from summed vectors."""
    sse, sae, sy, syy, n = (float(v) for v in sums)
    n = max(n, 1.0)
    sst = syy - sy * sy / n
    return {
        "rows": n,
        "rmse": float(np.sqrt(sse / n)),
        "mae": sae / n,
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
    }
