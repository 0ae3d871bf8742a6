"""Vertical MLPs on default_credit: parties as separate processes over gRPC (mTLS).

A 23→32→1 ReLU network (guest: 13 columns and the label, host: 10 columns),
70/30 split stratified on y, seed 42 (21,000 training rows), batch 1024, three
epochs, SGD at learning rate 1. Rows:

* ``ss`` — :class:`~sharedml.learn.nn.SSMLPClassifier`: every weight,
  activation and gradient secret-shared, a dealer process deals the
  correlated randomness;
* ``split`` — :class:`~sharedml.learn.nn.SplitMLPClassifier` without bottom
  nets: the 23→32 layer with the host's 10 rows on shares and the guest's 13
  in plaintext at the guest, ReLU and the 32→1 layer at the guest (the same
  network, with the split protocol's stated leakage);
* ``plaintext`` — the same network, batches and updates in numpy on the
  joined data, in this process (the baseline of both ratios);
* ``crypten`` — CrypTen's MLP of the same shape, when ``import crypten``
  works in this environment (otherwise the row says why).

The figure is the median epoch time at the guest (``fit`` records each
epoch); setup (sharing and masking the data) is shown apart. Goals: ss ≤ 3 s
per epoch, split ≤ 0.5 s. CPU seconds per process as in ``bench/vertical.py``.

    .venv/bin/python bench/nn.py
    .venv/bin/python bench/nn.py --epochs 2 --only split
"""

from __future__ import annotations

import argparse
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

GOALS = {"ss": 3.0, "split": 0.5}
BATCH = 1024
LEARNING_RATE = 1.0


def party(opts: dict[str, Any], session: Session) -> dict[str, Any]:
    """One data party: fit on its own file's columns, predict the hold-out rows."""
    from sharedml.learn.nn import SplitMLPClassifier, SSMLPClassifier

    common = dict(
        epochs=opts["epochs"], batch_size=BATCH, learning_rate=LEARNING_RATE, random_state=0
    )
    if opts["model"] == "ss":
        model: Any = SSMLPClassifier(hidden_layer_sizes=[32], **common)
    else:
        model = SplitMLPClassifier(interactive_size=32, **common)
    return fit_and_score(model, session, opts)


def plaintext_row(folder: Path, train: np.ndarray, test: np.ndarray, epochs: int) -> dict[str, Any]:
    """The same network and batches in numpy (median of three runs)."""
    import hashlib

    from threadpoolctl import threadpool_limits

    from sharedml.learn.metrics import roc_auc
    from sharedml.learn.nn._core import Dense, MLPConfig, init_layers, plaintext_mlp

    X, y = joined_default_credit(folder)
    mean, std = X[train].mean(0), X[train].std(0)
    Xs = (X - mean) / std
    seed = hashlib.sha256(b"sharedml.linear/0").digest()[:16]
    cfg = MLPConfig(
        epochs=epochs, batch_size=BATCH, learning_rate=LEARNING_RATE, l2=1e-4, seed=seed
    )
    times, auc = [], 0.0
    for _ in range(3):
        net = Dense(init_layers(seed, "ss", [X.shape[1], 32, 1]), "relu", linear_out=True)
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):  # as each party has
            plaintext_mlp(Xs[train], y[train], net, cfg)
        times.append((time.perf_counter() - t0) / epochs)
        auc = roc_auc(y[test], net.forward(Xs[test]).ravel())
    return {
        "model": "plaintext",
        "rows": len(train),
        "s_per_epoch": statistics.median(times),
        "auc": auc,
    }


def crypten_row(folder: Path, train: np.ndarray, epochs: int) -> dict[str, Any]:
    """CrypTen's two-party MLP of the same shape, if CrypTen imports here."""
    try:
        import crypten
        import crypten.nn as cnn
        import torch
    except Exception as exc:  # its import fails in more ways than ImportError
        return {"model": "crypten", "note": f"not measured: {type(exc).__name__}: {exc}"[:160]}
    crypten.init()
    X, y = joined_default_credit(folder)
    Xs = (X - X[train].mean(0)) / X[train].std(0)
    net = cnn.Sequential(cnn.Linear(23, 32), cnn.ReLU(), cnn.Linear(32, 1), cnn.Sigmoid())
    net.encrypt()
    net.train()
    loss = cnn.BCELoss()
    xe = crypten.cryptensor(torch.tensor(Xs[train], dtype=torch.float32))
    ye = crypten.cryptensor(torch.tensor(y[train, None], dtype=torch.float32))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for lo in range(0, len(train), BATCH):
            out = net(xe[lo : lo + BATCH])
            err = loss(out, ye[lo : lo + BATCH])
            net.zero_grad()
            err.backward()
            net.update_parameters(LEARNING_RATE)
        times.append(time.perf_counter() - t0)
    return {"model": "crypten", "rows": len(train), "s_per_epoch": statistics.median(times)}


def shared_rows(data: Path, epochs: int, models: list[str], base_s: float) -> list[dict[str, Any]]:
    from sharedml.standalone.processes import run_in_processes

    # One BLAS thread per party process (spawned, so they read this): three
    # processes share two cores, and OpenBLAS threads spinning while
    # descheduled ruin small products (as bench/mpc.py).
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    train, test = default_credit_split(data)
    rows = []
    for model in models:
        parties = ["guest", "host", "dealer"]
        opts = {"data": str(data), "train": train, "test": test, "model": model, "epochs": epochs}
        fns: dict[str, Any] = {
            "guest": partial(party, opts),
            "host": partial(party, opts),
            "dealer": partial(serve_dealer_runs, runs=2),  # fit, then shared prediction
        }
        out = run_in_processes(fns, parties, timeout=1800, dealer="dealer")
        row = epoch_row(out, base_s, GOALS[model])
        rows.append({"model": model, "rows": len(train), "epochs": epochs, **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=["ss", "split"], help="run one shared model")
    args = parser.parse_args()
    train, test = default_credit_split(args.data)
    base = plaintext_row(args.data, train, test, args.epochs)
    models = [args.only] if args.only else ["ss", "split"]
    rows = [base, *shared_rows(args.data, args.epochs, models, base["s_per_epoch"])]
    rows.append(crypten_row(args.data, train, args.epochs))
    report("nn", rows, {"cores": os.cpu_count(), "load": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
