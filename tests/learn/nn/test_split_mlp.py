"""The split MLP against scikit-learn's MLPClassifier from the same starting
weights on the same batches (8.4-1), with bottom nets against a plaintext
split network, and its label DP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlp_oracle import party_seed, public_seed, sklearn_mlp, split_layers, standardised

from sharedml.errors import ConfigError
from sharedml.learn import metrics
from sharedml.learn.nn import SplitMLPClassifier, dp
from sharedml.learn.nn._core import Dense, init_layers
from sharedml.standalone import run_in_threads

SEED = b"split mlp tests!"


def _parity(data: Any, run: Callable, **params: Any) -> tuple[float, float]:
    out = run(
        lambda: SplitMLPClassifier(l2=0.0, random_state=4, **params), data, dealer_runs=2, seed=SEED
    )
    X, Xt = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    widths = {p: data.train[p].shape[1] for p in ("guest", "host")}
    clf = sklearn_mlp(
        X,
        data.y_train,
        split_layers(SEED, widths, 32),
        seed=public_seed(4),
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
    )
    assert out["host"] is None
    return metrics.roc_auc(data.y_test, out["guest"]), metrics.roc_auc(
        data.y_test, clf.predict_proba(Xt)[:, 1]
    )


@pytest.mark.slow
def test_split_mlp_matches_sklearn_on_default_credit(vertical: Callable, run: Callable) -> None:
    auc, reference = _parity(
        vertical("default_credit"), run, epochs=2, batch_size=1024, learning_rate=1.0
    )
    assert abs(auc - reference) < 0.01, (auc, reference)


def test_split_mlp_matches_sklearn_on_breast(vertical: Callable, run: Callable) -> None:
    auc, reference = _parity(vertical("breast"), run, epochs=3, batch_size=64, learning_rate=0.1)
    assert abs(auc - reference) < 0.01, (auc, reference)


def _plaintext_split(data: Any, params: dict[str, Any]) -> np.ndarray:
    """The same split network trained in plaintext on the joined rows: the
    test's own loop (bottoms, interactive layer, top), plain SGD."""
    n_b, size, lr = (
        params["bottom_layer_sizes"],
        params["interactive_size"],
        params["learning_rate"],
    )
    parts = {
        p: standardised(data.train[p].to_numpy(), data.test[p].to_numpy())
        for p in ("guest", "host")
    }
    bottoms = {
        p: Dense(
            init_layers(party_seed(SEED, p), "split/bottom", [parts[p][0].shape[1], *n_b]), "relu"
        )
        for p in parts
    }
    W = {
        p: init_layers(party_seed(SEED, p), "split/interactive", [n_b[-1], size])[0][0]
        for p in parts
    }
    c = np.zeros(size)
    top = Dense(
        init_layers(party_seed(SEED, "guest"), "split/top", [size, *params["top_layer_sizes"], 1]),
        "relu",
        linear_out=True,
    )
    from sharedml.learn.linear._core import batch_plan, sigmoid

    def interactive(X: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h = {p: bottoms[p].forward(X[p]) for p in parts}
        return h, sum(h[p] @ W[p] for p in parts) + c

    y = data.y_train.astype(float)
    for epoch in range(params["epochs"]):
        for idx in batch_plan(len(y), params["batch_size"], public_seed(4), epoch):
            h, u = interactive({p: parts[p][0][idx] for p in parts})
            a = np.maximum(u, 0)
            z = top.forward(a)
            grads, da = top.backward(sigmoid(z) - y[idx, None])
            du = da * (u > 0)
            for p_, g in zip(top.params, grads, strict=True):
                p_ -= lr / len(idx) * g
            for p in parts:
                gb, _ = bottoms[p].backward(du @ W[p].T)
                for p_, g in zip(bottoms[p].params, gb, strict=True):
                    p_ -= lr / len(idx) * g
                W[p] -= lr / len(idx) * (h[p].T @ du)
            c -= lr / len(idx) * du.sum(0)
    _, u = interactive({p: parts[p][1] for p in parts})
    return 1 / (1 + np.exp(-top.forward(np.maximum(u, 0)).ravel()))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bottom_and_top_nets_follow_the_plaintext_split_network(
    vertical: Callable, run: Callable, tmp_path: Path, backend: str
) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    data = vertical("breast")
    params = dict(
        bottom_backend=backend,
        bottom_layer_sizes=[8],
        interactive_size=6,
        top_layer_sizes=[4],
        epochs=2,
        batch_size=64,
        learning_rate=0.2,
        l2=0.0,
        random_state=4,
    )
    kept: dict[str, Any] = {}
    out = run(lambda: SplitMLPClassifier(**params), data, keep=kept, dealer_runs=2, seed=SEED)
    np.testing.assert_allclose(out["guest"], _plaintext_split(data, params), atol=1e-3)
    want = "TorchDense" if backend == "torch" else "Dense"
    assert {type(m.bottom_).__name__ for m in kept.values()} == {want}
    # each party keeps its own bottom net; only the label holder has a top net
    assert kept["host"].top_ is None and kept["guest"].top_ is not None
    assert kept["host"].bottom_.layers[0][0].shape == (data.train["host"].shape[1], 8)
    for party, model in kept.items():
        model.save(tmp_path / f"{party}.json")

    def reload(session: Any) -> Any:
        return SplitMLPClassifier.load(tmp_path / f"{session.party}.json").predict(
            session, data.test[session.party]
        )

    from sharedml.mpc import serve_dealer

    again = run_in_threads(
        {"guest": reload, "host": reload, "dealer": serve_dealer},
        ["guest", "host", "dealer"],
        dealer="dealer",
    )
    np.testing.assert_allclose(again["guest"], out["guest"], atol=1e-9)


def test_label_dp_reports_epsilon_and_noises_what_leaves_the_label_holder(
    vertical: Callable, run: Callable
) -> None:
    data = vertical("breast")
    kept: dict[str, Any] = {}
    params = dict(
        epochs=3,
        batch_size=64,
        learning_rate=0.1,
        random_state=4,
        label_dp_noise=1.0,
        label_dp_clip=0.5,
    )
    out = run(lambda: SplitMLPClassifier(**params), data, keep=kept, dealer_runs=2, seed=SEED)
    eps = kept["guest"].label_dp_epsilon_
    assert eps == kept["host"].label_dp_epsilon_  # public: from public parameters
    # the Rényi bound of three Gaussian mechanisms (noise multiplier 1), at its best order
    alphas = np.linspace(1.01, 200, 20000)
    classic = np.min(3 * alphas / 2 + np.log(1e5) / (alphas - 1))
    assert 0.5 * classic < eps <= classic
    assert metrics.roc_auc(data.y_test, out["guest"]) > 0.9  # still a useful model


def test_label_noise_clips_rows_and_adds_the_stated_noise() -> None:
    du = np.vstack([np.full((5000, 4), 3.0), np.full((5000, 4), 0.01)])
    noisy = dp.LabelNoise(0.5, 1.0, np.random.default_rng(0))(du)
    # clipped to norm 1 (3.0 rows to 0.5 each), then N(0, (0.5 · 2 · 1)²)
    assert abs(noisy[:5000].mean() - 0.5) < 0.02 and abs(noisy[5000:].mean() - 0.01) < 0.02
    assert abs(noisy.std(axis=0).mean() - np.sqrt(1.0 + 0.06)) < 0.05


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bottom_layer_sizes": [0]}, "bottom_layer_sizes"),
        ({"interactive_size": 0}, "interactive_size"),
        ({"activation": "gelu"}, "activation"),
        ({"bottom_backend": "jax"}, "bottom_backend"),
        ({"label_dp_noise": -1.0}, "label_dp_noise"),
        ({"label_dp_delta": 1.5}, "label_dp_delta"),
        ({"optimizer": "adam", "beta2": 0.9999}, "beta"),
    ],
)
def test_bad_parameters_are_config_errors(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SplitMLPClassifier(**change)._check_params()


def test_importing_the_learners_and_the_job_steps_does_not_import_torch() -> None:
    """The linear path runs without the torch extra (and need not pay its
    import): torch is imported only when a split MLP's bottom net uses it."""
    import subprocess
    import sys

    code = (
        "import sys, sharedml.learn.linear, sharedml.learn.nn, sharedml.components.learn; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
