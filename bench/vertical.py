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
from _common import DATA, default_credit_split, load_default_credit, report
from sharedml.session import Session

GOAL_S_PER_EPOCH = 0.3
BATCH = 1024


def party(opts: dict[str, Any], session: Session) -> dict[str, Any]:
    """One data party: load its own file, fit, predict the hold-out rows."""
    from sharedml.learn.linear import HELogisticRegression, SSLogisticRegression

    frame = load_default_credit(Path(opts["data"]), session.party)
    train, test = opts["train"], opts["test"]
    y = frame.pop("y").to_numpy(np.float64) if "y" in frame else None
    X = frame.drop(columns=["id"]).to_numpy(np.float64)
    if opts["model"] == "ss":  # opts["params"]: other settings (bench/wan.py's profiles)
        model: Any = SSLogisticRegression(
            epochs=opts["epochs"], batch_size=opts.get("batch", BATCH), sigmoid=opts["sigmoid"],
            random_state=0, **opts.get("params", {}),
        )
    else:
        model = HELogisticRegression(epochs=opts["epochs"], batch_size=BATCH, random_state=0)
    profiler = None
    if opts.get("profile"):
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(session, X[train], None if y is None else y[train])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{opts['profile']}/{session.party}.prof")
    out: dict[str, Any] = {
        "fit_s": time.perf_counter() - t0,
        "fit_cpu_s": time.process_time() - c0,
        "setup_s": model.setup_seconds_,
        "epochs_s": list(model.epoch_seconds_),
    }
    scores = model.predict(session, X[test])
    if scores is not None and y is not None:
        from sharedml.learn.metrics import roc_auc

        out["auc"] = roc_auc(y[test], scores)
    return out


def dealer(session: Session) -> dict[str, Any]:
    from sharedml.mpc import serve_dealer

    c0 = time.process_time()
    stats = serve_dealer(session, ["guest", "host"])
    return {"requests": stats.requests, "bytes": stats.bytes_sent, "cpu_s": time.process_time() - c0}


def plaintext_baseline(
    folder: Path, train: np.ndarray, test: np.ndarray, epochs: int, sigmoid: str
) -> tuple[float, float]:
    """Seconds per epoch and hold-out AUC of the same SGD in numpy (median of 3 runs)."""
    from sharedml.learn.linear import plaintext_sgd
    from sharedml.learn.metrics import roc_auc

    guest, host = load_default_credit(folder, "guest"), load_default_credit(folder, "host")
    y = guest.pop("y").to_numpy(np.float64)
    X = np.hstack([guest.drop(columns=["id"]).to_numpy(), host.drop(columns=["id"]).to_numpy()])
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
        per_epoch = statistics.median(out["guest"]["epochs_s"])
        rows.append(
            {
                "model": f"{model.upper()}-LR" + (f" ({sigmoid})" if model == "ss" else ""),
                "rows": len(train),
                "epochs": n_epochs,
                "setup_s": out["guest"]["setup_s"],
                "fit_s": out["guest"]["fit_s"],
                "guest_cpu_s": out["guest"]["fit_cpu_s"],
                "host_cpu_s": out["host"]["fit_cpu_s"],
                "dealer_cpu_s": out["dealer"]["cpu_s"] if model == "ss" else None,
                "s_per_epoch": per_epoch,
                "plaintext_s_per_epoch": base_s,
                "ratio": per_epoch / base_s,
                "auc": out["guest"]["auc"],
                "plaintext_auc": base_auc,
                "goal_s_per_epoch": GOAL_S_PER_EPOCH if model == "ss" else None,
                "meets_goal": per_epoch <= GOAL_S_PER_EPOCH if model == "ss" else None,
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
