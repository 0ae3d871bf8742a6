"""Batch scoring from a saved model (issue 12, must-show): train on the first 70% of
default_credit's ids (split by id), register, then score the other 30% as a new job with no
``train`` — and get the training job's own predictions for those rows."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components.saved_models import SCORES_AAD
from sharedml.errors import DataError
from sharedml.standalone import PartyFailed
from sharedml.standalone.job import run_job
from sharedml.standalone.models import LocalRegistry

TRAIN = [{"psi": {}}, {"split": {"test_size": 0.3, "by": "id"}}, {"fill": {}}, {"scale": {}}]
LR = {"train": {"model": "logistic_regression", "epochs": 2, "batch_size": 512}}
SB = {"train": {"model": "secureboost", "n_estimators": 3, "max_depth": 3, "n_bins": 16}}


def _spec(files: dict[str, Path], steps: list[dict[str, Any]], label: bool = True
          ) -> dict[str, Any]:
    return {"name": "credit", "parties": {
        "guest": {"dataset": str(files["guest"]), **({"label": "y"} if label else {})},
        "host": {"dataset": str(files["host"])}}, "steps": steps}


@pytest.fixture(scope="module")
def book(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """credit@1 (SS-LR) and credit@2 (SecureBoost) trained on the split's 70%; the
    training jobs' predictions of the other 30%; those rows as new files."""
    root = tmp_path_factory.mktemp("book")
    full = {p: shared_data / f"default_credit_hetero_{p}.csv" for p in ("guest", "host")}
    models = root / "models"
    preds = {}
    for name, train in (("lr", LR), ("sb", SB)):
        out = root / f"train-{name}"
        run_job(_spec(full, [*TRAIN, train, {"predict": {}}]), out, embedded=True,
                models=models)
        preds[name] = _scores(out / "guest" / "predictions-predict.csv")
    ids = set(preds["lr"].index)
    assert ids == set(preds["sb"].index)  # one split, the 30% the models never saw
    numeric = pd.read_csv(full["guest"], usecols=["id"])["id"].sort_values()
    assert ids == {str(i) for i in numeric.iloc[len(numeric) - 9000:]}  # the last 30% of ids
    new = {}
    for party, path in full.items():
        rows = pd.read_csv(path, dtype={"id": str})
        new[party] = root / f"new_{party}.csv"
        rows[rows["id"].isin(ids)].to_csv(new[party], index=False)
    return {"root": root, "models": models, "preds": preds, "new": new}


def _scores(path: Path, data: bytes | None = None) -> pd.Series:
    frame = pd.read_csv(io.BytesIO(data) if data is not None else path, dtype={"id": str})
    return frame.set_index("id")["score"]


def _score(book: dict[str, Any], ref: str, out: Path, files: dict[str, Path] | None = None,
           align: str = "psi", **kw: Any) -> pd.Series:
    steps = [{align: {}}, {"predict": {"model": ref}}, {"evaluate": {"on": "data"}}]
    run_job(_spec(files or book["new"], steps), out, embedded=True, models=book["models"], **kw)
    sealed = out / "guest" / "predictions-predict.csv.sealed"
    assert not (out / "host" / "predictions-predict.csv.sealed").exists()  # label holder only
    keys = LocalRegistry(book["models"]).store("guest").keys
    return _scores(sealed, keys.open(sealed.read_bytes(), aad=SCORES_AAD))


def test_batch_scores_equal_the_training_jobs_predictions(book: dict[str, Any],
                                                          tmp_path: Path) -> None:
    registry = LocalRegistry(book["models"])
    registry.tag("credit@1", "production")
    registry.tag("credit@2", "candidate")
    lr = _score(book, "credit@production", tmp_path / "lr")
    want = book["preds"]["lr"]
    assert len(lr) == len(want) == 9000
    np.testing.assert_allclose(lr.loc[want.index], want, rtol=0, atol=1e-9)  # linear: 1e-9

    sb = _score(book, "credit@candidate", tmp_path / "sb")
    want = book["preds"]["sb"]
    assert (sb.loc[want.index].to_numpy() == want.to_numpy()).all()  # trees: exact


def test_a_part_of_another_version_is_refused_naming_the_party(book: dict[str, Any],
                                                               tmp_path: Path) -> None:
    registry = LocalRegistry(book["models"])
    v1, v2 = registry.show("credit@1")["uid"], registry.show("credit@2")["uid"]
    models = tmp_path / "models"
    shutil.copytree(book["models"], models)
    host = LocalRegistry(models).store("host")
    host.path(v1).unlink()
    shutil.copy(host.path(v2), host.path(v1))  # the host's version-2 part posing as version 1
    with pytest.raises(PartyFailed) as failed:
        _score({**book, "models": models}, "credit@1", tmp_path / "out")
    error = failed.value.error
    assert isinstance(error, DataError) and error.party == "host"
    assert f"is a part of model version {v2}, not of {v1}" in str(error)


def test_a_schema_mismatch_is_refused_naming_the_column(book: dict[str, Any],
                                                        tmp_path: Path) -> None:
    renamed = tmp_path / "host.csv"
    pd.read_csv(book["new"]["host"], dtype={"id": str}).rename(columns={"x4": "x4_v2"}).to_csv(
        renamed, index=False)
    with pytest.raises(PartyFailed) as failed:
        _score(book, "credit@1", tmp_path / "out", {**book["new"], "host": renamed})
    error = failed.value.error
    assert isinstance(error, DataError) and error.party == "host"
    assert "missing column(s) ['x4']" in str(error) and "['x4_v2']" in str(error)


def test_a_declared_id_column_aligns_without_psi(book: dict[str, Any], tmp_path: Path) -> None:
    scores = _score(book, "credit@1", tmp_path / "ok", align="align")
    want = book["preds"]["lr"]
    np.testing.assert_allclose(scores.loc[want.index], want, rtol=0, atol=1e-9)

    short = tmp_path / "host.csv"
    pd.read_csv(book["new"]["host"], dtype={"id": str}).iloc[1:].to_csv(short, index=False)
    with pytest.raises(PartyFailed) as failed:
        _score(book, "credit@1", tmp_path / "bad", {**book["new"], "host": short}, align="align")
    assert isinstance(failed.value.error, DataError)
    assert "do not hold the same ids" in str(failed.value.error)
    assert "'guest': 9000, 'host': 8999" in str(failed.value.error)
