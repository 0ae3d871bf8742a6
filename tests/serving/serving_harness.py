"""Models trained by real jobs on the first 70% of default_credit's ids, with the
training jobs' own predictions on the other 30% (the rows online scoring must match).

One ``sharedml run`` job per model (embedded: every party a thread) with the
steps psi, split (by id: the last 30% of the ids are the test rows), fill,
scale, train and predict; each
trained model is registered in one models folder as ``credit@1`` (SS-LR) and
``credit@2`` (SecureBoost), each party's part sealed under its own node key
there — the folder the serving processes load from (``--models``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sharedml.standalone.job import run_job
from sharedml.standalone.models import LocalRegistry

BANK, PARTNER = "bank", "partner"
FRONT: list[dict[str, Any]] = [{"psi": {}}, {"split": {"test_size": 0.3, "by": "id"}},
                               {"fill": {}}, {"scale": {}}]
MODELS: dict[str, dict[str, Any]] = {
    "lr": {"model": "logistic_regression", "epochs": 2, "batch_size": 512},
    "sb": {"model": "secureboost", "n_estimators": 5, "max_depth": 3, "n_bins": 16},
}


@dataclass
class Trained:
    """One registered model version and its training job's scores of the 30% rows."""

    version: str
    ref: str
    test_ids: np.ndarray
    scores: np.ndarray


@dataclass
class Book:
    models: Path
    data: dict[str, Path]
    trained: dict[str, Trained]


def spec(files: dict[str, Path], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "credit", "parties": {
        BANK: {"dataset": str(files[BANK]), "label": "y"},
        PARTNER: {"dataset": str(files[PARTNER])}}, "steps": steps}


def train_book(shared_data: Path, root: Path) -> Book:
    """Train and register both models; each training job's predictions of its test rows."""
    data = {BANK: shared_data / "default_credit_hetero_guest.csv",
            PARTNER: shared_data / "default_credit_hetero_host.csv"}
    models = root / "models"
    trained = {}
    for n, (kind, step) in enumerate(MODELS.items(), start=1):
        out = root / f"train-{kind}"
        run_job(spec(data, [*FRONT, {"train": step}, {"predict": {}}]), out, embedded=True,
                models=models)
        preds = pd.read_csv(out / BANK / "predictions-predict.csv", dtype={"id": str})
        assert set(preds["id"]) == last_ids(data[BANK], 0.3)  # the split
        uid = LocalRegistry(models).resolve_text(f"credit@{n}").uid
        trained[kind] = Trained(uid, f"credit@{n}", preds["id"].to_numpy(),
                                preds["score"].to_numpy(np.float64))
    return Book(models, data, trained)


def last_ids(path: Path, share: float) -> set[str]:
    """The last ``share`` of a file's ids in numeric order: the rows a model trained on
    the first ones scores as new customers."""
    ids = pd.read_csv(path, usecols=["id"])["id"].sort_values()
    return {str(i) for i in ids.iloc[len(ids) - round(share * len(ids)):]}
