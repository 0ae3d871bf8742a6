"""Metrics from summed per-party vectors against scikit-learn on the pooled rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sharedml.errors import DataError
from sharedml.fl import metrics as M
from sharedml.learn.metrics import ks as exact_ks


def _parties(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (500, 1300, 90):
        y = (rng.random(n) < 0.3).astype(float)
        score = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 0.5)))
        out.append((y, score))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_from_sums_match_the_pooled_rows(seed: int) -> None:
    parts = _parties(seed)
    total = sum(M.classification_sums(y, s) for y, s in parts)
    got = M.classification_metrics(total)
    y = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    assert abs(got["auc"] - skm.roc_auc_score(y, s)) <= got["auc_bound"]
    assert got["auc_bound"] < 1e-3
    assert got["logloss"] == pytest.approx(skm.log_loss(y, s), rel=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, s >= 0.5), rel=1e-12)
    assert got["ks"] <= exact_ks(y, s) + 1e-12 and got["ks"] >= exact_ks(y, s) - 2e-3
    assert got["rows"] == y.size and got["positives"] == y.sum()


def test_regression_metrics_from_sums_match_the_pooled_rows() -> None:
    rng = np.random.default_rng(0)
    parts = [(rng.normal(size=n), rng.normal(size=n)) for n in (40, 300)]
    got = M.regression_metrics(sum(M.regression_sums(y, f) for y, f in parts))
    y = np.concatenate([p[0] for p in parts])
    f = np.concatenate([p[1] for p in parts])
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, f)), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, f), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, f), rel=1e-9)


def test_bad_labels_or_scores_are_data_errors() -> None:
    with pytest.raises(DataError, match="0/1"):
        M.classification_sums(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(DataError, match="probabilities"):
        M.classification_sums(np.array([0, 1]), np.array([0.1, np.nan]))
