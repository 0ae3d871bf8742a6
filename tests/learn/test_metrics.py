"""Metrics against scikit-learn on random data with and without ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sharedml.errors import DataError
from sharedml.learn import metrics


@pytest.fixture(params=["continuous", "ties"])
def binary(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    score = rng.normal(size=500) + 0.8 * y
    if request.param == "ties":
        score = np.round(score, 1)
    return y, 1 / (1 + np.exp(-score))


def test_auc_and_roc_match_sklearn(binary: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = binary
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    curve = metrics.roc_curve(y, s)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)


def test_ks_matches_two_sample_statistic(binary: tuple[np.ndarray, np.ndarray]) -> None:
    from scipy.stats import ks_2samp

    y, s = binary
    expected = ks_2samp(s[y == 1], s[y == 0]).statistic
    assert metrics.ks(y, s) == pytest.approx(expected, abs=1e-12)
    curve = metrics.ks_curve(y, s)
    assert curve.population[0] == 0 and curve.population[-1] == pytest.approx(1.0)
    assert np.all(np.diff(curve.population) > 0)


def test_accuracy_f1_match_sklearn(binary: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = binary
    pred = (s >= 0.5).astype(int)
    assert metrics.accuracy(y, s) == pytest.approx(skm.accuracy_score(y, pred))
    assert metrics.f1(y, s) == pytest.approx(skm.f1_score(y, pred))
    assert metrics.f1(y, np.zeros_like(s)) == 0.0


def test_lift_is_top_decile_rate_over_base_rate() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    s = np.linspace(1, 0, 10)
    # top 20% = first two rows: one positive of two, base rate 0.3
    assert metrics.lift(y, s, fraction=0.2) == pytest.approx(0.5 / 0.3)
    assert metrics.lift(y, s, fraction=1.0) == pytest.approx(1.0)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=300) * 4 + 2
    p = y + rng.normal(size=300)
    assert metrics.rmse(y, p) == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert metrics.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert metrics.r2(y, p) == pytest.approx(skm.r2_score(y, p))


def test_evaluate_and_bad_input() -> None:
    y = np.array([0, 1, 1, 0])
    s = np.array([0.1, 0.9, 0.4, 0.3])
    out = metrics.evaluate(y, s, "classification")
    assert set(out) == set(metrics.CLASSIFICATION)
    with pytest.raises(DataError, match="0/1"):
        metrics.roc_auc(np.array([0, 2, 1, 0]), s)
    with pytest.raises(DataError, match="both classes"):
        metrics.roc_auc(np.zeros(4), s)
    with pytest.raises(DataError, match="differ in length"):
        metrics.rmse(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match="unknown"):
        metrics.metric("auc", "regression")


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4)) + 1.5 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[0] = [1.0, 0.0, 0.0, 0.0]  # a zero probability: log loss clips it, as scikit-learn
    got = metrics.evaluate(y, p, "classification")
    assert set(got) == {"accuracy", "auc", "log_loss"}
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(axis=1)), abs=1e-12)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=range(4)), abs=1e-12)
    assert metrics.metric("log_loss", "classification", classes=4)[1] is False
    with pytest.raises(DataError, match="multi-class metric 'ks'"):
        metrics.evaluate(y, p, "classification", ["ks"])
    with pytest.raises(DataError, match="labels 0 to 3"):
        metrics.evaluate(y + 1, p, "classification")
    with pytest.raises(DataError, match="every class"):
        metrics.macro_auc_ovr(np.where(y == 3, 0, y), p)
