"""Softmax outputs: the MLPs on a three-class label against scikit-learn's
MLPClassifier (softmax, cross-entropy) from the same starting weights on the
same batches (8.4-1). Data: scikit-learn's bundled wine set (178 rows, 13
columns), split vertically — the guest holds the label and 7 columns, the
host the other 6."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlp_oracle import public_seed, sklearn_mlp, split_layers, standardised
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from tests.learn.conftest import Vertical

from sharedml.errors import DataError
from sharedml.learn import metrics
from sharedml.learn.nn import SplitMLPClassifier, SSMLPClassifier
from sharedml.learn.nn._core import init_layers
from sharedml.standalone import PartyFailed

SEED = b"softmax mlp test"
CLASSES = 3


@pytest.fixture(scope="module")
def wine() -> Any:
    X, y = load_wine(return_X_y=True, as_frame=True)
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
    guest, host = list(X.columns[:7]), list(X.columns[7:])

    def part(rows: np.ndarray, cols: list[str]) -> pd.DataFrame:
        return X.iloc[rows][cols].reset_index(drop=True)

    return Vertical(
        train={"guest": part(train, guest), "host": part(train, host)},
        test={"guest": part(test, guest), "host": part(test, host)},
        y_train=y.to_numpy()[train],
        y_test=y.to_numpy()[test],
    )


def _reference(data: Any, params: dict[str, Any]) -> np.ndarray:
    X, Xt = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    widths = {p: data.train[p].shape[1] for p in ("guest", "host")}
    clf = sklearn_mlp(
        X,
        data.y_train,
        split_layers(SEED, widths, params["interactive_size"], out=CLASSES),
        seed=public_seed(params["random_state"]),
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
    )
    return clf.predict_proba(Xt)


def test_split_mlp_softmax_matches_sklearn_on_wine(wine: Any, run: Callable) -> None:
    params = dict(
        n_classes=CLASSES,
        interactive_size=8,
        epochs=4,
        batch_size=32,
        learning_rate=0.1,
        l2=0.0,
        random_state=4,
    )
    out = run(lambda: SplitMLPClassifier(**params), wine, dealer_runs=2, seed=SEED)
    assert out["host"] is None
    proba, reference = out["guest"], _reference(wine, params)
    assert proba.shape == (len(wine.y_test), CLASSES)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    # fixed point (f = 16) in the interactive layer's updates only: close, not equal
    np.testing.assert_allclose(proba, reference, atol=2e-3)
    assert metrics.accuracy(wine.y_test, proba) == metrics.accuracy(wine.y_test, reference)
    assert metrics.accuracy(wine.y_test, proba) > 0.8  # and it learned something


def test_ss_mlp_softmax_matches_sklearn_on_wine(wine: Any, run: Callable) -> None:
    params = dict(
        n_classes=CLASSES,
        hidden_layer_sizes=[8],
        epochs=4,
        batch_size=32,
        learning_rate=0.1,
        l2=0.0,
        random_state=5,
    )
    out = run(lambda: SSMLPClassifier(**params), wine, dealer_runs=2)
    assert out["host"] is None
    X, Xt = standardised(wine.joined("train").to_numpy(), wine.joined("test").to_numpy())
    seed = public_seed(5)
    layers = init_layers(seed, "ss", [X.shape[1], 8, CLASSES])
    clf = sklearn_mlp(
        X, wine.y_train, layers, seed=seed, epochs=4, batch_size=32, learning_rate=0.1
    )
    proba, reference = out["guest"], clf.predict_proba(Xt)
    assert proba.shape == reference.shape == (len(wine.y_test), CLASSES)
    # the training softmax on shares: exp and 1/x each within 1e-3 relative
    # (mpc.nonlinear's table), over 24 steps (8e-5 seen); the output softmax at L is exact
    np.testing.assert_allclose(proba, reference, atol=2e-3)
    rows = len(wine.y_test)
    gap = abs(metrics.accuracy(wine.y_test, proba) - metrics.accuracy(wine.y_test, reference))
    assert gap <= 1 / rows + 1e-12  # at most one borderline row decided otherwise


def test_labels_outside_the_classes_are_refused_naming_the_label_holder(
    wine: Any, run: Callable
) -> None:
    y = np.where(wine.y_train == 2, 3, wine.y_train)
    bad = Vertical(wine.train, wine.test, y, wine.y_test)
    with pytest.raises(PartyFailed) as info:
        run(lambda: SplitMLPClassifier(n_classes=CLASSES, epochs=1), bad)
    error = info.value.error
    assert isinstance(error, DataError) and "integers 0 to 2" in str(error)
    assert error.party == "guest"  # every party raises it, naming the label holder
