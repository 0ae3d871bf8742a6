"""FedAvg over gRPC processes with mutual TLS: a bank that disconnects mid-training is
counted out at once and not invited again; the others finish the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sharedml.fl.fedavg import FedAvgClient, FedAvgParams, FedAvgServer, FedAvgSetup
from sharedml.fl.linear import LinearLearner
from sharedml.fl.secagg import SecAggConfig
from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes

from .fl_world import SERVER, load

BANKS = ("guest", "host_1", "host_2")
PARAMS = FedAvgParams(rounds=5, learning_rate=0.1)
CFG = SecAggConfig.for_dropouts(SERVER, BANKS, 1, stage_timeout=60.0, input_timeout=120.0)


class _Gone(Exception):
    pass


class _Leaves(FedAvgClient):
    """Disconnects when asked to train in round 2, as a crashed bank would."""

    def _train(self, r: int, w: np.ndarray, lr: float, X: np.ndarray, y: np.ndarray) -> None:
        if r == 2:
            self.s.channel.close()
            raise _Gone
        super()._train(r, w, lr, X, y)


class _Party:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, session: Session) -> Any:
        setup = FedAvgSetup(LinearLearner(), PARAMS, CFG)
        if session.party == SERVER:
            res = FedAvgServer(session, setup).fit(23)
            return res.params, res.history
        part = load(Path(self.folder), "default_credit")[0][session.party]
        cls = _Leaves if session.party == "host_2" else FedAvgClient
        try:
            return cls(session, setup).fit(part.X, part.y, part.X_val, part.y_val)
        except _Gone:
            return None


@pytest.mark.slow
def test_a_bank_that_disconnects_is_counted_out_and_not_invited_again(shared_data: Path) -> None:
    out = run_in_processes(_Party(str(shared_data)), [SERVER, *BANKS], timeout=120)
    params, history = out[SERVER]
    assert len(history) == PARAMS.rounds
    assert [r["participants"] for r in history[:3]] == [list(BANKS)] * 3
    assert "disconnected" in history[2]["excluded"]["host_2"]
    assert all(r["participants"] == ["guest", "host_1"] for r in history[3:])
    assert all(r["excluded"] == {} for r in history[3:])
    assert out["host_2"] is None
    np.testing.assert_array_equal(out["guest"], params)
    _, X_test, y_test = load(shared_data, "default_credit")
    assert roc_auc_score(y_test, LinearLearner().predict(params, X_test)) > 0.72
