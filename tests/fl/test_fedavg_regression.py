"""FedAvg linear regression: the student set's rows dealt to three parties, against
scikit-learn's least squares on the union (8.4-1).

The columns are standardised with the pooled mean and deviation first (what the
horizontal ``scale`` step computes by secure sums). The motor set is not used:
its columns are nearly collinear (condition number 71) and SGD of any kind
stays 1-5% above the least-squares RMSE there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from sharedml.fl.fedavg import FedAvgParams
from sharedml.fl.linear import LinearLearner

from .fl_world import Part, run_fedavg


def _student_rows(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The vertical student files joined on ``id``: every column, every row."""
    guest = pd.read_csv(folder / "student_hetero_guest.csv")
    host = pd.read_csv(folder / "student_hetero_host.csv")
    joined = guest.merge(host, on="id").sort_values("id")
    y = joined.pop("y").to_numpy(np.float64)
    X = joined.drop(columns="id").to_numpy(np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


@pytest.mark.slow
def test_fedavg_linear_regression_matches_least_squares(shared_data: Path) -> None:
    X, y = _student_rows(shared_data)
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:80], order[80:]
    banks = {}
    for i, rows in enumerate(np.array_split(train, 3)):
        cut = len(rows) // 10
        banks[f"bank{i}"] = Part(X[rows[cut:]], y[rows[cut:]], X[rows[:cut]], y[rows[:cut]])
    params = FedAvgParams(
        rounds=40, local_epochs=2, learning_rate=0.05, batch_size=16, metric="rmse"
    )
    result, _ = run_fedavg(banks, lambda _: LinearLearner(task="regression"), params)
    X_train = np.vstack([b.X for b in banks.values()])
    y_train = np.concatenate([b.y for b in banks.values()])
    central = LinearRegression().fit(X_train, y_train)
    rmse_central = np.sqrt(mean_squared_error(y[test], central.predict(X[test])))
    pred = LinearLearner(task="regression").predict(result.params, X[test])
    rmse_fed = np.sqrt(mean_squared_error(y[test], pred))
    assert abs(rmse_fed - rmse_central) <= 0.01 * rmse_central, (rmse_fed, rmse_central)
    # the validation RMSE the server read from secure sums is the pooled one
    X_val = np.vstack([b.X_val for b in banks.values()])
    y_val = np.concatenate([b.y_val for b in banks.values()])
    pooled = np.sqrt(
        np.mean((LinearLearner("regression").predict(result.params, X_val) - y_val) ** 2)
    )
    assert result.history[-1]["metrics"]["rmse"] == pytest.approx(pooled, rel=1e-9)
