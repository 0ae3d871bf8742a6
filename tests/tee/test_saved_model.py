"""TEE batch scoring of a registered model (issue #17 item 5), through run_tee_job.

A ``scheme: tee`` job trains a logistic regression on 1,200 of 1,500 joined rows; the
model is registered in the models folder sealed to the enclave's identity (the
registry keeps its fingerprint, no parameters). A second job, on 400 new rows
whose label holder uploads no label, runs ``predict {model: NAME@ALIAS}`` only:
its enclave unseals the model and the label holder receives scores equal to
the plaintext model's (the first job's release to it) within 1e-12. A blob
sealed by another sealing identity, or not the registered version, is refused
naming the step (in process, with real AES-GCM seal keys: no third enclave).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.errors import PolicyDenied
from sharedml.standalone.models import LocalRegistry
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.job import run_tee_job
from sharedml.tee.model import ReleasedModel


def _parties(folder: Path, rows: slice, out: Path, *, label: bool) -> dict[str, dict[str, str]]:
    parties: dict[str, dict[str, str]] = {}
    for party in ("guest", "host"):
        frame = pd.read_csv(folder / f"default_credit_hetero_{party}.csv").iloc[rows]
        if party == "guest" and not label:
            frame = frame.drop(columns=["y"])
        path = out / "rows" / f"{party}-{rows.start}.csv"  # never beside the vendored data
        path.parent.mkdir(exist_ok=True)
        frame.to_csv(path, index=False)
        parties[party] = {"dataset": str(path), **({"label": "y"} if party == "guest" else {})}
    return parties


def _spec(name: str, parties: dict[str, dict[str, str]], steps: list[dict[str, object]]) -> jobspec.JobSpec:
    return jobspec.load({"name": name, "scheme": "tee", "parties": parties, "steps": steps})


def test_registered_tee_model_scores_new_rows_in_an_enclave(shared_data: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    train = _spec("tee-lr", _parties(shared_data, slice(0, 1500), tmp_path, label=True),
                  [{"psi": {}}, {"split": {"test_size": 0.2, "seed": 7}},
                   {"train": {"model": "logistic_regression", "epochs": 2}}])
    first = run_tee_job(train, tmp_path / "train", models=models)
    assert [m["name"] for m in first["models"]] == ["tee-lr"]
    book = LocalRegistry(models)
    book.tag("tee-lr@1", "production")
    plain = ReleasedModel.from_bytes((tmp_path / "train" / "guest" / "model-train.bin").read_bytes())

    # the registry and the sealed blob hold no parameter in clear
    record = book.show("tee-lr@production")
    blob = (models / "enclave" / f"{record['uid']}.sealed").read_bytes()
    assert list(record["fingerprints"]) == ["enclave"]
    for text in ((models / "registry.json").read_bytes(), blob):
        assert b'"coef"' not in text and json.dumps(plain.params["coef"][0]).encode() not in text

    score = _spec("tee-score", _parties(shared_data, slice(20000, 20400), tmp_path, label=False),
                  [{"id": "score", "predict": {"model": "tee-lr@production"}}])
    second = run_tee_job(score, tmp_path / "score", models=models)
    got = pd.read_csv(tmp_path / "score" / "guest" / "predictions-score.csv")
    assert not (tmp_path / "score" / "host").exists()  # scores reach the label holder only
    g = pd.read_csv(shared_data / "default_credit_hetero_guest.csv").iloc[20000:20400].add_prefix("guest.")
    h = pd.read_csv(shared_data / "default_credit_hetero_host.csv").iloc[20000:20400].add_prefix("host.")
    joined = g.merge(h, left_on="guest.id", right_on="host.id").sort_values("guest.id")
    assert got["id"].tolist() == joined["guest.id"].tolist()
    np.testing.assert_allclose(got["score"].to_numpy(), plain.predict(joined), rtol=0, atol=1e-12)
    assert second["models"] == []


def _predict_step(uid: str, fingerprint: str) -> list[tuple[str, str, object]]:
    from sharedml.components.learn import PredictParams

    return [("score", "predict", PredictParams(model=uid, fingerprints={"enclave": fingerprint}))]


def test_a_model_sealed_for_another_identity_or_swapped_is_refused() -> None:
    model = ReleasedModel("linear_regression", ["a.x"], {"mean": [0.0], "scale": [1.0], "coef": [2.0],
                                                         "intercept": 0.5})
    ours, theirs = SealedStore(lambda svn: bytes(32), 1), SealedStore(lambda svn: b"\x01" * 32, 1)
    blob = base64.b64decode(saved.seal_models(theirs, {"train": model})["train"])
    steps = _predict_step("u1", saved.fingerprint(blob))
    request = {"u1": base64.b64encode(blob).decode()}
    assert saved.open_models(theirs, steps, request)["u1"].params == model.params
    with pytest.raises(PolicyDenied, match="sealed for another enclave identity") as refused:
        saved.open_models(ours, steps, request)
    assert refused.value.step == "score"
    with pytest.raises(PolicyDenied, match="not the registered version"):
        saved.open_models(theirs, _predict_step("u1", "0" * 64), request)
