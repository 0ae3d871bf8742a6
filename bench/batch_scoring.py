"""Batch scoring of new rows from a saved model version (issue 12: 1M rows <= 30 s).

A model is trained once on default_credit (psi, split, fill, scale, train;
SS-LR, or SecureBoost with ``--model secureboost``) and registered in a models
folder; then ``--rows`` new applicants (default 1,000,000: default_credit's
rows resampled, with fresh ids, both parties' files) are scored by a batch
job with no train step — ``align`` on the declared shared id column (``--psi``:
PSI on the new ids), then ``predict: {model: bench@1}`` — through ``sharedml run``: every party its own process over
gRPC with mutual TLS, each loading its own sealed part and replaying its
fitted pipeline, the scores sealed at the label holder. The figure is the
batch job's wall time (PSI, loading, pipeline, joint scoring, sealing), and
its predict step alone. Baseline, in the same run: the same model applied
locally to the joined rows in this process (read both CSVs, join on id,
replay both pipelines, score) — what scoring would cost without sharing.

    .venv/bin/python bench/batch_scoring.py
    .venv/bin/python bench/batch_scoring.py --rows 200000 --model secureboost --trees 30

:func:`score_batch` is the timed part, callable from another bench.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA, report
from sharedml.standalone.job import run_job
from sharedml.standalone.models import LocalRegistry

GOAL_S = 30.0
FRONT = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 42}}, {"fill": {}}, {"scale": {}}]


def _spec(files: dict[str, Path], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "bench", "parties": {"guest": {"dataset": str(files["guest"]), "label": "y"},
                                         "host": {"dataset": str(files["host"])}},
            "steps": steps}


def train(root: Path, model: str, trees: int) -> Path:
    """Train and register ``bench@1`` on default_credit; the models folder."""
    files = {p: DATA / f"default_credit_hetero_{p}.csv" for p in ("guest", "host")}
    step = ({"model": "logistic_regression", "epochs": 3} if model == "lr" else
            {"model": "secureboost", "n_estimators": trees, "max_depth": 3, "n_bins": 16})
    run_job(_spec(files, [*FRONT, {"train": step}]), root / "train", models=root / "models",
            timeout=1800)
    return root / "models"


def new_rows(root: Path, rows: int, seed: int = 7) -> dict[str, Path]:
    """``rows`` new applicants for both parties: resampled rows, fresh shared ids."""
    rng = np.random.default_rng(seed)
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv").set_index("id").loc[guest["id"]]
    pick = rng.integers(0, len(guest), rows)
    ids = rng.permutation(rows) + 10_000_000
    files = {}
    for party, frame in (("guest", guest.drop(columns=["id"])), ("host", host.reset_index(
            drop=True))):
        out = frame.iloc[pick].reset_index(drop=True)
        out.insert(0, "id", ids)
        files[party] = root / f"new_{party}.csv"
        out.sample(frac=1.0, random_state=int(seed) + len(party)).to_csv(files[party], index=False)
    return files


def score_batch(files: dict[str, Path], models: Path, out: Path,
                align: str = "align") -> dict[str, float]:
    """Run the batch-scoring job (``align`` or ``psi`` first); its wall time and its
    steps' (at the guest)."""
    start = time.perf_counter()
    result = run_job(_spec(files, [{align: {}}, {"predict": {"model": "bench@1"}}]), out,
                     models=models, timeout=1800)
    total = time.perf_counter() - start
    steps = {s["id"]: s["parties"] for s in result["steps"]}
    return {"job_s": total, "align_s": steps[align]["guest"]["seconds"],
            "predict_s": steps["predict"]["guest"]["seconds"]}


def score_locally(files: dict[str, Path], models: Path) -> float:
    """The baseline: both parts applied in one process to the joined rows."""
    book = LocalRegistry(models)
    uid = book.resolve_text("bench@1").uid
    parts = {p: book.store(p).load(uid) for p in ("guest", "host")}
    start = time.perf_counter()
    frames = {p: pd.read_csv(f) for p, f in files.items()}
    joined = frames["guest"].merge(frames["host"], on="id", suffixes=("", "_h"))
    host = joined[["id", *[c for c in frames["host"].columns if c != "id"]]].copy()
    host.columns = frames["host"].columns
    X = {"guest": parts["guest"].features(frames["guest"].set_index("id").loc[joined["id"]]
                                         .reset_index(), ["id"]),
         "host": parts["host"].features(frames["host"].set_index("id").loc[joined["id"]]
                                        .reset_index(), ["id"])}
    _plain_scores(parts, X)
    return time.perf_counter() - start


def _plain_scores(parts: dict[str, Any], X: dict[str, pd.DataFrame]) -> np.ndarray:
    guest, host = parts["guest"].model, parts["host"].model
    if hasattr(guest, "coef_"):
        margin = (X["guest"].to_numpy() @ guest.coef_ + X["host"].to_numpy() @ host.coef_
                  + guest.intercept_)
        return np.asarray(1.0 / (1.0 + np.exp(-margin)))
    n = len(X["guest"])
    dirs = {}
    for party, model in (("guest", guest), ("host", host)):
        for rid, mask in enumerate(model.table_.directions(X[party].to_numpy(),
                                                           np.arange(len(model.table_)))):
            dirs[(party, rid)] = mask
    margin = np.full(n, guest.base_score_)
    for tree in guest.trees_:
        margin += tree.predict(n, dirs)
    return np.asarray(1.0 / (1.0 + np.exp(-margin)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--model", choices=("lr", "secureboost"), default="lr")
    ap.add_argument("--trees", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--psi", action="store_true", help="align the new rows by PSI")
    args = ap.parse_args()
    align = "psi" if args.psi else "align"
    with tempfile.TemporaryDirectory(prefix="sharedml-batch-") as tmp:
        root = Path(tmp)
        models = train(root, args.model, args.trees)
        files = new_rows(root, args.rows)
        runs = [score_batch(files, models, root / f"out{i}", align) for i in range(args.repeat)]
        local = float(np.median([score_locally(files, models) for _ in range(args.repeat)]))
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    report("batch scoring from a saved model (sharedml run, processes over mTLS)", [
        {"what": f"batch job: {align} + predict, {args.rows:,} rows", "median_s": med["job_s"],
         "goal_s": GOAL_S, "met": med["job_s"] <= GOAL_S},
        {"what": f"  of which {align}, loading the rows (guest)", "median_s": med["align_s"]},
        {"what": "  of which predict (guest)", "median_s": med["predict_s"]},
        {"what": "baseline: both parts in one process", "median_s": local,
         "ratio": med["job_s"] / local},
    ], {"rows": args.rows, "model": args.model, "repeat": args.repeat, "align": align,
        "load": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
