"""A softmax MLP (``n_classes: 3``) end to end as job steps (issue 18): train,
``predict`` (a score file with one named column per class), ``evaluate``
(accuracy, macro one-vs-rest AUC, log loss — checked against scikit-learn on
the written scores), registration, and batch scoring of the saved model by
``predict: {model: NAME@VERSION}`` in a job without ``train``. Online serving
refuses the model by name (architecture §8). Data: scikit-learn's bundled wine
set (178 rows, 13 columns), split vertically with an id column — the guest
holds the label and 7 columns, the host the other 6."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from sharedml.components.saved_models import SCORES_AAD
from sharedml.errors import DataError
from sharedml.standalone.job import run_job
from sharedml.standalone.models import LocalRegistry

CLASSES = ["score_0", "score_1", "score_2"]
TRAIN = {"model": "mlp", "protocol": "split", "n_classes": 3, "interactive_size": 8,
         "epochs": 8, "batch_size": 32, "learning_rate": 0.2}


def _spec(files: dict[str, Path], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "wine", "parties": {
        "guest": {"dataset": str(files["guest"]), "label": "y"},
        "host": {"dataset": str(files["host"])}}, "steps": steps}


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The wine files, one training job's output and its models folder."""
    root = tmp_path_factory.mktemp("wine")
    X, y = load_wine(return_X_y=True, as_frame=True)
    frame = X.assign(id=[f"w{i:03d}" for i in range(len(y))])
    files = {"guest": root / "guest.csv", "host": root / "host.csv"}
    frame[["id", *X.columns[:7]]].assign(y=y.to_numpy()).to_csv(files["guest"], index=False)
    frame[["id", *X.columns[7:]]].to_csv(files["host"], index=False)
    steps = [{"psi": {"key": "id"}}, {"split": {"test_size": 0.3, "stratify": "y", "seed": 42}},
             {"train": TRAIN}, {"predict": {}}, {"evaluate": {}}]
    out = root / "train"
    result = run_job(_spec(files, steps), out, embedded=True, models=root / "models",
                     timeout=120)
    labels = pd.Series(y.to_numpy(), index=frame["id"])
    return {"root": root, "files": files, "out": out, "labels": labels,
            "steps": {s["id"]: s["parties"] for s in result["steps"]}}


def _read(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), dtype={"id": str}).set_index("id")


def test_scores_have_a_named_column_per_class_and_sklearn_metrics(wine: dict[str, Any]) -> None:
    scores = _read((wine["out"] / "guest" / "predictions-predict.csv").read_bytes())
    assert list(scores.columns) == CLASSES and len(scores) == 54  # 30% of 178
    assert not (wine["out"] / "host" / "predictions-predict.csv").exists()
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-9)  # softmax rows
    y, p = wine["labels"][scores.index].to_numpy(), scores.to_numpy()
    got = wine["steps"]["evaluate"]["guest"]["metrics"]
    assert set(got) == {"accuracy", "auc", "log_loss"}  # no binary charts
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)), abs=1e-6)
    assert got["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=1e-6)
    assert got["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), abs=1e-6)
    # a sanity floor (parity with MLPClassifier is test_mlp_multiclass's)
    assert got["accuracy"] > 0.85 and wine["steps"]["evaluate"]["host"]["metrics"] == {}


def test_a_saved_multiclass_model_scores_new_rows_as_in_training(wine: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    trained = _read((wine["out"] / "guest" / "predictions-predict.csv").read_bytes())
    new = {}
    for party, path in wine["files"].items():
        rows = pd.read_csv(path, dtype={"id": str})
        new[party] = tmp_path / f"{party}.csv"
        rows[rows["id"].isin(trained.index)].to_csv(new[party], index=False)
    # a split MLP's prediction computes on shares: the job needs its dealer
    steps = [{"psi": {"key": "id"}}, {"predict": {"model": "wine@1", "provider": "dealer"}},
             {"evaluate": {"on": "data"}}]
    result = run_job(_spec(new, steps), tmp_path / "out", embedded=True,
                     models=wine["root"] / "models", timeout=120)
    sealed = tmp_path / "out" / "guest" / "predictions-predict.csv.sealed"
    keys = LocalRegistry(wine["root"] / "models").store("guest").keys
    again = _read(keys.open(sealed.read_bytes(), aad=SCORES_AAD))
    assert list(again.columns) == CLASSES
    pd.testing.assert_frame_equal(again.loc[trained.index], trained, atol=1e-9, rtol=0)
    evaluate = {s["id"]: s["parties"] for s in result["steps"]}["evaluate"]["guest"]
    assert evaluate["metrics"] == wine["steps"]["evaluate"]["guest"]["metrics"]


def test_online_serving_refuses_the_mlp_naming_the_version(wine: dict[str, Any]) -> None:
    from sharedml.serving.parts import serving_part

    registry = LocalRegistry(wine["root"] / "models")
    uid = registry.resolve_text("wine@1").uid
    part = registry.store("guest").load(uid)
    with pytest.raises(DataError, match=f"{uid}.*SplitMLPClassifier.*online serving") as err:
        serving_part(part)
    assert "batch job" in (err.value.remedy or "")
