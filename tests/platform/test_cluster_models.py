"""The model registry on a local deployment: a train job registers a version,
the analyst tags it, a batch-scoring job names ``NAME@production`` and scores
new rows with the parts the nodes keep; both owners consent to delete it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_cluster_jobs import Api

from sharedml.components.saved_models import SCORES_AAD
from sharedml.modelpart import FileNodeKeys, PartStore
from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare

pytestmark = pytest.mark.slow

PARTIES = {"bank": "breast_hetero_guest.csv", "shop": "breast_hetero_host.csv"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_data: Path
            ) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("models")
    new = {}
    for party, name in PARTIES.items():  # new applicants: the last 200 rows, no label
        rows = pd.read_csv(shared_data / name, dtype={"id": str}).tail(200)
        new[party] = root / f"new_{party}.csv"
        rows.drop(columns=["y"], errors="ignore").to_csv(new[party], index=False)
    prepare(root, DeploymentSpec(
        {"bank": {"customers": shared_data / PARTIES["bank"], "applicants": new["bank"]},
         "shop": {"baskets": shared_data / PARTIES["shop"], "applicants": new["shop"]}},
        heartbeat_s=0.3, task_timeout_s=30, max_attempts=1,
    ))
    with LocalDeployment(root) as running:
        running.start(wait=90)
        yield running


def _spec(bank: str, shop: str, steps: list[dict[str, Any]], label: bool = True
          ) -> dict[str, Any]:
    return {"name": "breast-lr", "parties": {
        "bank": {"dataset": bank, **({"label": "y"} if label else {})},
        "shop": {"dataset": shop}}, "steps": steps}


def _scores(cluster: LocalDeployment, job_id: str, sealed: bool, step: str = "predict"
            ) -> pd.Series:
    work = cluster.root / "nodes" / "bank" / "work"
    path = work / "jobs" / job_id / f"predictions-{step}.csv{'.sealed' if sealed else ''}"
    data = path.read_bytes()
    if sealed:
        data = FileNodeKeys(work / "keys").open(data, aad=SCORES_AAD)
    return pd.read_csv(io.BytesIO(data), dtype={"id": str}).set_index("id")["score"]


def test_train_registers_tag_scores_new_rows_and_owners_delete(cluster: LocalDeployment) -> None:
    api = Api(cluster)
    train = api.submit(_spec("customers", "baskets", [
        {"psi": {}}, {"split": {"test_size": 0.3, "seed": 4}}, {"fill": {}}, {"scale": {}},
        {"train": {"model": "logistic_regression", "epochs": 2}}, {"predict": {}},
        {"id": "predict_train", "predict": {"on": "train"}}]))
    job = api.wait(train, {"succeeded", "failed"}, within=240)
    assert job["state"] == "succeeded", job

    versions = api.call("GET", "/registry/models", params={"name": "breast-lr"}).json()
    assert [(v["version"], v["job_id"], v["parties"]) for v in versions] == [
        (1, train, ["bank", "shop"])]
    version = versions[0]
    for party in ("bank", "shop"):  # the registry's fingerprint is the node's own part's
        work = cluster.root / "nodes" / party / "work"
        store = PartStore(work / "models", FileNodeKeys(work / "keys"), party=party)
        assert store.load(version["uid"]).fingerprint == version["fingerprints"][party]

    r = api.call("PUT", "/registry/models/breast-lr@1/aliases/production")
    assert r.status_code == 200 and r.json()["aliases"] == ["production"], r.text
    score = api.submit(_spec("applicants", "applicants", [
        {"psi": {}}, {"predict": {"model": "breast-lr@production"}}], label=False))
    job = api.wait(score, {"succeeded", "failed"}, within=120)
    assert job["state"] == "succeeded", job

    new = _scores(cluster, score, sealed=True)
    trained = pd.concat([_scores(cluster, train, sealed=False),  # every row: test and train
                         _scores(cluster, train, sealed=False, step="predict_train")])
    assert len(new) == 200
    np.testing.assert_allclose(new, trained.loc[new.index], rtol=0, atol=1e-9)
    shop_job = cluster.root / "nodes" / "shop" / "work" / "jobs" / score
    assert not list(shop_job.glob("predictions-*"))  # scores at the label holder only

    audit = api.call("GET", "/audit", "admin", params={"limit": 1000}).json()
    actions = [(e["action"], e["target"]) for e in audit]
    assert ("model.register", "breast-lr@1") in actions
    assert ("model.tag", "breast-lr@production") in actions

    first = api.call("POST", "/registry/models/breast-lr@1/delete-consent", "bank-owner").json()
    assert first == {"uid": version["uid"], "deleted": False, "consent": ["bank"],
                     "missing": ["shop"]}
    assert api.call("POST", "/registry/models/breast-lr@1/delete-consent", "shop-owner"
                    ).json()["deleted"] is True
    assert api.call("GET", "/registry/models").json() == []
