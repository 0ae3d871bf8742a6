"""Federated histogram boosting on the horizontal reference sets: parity with XGBoost on
the union with the same trees, depth, bins and learning rate (8.4-1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from sharedml.fl.gbdt import GbdtParams
from sharedml.fl.gbdt_model import GbdtModel

from .fl_world import Part, load, run_gbdt, union

PARAMS = GbdtParams(n_trees=30, max_depth=3, n_bins=32, learning_rate=0.3)


def xgb_auc(parts: dict[str, Part], X_test: np.ndarray, y_test: np.ndarray) -> float:
    X, y = union(parts)
    model = xgb.XGBClassifier(
        n_estimators=PARAMS.n_trees, max_depth=PARAMS.max_depth, max_bin=PARAMS.n_bins,
        learning_rate=PARAMS.learning_rate, tree_method="hist", n_jobs=1,
    )  # fmt: skip
    model.fit(X, y)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default_credit", "breast"])
def test_federated_trees_match_xgboost_on_the_union(shared_data: Path, name: str) -> None:
    parts, X_test, y_test = load(shared_data, name, val=0.0)
    model, finals = run_gbdt(parts, PARAMS)
    for m in finals.values():  # every party holds the same model
        assert m.to_dict() == model.to_dict()
    fed = roc_auc_score(y_test, model.predict(X_test))
    central = xgb_auc(parts, X_test, y_test)
    assert abs(fed - central) <= 0.01, (fed, central)
    assert len(model.trees) == PARAMS.n_trees


@pytest.mark.slow
def test_declared_edges_are_used_as_given_and_the_model_round_trips(shared_data: Path) -> None:
    parts, X_test, _ = load(shared_data, "breast", val=0.0)
    X, _ = union(parts)
    declared = [np.unique(np.quantile(col, np.linspace(0, 1, 9)[1:-1])) for col in X.T]
    params = GbdtParams(n_trees=5, max_depth=2, n_bins=8)
    model, _ = run_gbdt(parts, params, edges=declared)
    assert all(np.array_equal(a, b) for a, b in zip(model.edges, declared, strict=True))
    used = {(t.feature[i], t.threshold[i]) for t in model.trees for i in range(len(t.value))
            if t.left[i] >= 0}  # fmt: skip
    assert used and all(thr in declared[f] for f, thr in used)
    again = GbdtModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.predict(X_test), model.predict(X_test))


@pytest.mark.slow
def test_a_bank_that_leaves_after_the_first_tree_is_counted_out(shared_data: Path) -> None:
    """It stops answering; every later secure sum goes on with the two others."""
    parts, X_test, y_test = load(shared_data, "default_credit", val=0.0)
    params = GbdtParams(n_trees=3, max_depth=2, n_bins=16)
    early = GbdtParams(n_trees=1, max_depth=2, n_bins=16)
    excluded: list[dict[str, object]] = []
    model, finals = run_gbdt(
        parts, params, max_dropouts=1, stage_timeout=2.0, input_timeout=2.0,
        client_params={"host_2": early}, excluded=excluded,
    )  # fmt: skip
    assert len(model.trees) == 3 and len(finals["host_2"].trees) == 1
    assert excluded and all("host_2" in e and "dropped" in str(e["host_2"]) for e in excluded)
    assert finals["guest"].to_dict() == model.to_dict()
    assert roc_auc_score(y_test, model.predict(X_test)) > 0.7
