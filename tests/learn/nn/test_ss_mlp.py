"""The secret-shared MLP against scikit-learn's MLPClassifier run from the
same starting weights on the same batches (8.4-1), and its parameter rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlp_oracle import public_seed, sklearn_mlp, standardised

from sharedml.errors import ConfigError, NotFittedError
from sharedml.learn import metrics
from sharedml.learn.nn import SSMLPClassifier
from sharedml.learn.nn._core import Dense, MLPConfig, init_layers, plaintext_mlp
from sharedml.standalone import run_in_threads


def _reference_auc(
    data: Any, *, random_state: int, epochs: int, batch_size: int, lr: float
) -> float:
    X, Xt = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    seed = public_seed(random_state)
    layers = init_layers(seed, "ss", [X.shape[1], 32, 1])
    clf = sklearn_mlp(
        X, data.y_train, layers, seed=seed, epochs=epochs, batch_size=batch_size, learning_rate=lr
    )
    return metrics.roc_auc(data.y_test, clf.predict_proba(Xt)[:, 1])


def test_the_plaintext_oracle_is_sklearns_mlp(vertical: Callable) -> None:
    """Our plaintext network (exact sigmoid) follows MLPClassifier step for step,
    so the other tests may compare shared models with it."""
    data = vertical("breast")
    X, _ = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    seed = public_seed(7)
    layers = init_layers(seed, "ss", [X.shape[1], 16, 8, 1])
    clf = sklearn_mlp(
        X, data.y_train, layers, seed=seed, epochs=3, batch_size=64, learning_rate=0.2
    )
    net = Dense([[W.copy(), b.copy()] for W, b in layers], "relu", linear_out=True)
    cfg = MLPConfig(epochs=3, batch_size=64, learning_rate=0.2, sigmoid="exact", seed=seed)
    plaintext_mlp(X, data.y_train.astype(float), net, cfg)
    for ours, coef in zip(net.params[0::2], clf.coefs_, strict=True):
        np.testing.assert_allclose(ours, coef, atol=1e-10)
    for ours, icpt in zip(net.params[1::2], clf.intercepts_, strict=True):
        np.testing.assert_allclose(ours, icpt, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        pytest.param(
            "default_credit",
            dict(epochs=2, batch_size=1024, learning_rate=1.0, random_state=42),
            marks=pytest.mark.slow,
        ),
        ("breast", dict(epochs=4, batch_size=64, learning_rate=0.1, random_state=3)),
    ],
)
def test_ss_mlp_matches_sklearn(vertical: Callable, run: Callable, name: str, params: Any) -> None:
    data = vertical(name)
    out = run(lambda: SSMLPClassifier(l2=0.0, **params), data, dealer_runs=2)
    auc = metrics.roc_auc(data.y_test, out["guest"])
    reference = _reference_auc(
        data,
        random_state=params["random_state"],
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        lr=params["learning_rate"],
    )
    assert out["host"] is None
    assert abs(auc - reference) < 0.01, (auc, reference)
    if name == "default_credit":
        # an MLP on both parties' columns beats the best linear model (0.7135, data README)
        assert reference > 0.72


def test_adam_on_shares_follows_plaintext_adam(vertical: Callable, run: Callable) -> None:
    """Adam's division and square root in MPC give the plaintext Adam's weights
    (same clipping and cap) to fixed-point error."""
    data = vertical("breast")
    kept: dict[str, Any] = {}
    params = dict(
        optimizer="adam",
        epochs=2,
        batch_size=64,
        learning_rate=0.01,
        l2=1e-3,
        random_state=5,
        reveal_weights="own",
    )
    run(lambda: SSMLPClassifier(**params), data, keep=kept)
    X, _ = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    seed = public_seed(5)
    net = Dense(init_layers(seed, "ss", [X.shape[1], 32, 1]), "relu", linear_out=True)
    cfg = MLPConfig(
        optimizer="adam", epochs=2, batch_size=64, learning_rate=0.01, l2=1e-3, seed=seed
    )
    plaintext_mlp(X, data.y_train.astype(float), net, cfg)
    guest, host = kept["guest"].layers_, kept["host"].layers_
    n_guest = data.train["guest"].shape[1]
    W1 = np.vstack([guest[0][:n_guest], host[0]])
    np.testing.assert_allclose(W1, net.params[0], atol=0.01)
    np.testing.assert_allclose(guest[0][n_guest], net.params[1], atol=0.01)  # b1
    np.testing.assert_allclose(guest[1], net.params[2], atol=0.01)
    assert len(host) == 1  # the host receives its rows of W1 and nothing else


def test_released_and_shared_weights_predict_alike_and_survive_save_load(
    vertical: Callable, run: Callable, tmp_path: Path
) -> None:
    data = vertical("breast")
    params = dict(epochs=2, batch_size=64, random_state=2, hidden_layer_sizes=[8, 4])
    own_kept: dict[str, Any] = {}
    own = run(lambda: SSMLPClassifier(reveal_weights="own", **params), data, keep=own_kept)
    kept: dict[str, Any] = {}
    shared = run(lambda: SSMLPClassifier(**params), data, keep=kept, dealer_runs=2)
    X, Xt = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    seed = public_seed(2)
    net = Dense(init_layers(seed, "ss", [X.shape[1], 8, 4, 1]), "relu", linear_out=True)
    plaintext_mlp(
        X, data.y_train.astype(float), net, MLPConfig(epochs=2, batch_size=64, l2=1e-4, seed=seed)
    )
    expected = 1 / (1 + np.exp(-net.forward(Xt).ravel()))
    # two trainings, each with its own fixed-point rounding (one ulp, 1.5e-5, per
    # truncation; about 1e-4 after 12 steps here)
    np.testing.assert_allclose(own["guest"], expected, atol=1e-3)
    np.testing.assert_allclose(shared["guest"], expected, atol=1e-3)
    for party, model in kept.items():
        assert model.layers_ is None and model.w_shares_ is not None
        model.save(tmp_path / f"{party}.json")
    assert own_kept["host"].layers_[0].shape == (data.train["host"].shape[1], 8)

    def reload(session: Any) -> Any:
        model = SSMLPClassifier.load(tmp_path / f"{session.party}.json")
        return model.predict(session, data.test[session.party])

    from sharedml.mpc import serve_dealer

    again = run_in_threads(
        {"guest": reload, "host": reload, "dealer": serve_dealer},
        ["guest", "host", "dealer"],
        dealer="dealer",
    )
    np.testing.assert_allclose(again["guest"], shared["guest"], atol=1e-3)  # one fixed-point pass
    assert again["host"] is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"activation": "tanh"}, "activation"),
        ({"hidden_layer_sizes": [0]}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": "32"}, "hidden_layer_sizes"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"optimizer": "adam", "adam_epsilon": 1e-8}, "adam_epsilon"),
        ({"reveal_weights": "all"}, "reveal_weights"),
    ],
)
def test_bad_parameters_are_config_errors(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SSMLPClassifier(**change)._check_params()


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        SSMLPClassifier().predict(None, np.zeros((2, 2)))  # type: ignore[arg-type]
