"""Vertical learning on default_credit: parties as separate processes over gRPC (mTLS).

SS-LR: the guest (label holder, 13 features) and the host (10 features) each
run in their own process (:func:`sharedml.standalone.processes.run_in_processes`), a dealer
process deals the correlated randomness. 70/30 split stratified on y, seed
42 (21,000 training rows), batch 1024, 5 epochs, ``pwl`` sigmoid (``--sigmoid``). The
figure is the median epoch time at the guest (``fit`` records each epoch's
wall time; the one-off setup — sharing and masking the data once — is shown
apart). Baseline: the same mini-batch SGD (same batches, same sigmoid
approximation) in plaintext numpy on the joined data, in this process.
Goal: SS-LR <= 0.3 s per epoch. CPU seconds are reported per process: the
guest's and host's for ``fit`` (all epochs plus setup), the dealer's for its
whole run (fit and prediction). ``--profile DIR`` writes each data party's
cProfile (CPU clock; gRPC's threads are charged to whatever runs meanwhile).

HE-LR (the label holder's Paillier key, no dealer) runs one epoch beside it
unless ``--no-he``. If ``bench/vertical_secureboost.py`` exists, its rows
(SecureBoost vs XGBoost) are added unless ``--no-secureboost``.

    .venv/bin/python bench/vertical.py
    .venv/bin/python bench/vertical.py --epochs 3 --no-he --no-secureboost
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    DATA,
    default_credit_split,
    epoch_row,
    fit_and_score,
    joined_default_credit,
    report,
    serve_dealer_runs,
)
from sharedml.session import Session

GOAL_S_PER_EPOCH = 0.3
BATCH = 1024


def party(opts: dict[str, Any], session: Session) -> dict[str, Any]:
    """One data party: fit on its own file's columns, predict the hold-out rows."""
    from sharedml.learn.linear import HELogisticRegression, SSLogisticRegression

    if opts["model"] == "ss":  # opts["params"]: other settings (bench/wan.py's profiles)
        model: Any = SSLogisticRegression(
            epochs=opts["epochs"], batch_size=opts.get("batch", BATCH), sigmoid=opts["sigmoid"],
            random_state=0, **opts.get("params", {}),
        )
    else:
        model = HELogisticRegression(epochs=opts["epochs"], batch_size=BATCH, random_state=0)
    return fit_and_score(model, session, opts, opts.get("profile"))


def dealer(session: Session) -> dict[str, Any]:
    """The dealer process (one runtime: SS-LR's prediction needs none); bench/wan.py runs it too."""
    return serve_dealer_runs(session)


def plaintext_baseline(
    folder: Path, train: np.ndarray, test: np.ndarray, epochs: int, sigmoid: str
) -> tuple[float, float]:
    """Seconds per epoch and hold-out AUC of the same SGD in numpy (median of 3 runs)."""
    from sharedml.learn.linear import plaintext_sgd
    from sharedml.learn.metrics import roc_auc

    X, y = joined_default_credit(folder)
    mean, std = X[train].mean(0), X[train].std(0)
    Xs = (X - mean) / std
    times, auc = [], 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        w, b = plaintext_sgd(
            Xs[train],
            y[train],
            task="classification",
            epochs=epochs,
            batch_size=BATCH,
            eta0=2.0,
            schedule="cosine",
            l2=1e-4,
            sigmoid_approx=sigmoid,
        )
        times.append((time.perf_counter() - t0) / epochs)
        auc = roc_auc(y[test], Xs[test] @ w + b)
    return statistics.median(times), auc


def linear_rows(
    data: Path, epochs: int, he: bool, sigmoid: str = "pwl", profile: str | None = None
) -> list[dict[str, Any]]:
    from sharedml.standalone.processes import run_in_processes

    train, test = default_credit_split(data)
    base_s, base_auc = plaintext_baseline(data, train, test, epochs, sigmoid)
    rows = []
    models = [("ss", epochs)] + ([("he", 1)] if he else [])
    for model, n_epochs in models:
        parties = ["guest", "host", "dealer"] if model == "ss" else ["guest", "host"]
        opts = {
            "data": str(data),
            "train": train,
            "test": test,
            "model": model,
            "epochs": n_epochs,
            "sigmoid": sigmoid,
            "profile": profile,
        }
        fns: dict[str, Any] = {"guest": partial(party, opts), "host": partial(party, opts)}
        if model == "ss":
            fns["dealer"] = dealer
        out = run_in_processes(fns, parties, timeout=900,
                               dealer="dealer" if model == "ss" else None)
        goal = GOAL_S_PER_EPOCH if model == "ss" else None
        row = epoch_row(out, base_s, goal)
        rows.append(
            {
                "model": f"{model.upper()}-LR" + (f" ({sigmoid})" if model == "ss" else ""),
                "rows": len(train),
                "epochs": n_epochs,
                **row,
                "plaintext_s_per_epoch": base_s,
                "plaintext_auc": base_auc,
            }
        )
    return rows


def secureboost_rows(data: Path) -> list[dict[str, Any]]:
    """The tree engineer's bench, when present (its own rows, SecureBoost vs XGBoost)."""
    path = Path(__file__).with_name("vertical_secureboost.py")
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location("vertical_secureboost", path)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    sys.modules["vertical_secureboost"] = module  # its party functions must pickle by name
    spec.loader.exec_module(module)
    return [{"model": "SecureBoost", **row} for row in module.run(data=data)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sigmoid", default="pwl", help="SS-LR sigmoid approximation")
    parser.add_argument("--no-he", action="store_true", help="skip the HE-LR row")
    parser.add_argument("--no-secureboost", action="store_true", help="skip SecureBoost")
    parser.add_argument("--profile", metavar="DIR", help="write each party's cProfile of fit to DIR")
    args = parser.parse_args()
    rows = linear_rows(args.data, args.epochs, not args.no_he, args.sigmoid, args.profile)
    if not args.no_secureboost:
        rows += secureboost_rows(args.data)
    report("vertical", rows, {"cores": os.cpu_count(), "load": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
