"""Evaluation metrics, pure numpy (STYLE.md 5): no transport, no config.

Classification metrics take binary labels ``y_true`` (0/1) and scores
``y_score`` (higher means more likely positive); regression metrics take real
targets and predictions; multi-class metrics (:data:`MULTICLASS`: accuracy,
macro one-vs-rest AUC, log loss) take labels 0 .. K-1 and probabilities
rows × K, and :func:`evaluate` picks them for scores with a column per
class. Ties in scores are handled as scikit-learn does
(ROC points only where the score changes), so the figures match
``sklearn.metrics`` to floating-point precision; ``tests/learn/test_metrics.py``
checks that.

The curve functions return the data a UI or report plots: :func:`roc_curve`
(false/true positive rates per threshold) and :func:`ks_curve` (cumulative
positive and negative rates against the fraction of the population ranked by
score, and their gap, whose maximum is the KS statistic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharedml.errors import DataError


@dataclass(frozen=True)
class RocCurve:
    """Points of the ROC curve, starting at (0, 0)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class KsCurve:
    """Cumulative rates against the fraction of rows ranked by descending score."""

    population: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    gap: np.ndarray
    thresholds: np.ndarray

    @property
    def ks(self) -> float:
        return float(self.gap.max())


def _binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DataError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size == 0:
        raise DataError("no rows to evaluate")
    if not np.isin(y, (0, 1)).all():
        raise DataError("classification metrics need labels 0/1", remedy="encode the label as 0/1")
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or infinity")
    return y.astype(np.int64), s


def _distinct_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, descending."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps, fps, s_sorted[last]


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> RocCurve:
    """ROC points (false positive rate, true positive rate) per distinct threshold."""
    y, s = _binary(y_true, y_score)
    pos, neg = int(y.sum()), int(y.size - y.sum())
    if pos == 0 or neg == 0:
        raise DataError("ROC needs both classes among the labels")
    tps, fps, thr = _distinct_points(y, s)
    return RocCurve(
        fpr=np.r_[0.0, fps / neg], tpr=np.r_[0.0, tps / pos], thresholds=np.r_[np.inf, thr]
    )


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, exact with ties)."""
    curve = roc_curve(y_true, y_score)
    return float(np.trapezoid(curve.tpr, curve.fpr))


def ks_curve(y_true: np.ndarray, y_score: np.ndarray) -> KsCurve:
    """The KS (Kolmogorov–Smirnov) chart: TPR and FPR by population fraction."""
    y, s = _binary(y_true, y_score)
    curve = roc_curve(y, s)
    tps, fps, _ = _distinct_points(y, s)
    population = np.r_[0.0, (tps + fps) / y.size]
    return KsCurve(
        population=population,
        tpr=curve.tpr,
        fpr=curve.fpr,
        gap=curve.tpr - curve.fpr,
        thresholds=curve.thresholds,
    )


def ks(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """KS statistic: the largest gap between the classes' cumulative score distributions."""
    return ks_curve(y_true, y_score).ks


def lift(y_true: np.ndarray, y_score: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` of rows by score over the overall rate."""
    y, s = _binary(y_true, y_score)
    if not 0 < fraction <= 1:
        raise DataError(f"lift fraction must be in (0, 1], got {fraction}")
    base = y.mean()
    if base == 0:
        raise DataError("lift needs at least one positive label")
    top = max(1, int(np.ceil(fraction * y.size)))
    order = np.argsort(-s, kind="mergesort")
    return float(y[order[:top]].mean() / base)


def accuracy(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows whose thresholded score equals the label; for a matrix of
    class probabilities (one column per class), whose most likely class does."""
    if np.ndim(y_score) == 2:
        return float((np.argmax(y_score, axis=1) == np.asarray(y_true).ravel()).mean())
    y, s = _binary(y_true, y_score)
    return float(((s >= threshold).astype(np.int64) == y).mean())


def f1(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the positive class at ``threshold`` (0 when nothing is predicted positive)."""
    y, s = _binary(y_true, y_score)
    pred = s >= threshold
    tp = float((pred & (y == 1)).sum())
    denom = float(pred.sum() + y.sum())
    return 0.0 if denom == 0 else 2 * tp / denom


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise DataError(f"targets ({y.size}) and predictions ({p.size}) differ in length")
    if y.size == 0:
        raise DataError("no rows to evaluate")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise DataError("targets or predictions contain NaN or infinity")
    return y, p


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y, p = _regression(y_true, y_pred)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y, p = _regression(y_true, y_pred)
    return float(np.mean(np.abs(y - p)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination (1 is perfect; 0 is predicting the mean)."""
    y, p = _regression(y_true, y_pred)
    total = float(np.sum((y - y.mean()) ** 2))
    residual = float(np.sum((y - p) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


Metric = Callable[[np.ndarray, np.ndarray], float]

#: Metric name -> (function, higher is better), per task.
CLASSIFICATION: dict[str, tuple[Metric, bool]] = {
    "auc": (roc_auc, True),
    "ks": (ks, True),
    "lift": (lift, True),
    "accuracy": (accuracy, True),
    "f1": (f1, True),
}
REGRESSION: dict[str, tuple[Metric, bool]] = {
    "rmse": (rmse, False),
    "mae": (mae, False),
    "r2": (r2, True),
}


def _multiclass(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0 .. K-1 and a probability matrix rows × K, checked."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise DataError(f"labels ({y.size}) and class probabilities {p.shape} do not match")
    if y.size == 0:
        raise DataError("no rows to evaluate")
    k = p.shape[1]
    if not np.isin(y, np.arange(k)).all():
        raise DataError(
            f"multi-class metrics need labels 0 to {k - 1}",
            remedy=f"encode the label as the integers 0 to {k - 1} (n_classes: {k})",
        )
    if not np.isfinite(p).all():
        raise DataError("class probabilities must be finite")
    return y.astype(np.int64), p


def multiclass_accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Share of rows whose most probable class is their label."""
    y, p = _multiclass(y_true, proba)
    return float((p.argmax(axis=1) == y).mean())


def macro_auc_ovr(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The unweighted mean over classes of each class's one-vs-rest ROC AUC
    (scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")``)."""
    y, p = _multiclass(y_true, proba)
    missing = [k for k in range(p.shape[1]) if not (y == k).any() or (y == k).all()]
    if missing:
        raise DataError(
            f"one-vs-rest AUC needs every class and its rest among the labels; not so for {missing}"
        )
    return float(np.mean([roc_auc((y == k).astype(np.int64), p[:, k]) for k in range(p.shape[1])]))


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of each row's label; probabilities clipped
    to [ε, 1 - ε] (float64's ε) and each row then normalised, as scikit-learn."""
    y, p = _multiclass(y_true, proba)
    eps = np.finfo(np.float64).eps
    p = np.clip(p, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(y.size), y]).mean())


#: Metrics of a multi-class classifier's probabilities (rows × classes)
MULTICLASS: dict[str, tuple[Metric, bool]] = {
    "accuracy": (multiclass_accuracy, True),
    "auc": (macro_auc_ovr, True),
    "log_loss": (log_loss, False),
}


def _table(task: str) -> dict[str, tuple[Metric, bool]]:
    return CLASSIFICATION if task == "classification" else REGRESSION


def metric(name: str, task: str, classes: int = 2) -> tuple[Metric, bool]:
    """The metric ``name`` for ``task`` (with ``classes`` > 2: of a multi-class
    model's probabilities) and whether higher is better."""
    table = MULTICLASS if task == "classification" and classes > 2 else _table(task)
    if name not in table:
        kind = "multi-class" if table is MULTICLASS else task
        raise DataError(f"unknown {kind} metric {name!r}", remedy=f"use one of {sorted(table)}")
    return table[name]


def evaluate(
    y_true: np.ndarray, y_score: np.ndarray, task: str, names: list[str] | None = None
) -> dict[str, float]:
    """Every requested metric (default: all of ``task``'s) as a name -> value mapping;
    a classifier's scores with one column per class get :data:`MULTICLASS`'s."""
    classes = np.shape(y_score)[1] if np.ndim(y_score) == 2 else 2
    table = MULTICLASS if task == "classification" and classes > 2 else _table(task)
    return {n: metric(n, task, classes)[0](y_true, y_score) for n in (names or list(table))}


def chart_summary(y_true: np.ndarray, y_score: np.ndarray, slices: int = 20) -> dict[str, Any]:
    """Coarse public charts of a classifier: ROC and KS at ``slices`` population cuts, lift by decile.

    Rows are ranked by descending score (ties in row order) and cut after
    ``ceil(k n / slices)`` rows, ``k = 0..slices``; at each cut the share of all
    positives (TPR) and of all negatives (FPR) above it. Lift is each tenth's
    positive rate over the overall rate. Reveals: ``slices + 10`` counts of
    positives among score-ranked slices — what a decile lift table shows —
    never a row, a score or a threshold.
    """
    y, s = _binary(y_true, y_score)
    pos, neg = int(y.sum()), int(y.size - y.sum())
    if pos == 0 or neg == 0:
        raise DataError("charts need both classes among the labels")
    ranked = y[np.argsort(-s, kind="mergesort")]
    hits = np.r_[0, np.cumsum(ranked)]
    cuts = np.ceil(np.arange(slices + 1) * y.size / slices).astype(np.int64)
    tpr, fpr = hits[cuts] / pos, (cuts - hits[cuts]) / neg
    tenths = np.ceil(np.arange(11) * y.size / 10).astype(np.int64)
    rates = np.diff(hits[tenths]) / np.maximum(np.diff(tenths), 1)
    base = pos / y.size
    return {
        "population": [round(float(c / y.size), 6) for c in cuts],
        "tpr": [round(float(v), 6) for v in tpr],
        "fpr": [round(float(v), 6) for v in fpr],
        "lift": [round(float(r / base), 6) for r in rates],
        "positive_rate": [round(float(r), 6) for r in rates],
    }


__all__ = [
    "CLASSIFICATION",
    "MULTICLASS",
    "REGRESSION",
    "KsCurve",
    "RocCurve",
    "accuracy",
    "chart_summary",
    "evaluate",
    "f1",
    "ks",
    "ks_curve",
    "lift",
    "log_loss",
    "macro_auc_ovr",
    "mae",
    "metric",
    "multiclass_accuracy",
    "r2",
    "rmse",
    "roc_auc",
    "roc_curve",
]
