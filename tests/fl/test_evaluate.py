"""Horizontal evaluation by secure sums: the pooled metrics, without pooling predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from sharedml.errors import DataError
from sharedml.fl.evaluate import evaluate_as_client, evaluate_as_server
from sharedml.fl.secagg import SecAggConfig
from sharedml.session import Session
from sharedml.standalone.threads import run_in_threads

from .fl_world import SERVER, load, union

BANKS = ("guest", "host_1", "host_2")


@pytest.mark.slow
def test_each_bank_scores_its_own_rows_and_the_metrics_are_the_pooled_ones(
    shared_data: Path,
) -> None:
    parts, X_test, y_test = load(shared_data, "default_credit")
    model = LogisticRegression(max_iter=2000).fit(*union(parts))
    rows = np.array_split(np.random.default_rng(0).permutation(len(y_test)), 3)
    own = {
        bank: (y_test[r], model.predict_proba(X_test[r])[:, 1])
        for bank, r in zip(BANKS, rows, strict=True)
    }
    cfg = SecAggConfig.for_dropouts(SERVER, BANKS, 0)

    def server(s: Session) -> Any:
        return evaluate_as_server(s, cfg, "classification")

    def client(s: Session) -> Any:
        return evaluate_as_client(s, cfg, "classification", *own[s.party])

    out = run_in_threads({SERVER: server, **dict.fromkeys(BANKS, client)}, [SERVER, *BANKS])
    got = out[SERVER]
    pooled = model.predict_proba(X_test)[:, 1]
    assert abs(got["auc"] - skm.roc_auc_score(y_test, pooled)) <= got["auc_bound"]
    assert got["logloss"] == pytest.approx(skm.log_loss(y_test, pooled), rel=1e-9)
    assert got["rows"] == len(y_test) and got["parties"] == 3
    for bank in BANKS:  # every bank received the same figures
        assert out[bank] == pytest.approx(got)


def test_a_bank_with_bad_scores_fails_naming_itself() -> None:
    from sharedml.transport.local import LocalHub

    hub = LocalHub([SERVER, "a", "b"])
    s = Session("a", (SERVER, "a", "b"), hub.channel("a"))
    cfg = SecAggConfig(SERVER, ("a", "b"), threshold=2)
    with pytest.raises(DataError, match=r"probabilities.*'a'"):
        evaluate_as_client(s, cfg, "classification", np.array([0, 1]), np.array([0.2, 1.7]))
