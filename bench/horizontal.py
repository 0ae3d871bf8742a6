"""Horizontal learning on default_credit_homo: seconds per round and test AUC beside
centralised training on the union, in the same run.

Three banks (``default_credit_homo_{guest,host_1,host_2}``, 8,000 rows each)
and an aggregator run as four OS processes over gRPC with mutual TLS
(``sharedml.standalone.processes.run_in_processes``); every sum is secure aggregation. Each
bank trains on its own rows; everyone is scored on
``default_credit_homo_test`` (6,000 rows) here, in the parent.

* **FedAvg LR** (numpy) beside scikit-learn's ``LogisticRegression`` on the
  union;
* **FedAvg MLP** 23→64→32→1 (torch) beside the same network trained by
  torch's own loop on the union from the same seed, as many passes over
  every row;
* **federated trees** (30 trees, depth 3, 32 bins, η 0.3) beside XGBoost
  ``hist`` with the same settings.

Seconds per round are the server's medians (a round: broadcast, local
training, secure sum of updates, secure sum of validation metrics); the
centralised figures are the whole fit. The machine is shared: the load is
printed. Run: ``.venv/bin/python bench/horizontal.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import DATA, report
from sharedml.fl.fedavg import FedAvgClient, FedAvgParams, FedAvgServer, FedAvgSetup
from sharedml.fl.gbdt import GbdtClient, GbdtParams, GbdtServer
from sharedml.fl.linear import LinearLearner
from sharedml.fl.secagg import SecAggConfig
from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes

BANKS = ("guest", "host_1", "host_2")
SERVER = "aggregator"
LR = FedAvgParams(rounds=10, local_epochs=1, batch_size=64, learning_rate=0.1)
MLP = FedAvgParams(rounds=15, local_epochs=2, batch_size=256, learning_rate=0.3)
TREES = GbdtParams(n_trees=30, max_depth=3, n_bins=32, learning_rate=0.3)


def _xy(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in df.columns if c.startswith("x")]
    return df[cols].to_numpy(np.float64), df["y"].to_numpy(np.float64)


def _bank(folder: str, bank: str) -> tuple[np.ndarray, ...]:
    X, y = _xy(pd.read_csv(Path(folder) / f"default_credit_homo_{bank}.csv"))
    order = np.random.default_rng(BANKS.index(bank)).permutation(len(y))
    cut = len(y) // 10  # a tenth held out for the round metrics
    return X[order[cut:]], y[order[cut:]], X[order[:cut]], y[order[:cut]]


def _learner(model: str) -> Any:
    if model == "mlp":
        import torch

        from sharedml.fl.mlp import MlpLearner, MlpSpec

        torch.set_num_threads(1)
        return MlpLearner(MlpSpec((64, 32)))
    return LinearLearner()


class Party:
    """One process's part (picklable for run_in_processes)."""

    def __init__(self, model: str, folder: str) -> None:
        self.model, self.folder = model, folder

    def __call__(self, session: Session) -> Any:
        cfg = SecAggConfig.for_dropouts(SERVER, BANKS, 0, stage_timeout=120.0)
        if self.model == "trees":
            if session.party == SERVER:
                start = time.perf_counter()
                model = GbdtServer(session, TREES, cfg).fit(23)
                return {"model": model.to_dict(), "seconds": time.perf_counter() - start}
            X, y, Xv, yv = _bank(self.folder, session.party)
            GbdtClient(session, TREES, cfg).fit(np.vstack([X, Xv]), np.concatenate([y, yv]))
            return None
        setup = FedAvgSetup(_learner(self.model), MLP if self.model == "mlp" else LR, cfg)
        if session.party == SERVER:
            res = FedAvgServer(session, setup).fit(23)
            return {"params": res.params, "seconds": [h["seconds"] for h in res.history]}
        X, y, Xv, yv = _bank(self.folder, session.party)
        FedAvgClient(session, setup).fit(X, y, Xv, yv)
        return None


def federated(model: str, folder: str) -> dict[str, Any]:
    start = time.perf_counter()
    out = run_in_processes(Party(model, folder), [SERVER, *BANKS], timeout=600)[SERVER]
    out["wall"] = time.perf_counter() - start
    return out


def central(model: str, folder: str) -> tuple[Any, float]:
    """The centralised reference fit on the union of the banks' training rows."""
    parts = [_bank(folder, b) for b in BANKS]
    X, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    start = time.perf_counter()
    if model == "lr":
        from sklearn.linear_model import LogisticRegression

        fitted: Any = LogisticRegression(max_iter=2000).fit(X, y)
    elif model == "trees":
        import xgboost as xgb

        X = np.vstack([X, *[p[2] for p in parts]])
        y = np.concatenate([y, *[p[3] for p in parts]])
        fitted = xgb.XGBClassifier(
            n_estimators=TREES.n_trees, max_depth=TREES.max_depth, max_bin=TREES.n_bins,
            learning_rate=TREES.learning_rate, tree_method="hist", n_jobs=1,
        ).fit(X, y)  # fmt: skip
    else:
        fitted = _central_mlp(X, y)
    return fitted, time.perf_counter() - start


def _central_mlp(X: np.ndarray, y: np.ndarray) -> Any:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(MLP.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=MLP.learning_rate)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(MLP.seed)
    for _ in range(MLP.rounds * MLP.local_epochs):
        for rows in torch.randperm(len(yt), generator=gen).split(MLP.batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(Xt[rows]).squeeze(1), yt[rows]
            )
            loss.backward()
            opt.step()
    return net


def _score(model: str, fitted: Any, X: np.ndarray) -> np.ndarray:
    if model == "mlp":
        import torch

        with torch.no_grad():
            return torch.sigmoid(fitted(torch.tensor(X, dtype=torch.float32))).squeeze(1).numpy()
    return fitted.predict_proba(X)[:, 1]


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from sharedml.fl.gbdt_model import GbdtModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--models", default="lr,mlp,trees")
    args = ap.parse_args()
    X_test, y_test = _xy(pd.read_csv(Path(args.data) / "default_credit_homo_test.csv"))
    rows = []
    for model in args.models.split(","):
        fed = federated(model, args.data)
        fitted, central_s = central(model, args.data)
        if model == "trees":
            scores = GbdtModel.from_dict(fed["model"]).predict(X_test)
            per_round, rounds = fed["seconds"] / TREES.n_trees, TREES.n_trees
        else:
            scores = _learner(model).predict(fed["params"], X_test)
            per_round, rounds = statistics.median(fed["seconds"]), len(fed["seconds"])
        fed_auc = float(roc_auc_score(y_test, scores))
        central_auc = float(roc_auc_score(y_test, _score(model, fitted, X_test)))
        rows.append({
            "model": model,
            "rounds (trees)": rounds,
            "fed s/round (tree)": per_round,
            "fed total s": fed["wall"],
            "fed test AUC": fed_auc,
            "central s": central_s,
            "central test AUC": central_auc,
            "AUC gap": fed_auc - central_auc,
            "load (1 min)": os.getloadavg()[0],
        })  # fmt: skip
    report("horizontal: default_credit_homo, 3 banks over gRPC+mTLS", rows)


if __name__ == "__main__":
    main()
