"""HE logistic regression (label holder's Paillier key) against plaintext oracles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from sharedml.learn import metrics
from sharedml.learn.linear import HELogisticRegression, plaintext_sgd
from sharedml.standalone import run_in_threads


def _sklearn_auc(X: Any, y: np.ndarray, Xt: Any, yt: np.ndarray) -> float:
    scaler = StandardScaler().fit(X)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(X), y)
    return float(roc_auc_score(yt, model.predict_proba(scaler.transform(Xt))[:, 1]))


@pytest.mark.slow
def test_he_lr_matches_sklearn_on_default_credit(vertical: Callable, run: Callable) -> None:
    """Full training set, 2 epochs (about 15 s: one encryption per row per epoch)."""
    data = vertical("default_credit")
    joined = _sklearn_auc(data.joined("train"), data.y_train, data.joined("test"), data.y_test)
    alone = _sklearn_auc(data.train["guest"], data.y_train, data.test["guest"], data.y_test)
    out = run(lambda: HELogisticRegression(epochs=2, random_state=1), data, dealer=False)
    auc = metrics.roc_auc(data.y_test, out["guest"])
    assert abs(auc - joined) < 0.005, (auc, joined)
    assert auc > alone + 0.04, (auc, alone)


def test_he_lr_follows_plaintext_sgd_with_exact_sigmoid(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 5)) * [1, 3, 0.5, 1, 2]
    y = (X @ [1.0, -0.3, 2.0, 0.0, 0.5] + rng.normal(size=300) > 0).astype(int)
    blocks = {"bank": X[:, :2], "shop": X[:, 2:4], "telco": X[:, 4:]}
    params = dict(
        epochs=2, batch_size=64, learning_rate=1.0, l2=0.01, key_bits=1024, random_state=5
    )

    def party(session: Any) -> Any:
        model = HELogisticRegression(**params)
        model.fit(session, blocks[session.party], y if session.party == "bank" else None)
        model.save(tmp_path / f"{session.party}.json")
        return model.coef_, model.intercept_, model.predict(session, blocks[session.party])

    out = run_in_threads(party, ["bank", "shop", "telco"])
    Xs = (X - X.mean(0)) / X.std(0)
    seed = hashlib.sha256(b"sharedml.linear/5").digest()[:16]
    w, b = plaintext_sgd(
        Xs,
        y.astype(float),
        task="classification",
        epochs=2,
        batch_size=64,
        eta0=1.0,
        schedule="cosine",
        l2=0.01,
        sigmoid_approx="exact",
        seed=seed,
    )
    got = np.concatenate([out["bank"][0], out["shop"][0], out["telco"][0]])
    np.testing.assert_allclose(got, w, atol=1e-3)
    assert out["bank"][1] == pytest.approx(b, abs=1e-3)
    np.testing.assert_allclose(out["bank"][2], 1 / (1 + np.exp(-(Xs @ w + b))), atol=1e-3)
    assert out["shop"][2] is None and out["telco"][2] is None

    # the key pair is not kept: the saved parts hold coefficients and scalers only
    for party_name in ("bank", "shop", "telco"):
        text = (tmp_path / f"{party_name}.json").read_text()
        assert '"model_type": "HELogisticRegression"' in text and "public" not in text

    def reload(session: Any) -> Any:
        model = HELogisticRegression.load(tmp_path / f"{session.party}.json")
        return model.predict(session, blocks[session.party])

    again = run_in_threads(reload, ["bank", "shop", "telco"])
    np.testing.assert_allclose(again["bank"], out["bank"][2], atol=1e-12)
