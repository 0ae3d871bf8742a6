"""Secret-shared vertical LR and linear regression against plaintext oracles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from sharedml.errors import NotFittedError
from sharedml.learn import metrics
from sharedml.learn.linear import SSLinearRegression, SSLogisticRegression, plaintext_sgd
from sharedml.mpc import serve_dealer
from sharedml.standalone import run_in_threads


def _sklearn_auc(X: Any, y: np.ndarray, Xt: Any, yt: np.ndarray) -> float:
    scaler = StandardScaler().fit(X)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(X), y)
    return float(roc_auc_score(yt, model.predict_proba(scaler.transform(Xt))[:, 1]))


@pytest.mark.slow
def test_ss_lr_matches_sklearn_on_default_credit(vertical: Callable, run: Callable) -> None:
    data = vertical("default_credit")
    joined = _sklearn_auc(data.joined("train"), data.y_train, data.joined("test"), data.y_test)
    alone = _sklearn_auc(data.train["guest"], data.y_train, data.test["guest"], data.y_test)
    out = run(lambda: SSLogisticRegression(epochs=5, random_state=1), data)
    auc = metrics.roc_auc(data.y_test, out["guest"])
    assert out["host"] is None
    assert abs(auc - joined) < 0.005, (auc, joined)
    assert auc > alone + 0.04, (auc, alone)


@pytest.mark.parametrize(
    ("name", "id_col", "label"), [("motor", "idx", "motor_speed"), ("student", "id", "y")]
)
def test_ss_linear_regression_matches_sklearn(
    vertical: Callable, run: Callable, name: str, id_col: str, label: str
) -> None:
    data = vertical(name, id_col=id_col, label=label, classify=False)
    sk = LinearRegression().fit(data.joined("train"), data.y_train)
    baseline = metrics.rmse(data.y_test, sk.predict(data.joined("test")))
    out = run(lambda: SSLinearRegression(random_state=3), data)
    rmse = metrics.rmse(data.y_test, out["guest"])
    assert rmse <= 1.02 * baseline, (rmse, baseline)


def _synthetic(n: int = 600, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)) * [1, 2, 0.5, 3, 1, 1] + [0, 1, -2, 0, 5, 0]
    logits = X @ np.array([1.0, -0.5, 2.0, 0.3, 0.0, -1.0]) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y, logits


@pytest.mark.parametrize(
    ("sigmoid", "group"), [("pwl", 1), ("pwl", 3), ("taylor1", 3), ("clip_poly3", 2)]
)
def test_three_parties_follow_the_plaintext_sgd(sigmoid: str, group: int) -> None:
    """A label holder and two feature holders reach the plaintext SGD's
    coefficients on the same batches, in the same groups (fixed-point error only)."""
    X, y, _ = _synthetic()
    blocks = {"bank": X[:, :2], "shop": X[:, 2:4], "telco": X[:, 4:]}
    params = dict(
        epochs=3, batch_size=64, learning_rate=0.5, l2=0.01, sigmoid=sigmoid, random_state=9,
        group_batches=group,
    )

    def party(session: Any) -> Any:
        model = SSLogisticRegression(**params)
        model.fit(session, blocks[session.party], y if session.party == "bank" else None)
        return model.coef_, model.intercept_, model.predict(session, blocks[session.party])

    out = run_in_threads(
        {"bank": party, "shop": party, "telco": party, "dealer": serve_dealer},
        ["bank", "shop", "telco", "dealer"],
        dealer="dealer",
    )
    Xs = (X - X.mean(0)) / X.std(0)
    seed = __import__("hashlib").sha256(b"sharedml.linear/9").digest()[:16]
    w, b = plaintext_sgd(
        Xs,
        y.astype(float),
        task="classification",
        epochs=3,
        batch_size=64,
        eta0=0.5,
        schedule="cosine",
        l2=0.01,
        sigmoid_approx=sigmoid,
        seed=seed,
        group=group,
    )
    got = np.concatenate([out["bank"][0], out["shop"][0], out["telco"][0]])
    np.testing.assert_allclose(got, w, atol=2e-3)
    assert out["bank"][1] == pytest.approx(b, abs=2e-3)
    assert out["shop"][1] is None and out["telco"][1] is None
    # joint prediction: the two feature holders' partial scores reach the bank as a masked sum
    np.testing.assert_allclose(out["bank"][2], 1 / (1 + np.exp(-(Xs @ w + b))), atol=2e-3)
    assert out["shop"][2] is None and out["telco"][2] is None


def test_shared_weights_predict_like_released_weights_and_survive_save_load(
    vertical: Callable, run: Callable, tmp_path: Path
) -> None:
    data = vertical("breast")
    kept: dict[str, Any] = {}
    own = run(
        lambda: SSLogisticRegression(epochs=3, batch_size=64, random_state=2), data, keep=kept
    )
    for party, model in kept.items():
        model.save(tmp_path / f"{party}.json")
    shared_kept: dict[str, Any] = {}
    shared = run(
        lambda: SSLogisticRegression(
            epochs=3, batch_size=64, random_state=2, reveal_weights="none"
        ),
        data,
        keep=shared_kept,
        dealer_runs=2,
    )
    np.testing.assert_allclose(shared["guest"], own["guest"], atol=1e-3)
    # shared mode: no party holds plaintext coefficients, each holds a share of all of them
    for model in shared_kept.values():
        assert model.coef_ is None and model.w_share_ is not None
        assert model.w_share_.size == data.train["guest"].shape[1] + data.train["host"].shape[1] + 1
    assert "host_x0" not in (tmp_path / "guest.json").read_text()
    assert np.asarray(kept["host"].coef_).size == data.train["host"].shape[1]

    def reload(session: Any) -> Any:
        model = SSLogisticRegression.load(tmp_path / f"{session.party}.json")
        batch = model.predict(session, data.test[session.party])
        one = model.predict_one(session, data.test[session.party].iloc[0].to_numpy())
        return batch, one

    again = run_in_threads(reload, ["guest", "host"])
    np.testing.assert_allclose(again["guest"][0], own["guest"], atol=1e-9)
    assert again["guest"][1] == pytest.approx(own["guest"][0])
    assert again["host"] == (None, None)


def test_early_stopping_stops_and_restores_best(vertical: Callable, run: Callable) -> None:
    data = vertical("breast")
    kept: dict[str, Any] = {}
    run(
        lambda: SSLogisticRegression(
            epochs=30,
            batch_size=64,
            lr_schedule="constant",
            early_stopping_rounds=2,
            random_state=4,
        ),
        data,
        keep=kept,
        validation=True,
    )
    guest, host = kept["guest"], kept["host"]
    assert guest.n_epochs_ == host.n_epochs_ < 30
    assert len(guest.history_) == guest.n_epochs_
    assert host.history_ == []


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        SSLogisticRegression().predict(None, np.zeros((2, 2)))  # type: ignore[arg-type]
