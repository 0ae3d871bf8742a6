"""The MLP regressors (squared error) against the plaintext network from the
same start on the same batches, on the motor data (8.4-1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from mlp_oracle import public_seed, split_layers, standardised

from sharedml.learn import metrics
from sharedml.learn.nn import SplitMLPRegressor, SSMLPRegressor
from sharedml.learn.nn._core import Dense, MLPConfig, init_layers, plaintext_mlp

PARAMS = dict(epochs=4, batch_size=32, learning_rate=0.05, l2=0.0, random_state=6)
SEED = b"regression tests"


def _plaintext_rmse(data: Any, layers: list[list[np.ndarray]]) -> float:
    X, Xt = standardised(data.joined("train").to_numpy(), data.joined("test").to_numpy())
    mean, scale = data.y_train.mean(), data.y_train.std()
    net = Dense(layers, "relu", linear_out=True)
    cfg = MLPConfig(
        task="regression", epochs=4, batch_size=32, learning_rate=0.05, seed=public_seed(6)
    )
    plaintext_mlp(X, (data.y_train - mean) / scale, net, cfg)
    return metrics.rmse(data.y_test, net.forward(Xt).ravel() * scale + mean)


def _motor(vertical: Callable) -> Any:
    return vertical("motor", id_col="idx", label="motor_speed", classify=False)


def test_ss_mlp_regressor_follows_the_plaintext_network(vertical: Callable, run: Callable) -> None:
    data = _motor(vertical)
    out = run(lambda: SSMLPRegressor(**PARAMS), data, dealer_runs=2)
    width = data.joined("train").shape[1]
    reference = _plaintext_rmse(data, init_layers(public_seed(6), "ss", [width, 32, 1]))
    rmse = metrics.rmse(data.y_test, out["guest"])
    assert abs(rmse - reference) <= 0.01 * reference, (rmse, reference)
    assert rmse < 0.5 * data.y_test.std()  # it learned something


def test_split_mlp_regressor_follows_the_plaintext_network(
    vertical: Callable, run: Callable
) -> None:
    data = _motor(vertical)
    out = run(lambda: SplitMLPRegressor(**PARAMS), data, dealer_runs=2, seed=SEED)
    widths = {p: data.train[p].shape[1] for p in ("guest", "host")}
    reference = _plaintext_rmse(data, split_layers(SEED, widths, 32))
    rmse = metrics.rmse(data.y_test, out["guest"])
    assert abs(rmse - reference) <= 0.01 * reference, (rmse, reference)
