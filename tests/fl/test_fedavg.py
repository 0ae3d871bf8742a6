"""FedAvg and FedProx for logistic regression over secure aggregation, on the horizontal
reference sets: parity with scikit-learn on the union (8.4-1), bad clients excluded (8.3-2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sharedml.fl.fedavg import FedAvgParams
from sharedml.fl.learner import LocalPlan
from sharedml.fl.linear import LinearLearner

from .fl_world import Part, load, run_fedavg, union

PARAMS = FedAvgParams(rounds=10, local_epochs=1, batch_size=64, learning_rate=0.1)


def sklearn_auc(parts: dict[str, Part], X_test: np.ndarray, y_test: np.ndarray) -> float:
    X, y = union(parts)
    model = LogisticRegression(max_iter=2000).fit(X, y)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))


def fed_auc(params: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> float:
    return float(roc_auc_score(y_test, LinearLearner().predict(params, X_test)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default_credit", "breast"])
def test_fedavg_lr_matches_sklearn_on_the_union(shared_data: Path, name: str) -> None:
    parts, X_test, y_test = load(shared_data, name)
    result, finals = run_fedavg(parts, lambda _: LinearLearner(), PARAMS)
    for w in finals.values():  # every client ends with the server's model
        np.testing.assert_array_equal(w, result.params)
    fed, central = fed_auc(result.params, X_test, y_test), sklearn_auc(parts, X_test, y_test)
    assert abs(fed - central) <= 0.005, (fed, central)
    rec = result.history[-1]
    assert rec["survivors"] == list(parts) and rec["excluded"] == {}
    # the validation AUC the server read from secure sums is the pooled one
    X_val = np.vstack([p.X_val for p in parts.values()])
    y_val = np.concatenate([p.y_val for p in parts.values()])
    best = result.history[result.best_round]["metrics"]
    pooled = roc_auc_score(y_val, LinearLearner().predict(result.params, X_val))
    assert abs(best["auc"] - pooled) <= best["auc_bound"] + 1e-12


@pytest.mark.slow
def test_fedprox_stays_in_parity(shared_data: Path) -> None:
    parts, X_test, y_test = load(shared_data, "default_credit")
    params = FedAvgParams(rounds=10, learning_rate=0.1, prox_mu=0.1, local_epochs=2)
    result, _ = run_fedavg(parts, lambda _: LinearLearner(), params)
    central = sklearn_auc(parts, X_test, y_test)
    assert abs(fed_auc(result.params, X_test, y_test) - central) <= 0.005


@pytest.mark.slow
def test_a_client_whose_update_is_nan_is_excluded_and_training_goes_on(shared_data: Path) -> None:
    parts, X_test, y_test = load(shared_data, "default_credit")
    bad = "host_2"

    class Once(LinearLearner):
        rounds = 0

        def train(
            self, params: np.ndarray, X: np.ndarray, y: np.ndarray, plan: LocalPlan
        ) -> np.ndarray:
            Once.rounds += 1
            out = super().train(params, X, y, plan)
            return out * np.nan if Once.rounds == 2 else out

    learners = {bad: Once()}
    result, _ = run_fedavg(
        parts,
        lambda party: learners.get(party, LinearLearner()),
        FedAvgParams(rounds=4, learning_rate=0.1),
        max_dropouts=1,
    )
    excluded = [r["excluded"] for r in result.history]
    assert excluded[1] == {bad: "excluded: abstained: the update holds NaN"}
    assert all(e == {} for i, e in enumerate(excluded) if i != 1)
    assert result.history[1]["survivors"] == ["guest", "host_1"]
    assert fed_auc(result.params, X_test, y_test) > 0.7


@pytest.mark.slow
def test_uneven_split_one_small_party_with_a_skewed_label_rate(shared_data: Path) -> None:
    """One party holds 10% of the rows at a 50% default rate (the others ~17%).

    What happens: sample-count weighting gives the small party a tenth of the
    say, so FedAvg still lands within 0.005 AUC of scikit-learn on the same
    union; the validation metrics the server reads are the pooled ones.
    """
    parts, X_test, y_test = load(shared_data, "default_credit")
    X, y = union(parts)
    rng = np.random.default_rng(7)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    small = np.concatenate(
        [rng.choice(pos, 1080, replace=False), rng.choice(neg, 1080, replace=False)]
    )
    rest = np.setdiff1d(np.arange(len(y)), small)
    rng.shuffle(small)
    rng.shuffle(rest)
    halves = np.array_split(rest, 2)
    uneven = {}
    for name, rows in (("small", small), ("big_1", halves[0]), ("big_2", halves[1])):
        cut = len(rows) // 10
        uneven[name] = Part(X[rows[cut:]], y[rows[cut:]], X[rows[:cut]], y[rows[:cut]])
    assert abs(uneven["small"].y.mean() - 0.5) < 0.01 and uneven["big_1"].y.mean() < 0.2
    result, _ = run_fedavg(uneven, lambda _: LinearLearner(), PARAMS)
    central = sklearn_auc(uneven, X_test, y_test)
    assert abs(fed_auc(result.params, X_test, y_test) - central) <= 0.005


def _five_banks(parts: dict[str, Part]) -> dict[str, Part]:
    X, y = union(parts)
    X_val = np.vstack([p.X_val for p in parts.values()])
    y_val = np.concatenate([p.y_val for p in parts.values()])
    rows, val = np.array_split(np.arange(len(y)), 5), np.array_split(np.arange(len(y_val)), 5)
    return {
        f"bank{i}": Part(X[r], y[r], X_val[v], y_val[v])
        for i, (r, v) in enumerate(zip(rows, val, strict=True))
    }


@pytest.mark.slow
def test_client_sampling_draws_a_public_subset_each_round(shared_data: Path) -> None:
    parts, X_test, y_test = load(shared_data, "breast")
    banks = _five_banks(parts)
    params = FedAvgParams(rounds=6, learning_rate=0.1, client_fraction=0.6, batch_size=16)
    result, _ = run_fedavg(banks, lambda _: LinearLearner(), params, max_dropouts=2)
    chosen = [tuple(r["participants"]) for r in result.history]
    for picked, record in zip(chosen, result.history, strict=True):
        assert len(picked) == 3 and record["survivors"] == list(picked)
    assert len(set(chosen)) > 1  # the draw changes from round to round
    assert fed_auc(result.params, X_test, y_test) > 0.95


@pytest.mark.slow
def test_early_stopping_keeps_the_best_round(shared_data: Path) -> None:
    parts, _, _ = load(shared_data, "default_credit")
    params = FedAvgParams(rounds=30, learning_rate=0.5, patience=2, metric="logloss")
    result, _ = run_fedavg(parts, lambda _: LinearLearner(), params)
    losses = [r["metrics"]["logloss"] for r in result.history]
    assert len(losses) < 30  # it stopped
    assert result.best_round == int(np.argmin(losses))
    assert len(losses) - 1 - result.best_round == 2  # two rounds without improvement


def test_a_client_with_nan_in_its_rows_fails_before_sending_anything() -> None:
    from sharedml.errors import DataError
    from sharedml.fl.fedavg import FedAvgClient, FedAvgSetup
    from sharedml.fl.secagg import SecAggConfig
    from sharedml.session import Session
    from sharedml.transport.local import LocalHub

    hub = LocalHub(["agg", "bank0", "bank1"])
    session = Session("bank0", ("agg", "bank0", "bank1"), hub.channel("bank0"))
    cfg = SecAggConfig("agg", ("bank0", "bank1"), threshold=2)
    client = FedAvgClient(session, FedAvgSetup(LinearLearner(), PARAMS, cfg))
    X = np.ones((4, 2))
    X[2, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinity in 1 rows.*bank0"):
        client.fit(X, np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="bank0"):
        client.fit(np.ones((4, 2)), np.array([0, 1, 0]))
    assert hub.mailboxes["agg"].pending() == 0
