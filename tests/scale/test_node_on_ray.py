"""A job through the platform and two node agents whose config says ``compute: {ray: ...}``
(8.5-2): PSI, preprocessing statistics, SecureBoost ``he`` and batch scoring of a saved
model run on the parties' Ray cluster, and every result is the single-process job's.

The Ray cluster is this test session's (``ray_cluster``); the platform and both
nodes are real processes over mTLS on loopback (:class:`LocalDeployment`), the
nodes joining the cluster as Ray drivers. The reference is the same spec run
by ``sharedml run`` with no Ray at all. Small data: the breast set (569 rows),
cut into buckets and shards of 128 rows so that every operation has several.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components.saved_models import SCORES_AAD
from sharedml.modelpart import FileNodeKeys
from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.standalone.job import run_job

#: make test-parallel: every Ray test on one xdist worker, beside the one cluster
pytestmark = pytest.mark.xdist_group("ray")

FILES = {"bank": "breast_hetero_guest.csv", "shop": "breast_hetero_host.csv"}
TRAIN = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 4}}, {"fill": {}}, {"scale": {}},
         {"train": {"model": "secureboost", "protocol": "he", "n_estimators": 2, "max_depth": 2,
                    "n_bins": 8, "key_bits": 1024}},
         {"predict": {}}]
#: One worker per party (each actor is a fresh process: the cost of this test); two lanes
#: and uneven lane counts are test_bucketed_psi's.
SMALL = {"workers": 1, "cpus_per_worker": 0.5, "bucket_rows": 128, "shard_rows": 128}


def _spec(datasets: dict[str, str], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "breast-sb", "parties": {
        "bank": {"dataset": datasets["bank"], "label": "y"},
        "shop": {"dataset": datasets["shop"]}}, "steps": steps}


@pytest.fixture(scope="module")
def cluster(ray_cluster: Any, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("ray-nodes")
    address = ray_cluster.get_runtime_context().gcs_address
    prepare(root, DeploymentSpec(
        {p: {"data": shared_data / f} for p, f in FILES.items()}, heartbeat_s=0.3,
        task_timeout_s=120, max_attempts=1, dealer=False,
        compute={"ray": {"address": address, **SMALL}},
    ))
    with LocalDeployment(root) as running:
        running.start(wait=90)
        yield running


def _run(cluster: LocalDeployment, steps: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Submit, approve, wait; the job id and its public result per step and party."""
    with cluster.client("analyst") as api:
        job_id = api.submit(_spec({"bank": "data", "shop": "data"}, steps))["id"]
        cluster.approve_all(job_id)
        job = api.wait(job_id, timeout=300, poll=0.3)
        assert job["state"] == "succeeded", (job, cluster.log_tail("bank"), cluster.log_tail("shop"))
        steps = api.result(job_id)["steps"]
        return job_id, steps


def _node_file(cluster: LocalDeployment, party: str, job_id: str, name: str) -> Path:
    return cluster.root / "nodes" / party / "work" / "jobs" / job_id / name


def _scores(data: bytes) -> pd.Series:
    return pd.read_csv(io.BytesIO(data), dtype={"id": str}).set_index("id")["score"]


@pytest.fixture(scope="module")
def single(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training job in one process per party, no Ray."""
    out = tmp_path_factory.mktemp("single")
    run_job(_spec({p: str(shared_data / f) for p, f in FILES.items()}, TRAIN), out, embedded=True)
    return out


@pytest.fixture(scope="module")
def trained(cluster: LocalDeployment) -> tuple[str, dict[str, Any]]:
    return _run(cluster, TRAIN)


def test_job_on_ray_equals_the_single_process_job(
    cluster: LocalDeployment, single: Path, trained: tuple[str, dict[str, Any]]
) -> None:
    job_id, steps = trained
    got = _scores(_node_file(cluster, "bank", job_id, "predictions-predict.csv").read_bytes())
    want = _scores((single / "bank" / "predictions-predict.csv").read_bytes())
    assert list(got.index) == list(want.index)  # the aligned order of the single-process PSI
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=1e-9)

    # every heavy step ran on the cluster: lanes for PSI, a task per 128-row shard for
    # the statistics (train rows) and the scores (test rows), randomiser actors at the
    # label holder and ciphertext sums at the feature holder
    split = steps["split"]["bank"]["metrics"]
    train_rows, test_rows = split["train_rows"], split["test_rows"]
    assert test_rows == len(want)
    assert steps["psi"]["bank"]["metrics"]["compute"]["ray_actors"] == SMALL["workers"]
    for party in FILES:
        for step, rows in (("fill", train_rows), ("scale", train_rows), ("predict", test_rows)):
            assert steps[step][party]["metrics"]["compute"]["ray_tasks"] == -(-rows // 128)
    assert steps["train"]["bank"]["metrics"]["compute"]["ray_actors"] == SMALL["workers"]
    assert steps["train"]["shop"]["metrics"]["compute"]["ray_tasks"] > 0
    for party in FILES:  # sharded statistics: the single-process scaler within 1e-12
        mine = json.loads(_node_file(cluster, party, job_id, "scaler-scale.json").read_text())
        ref = json.loads((single / party / "scaler-scale.json").read_text())
        assert mine["columns"] == ref["columns"]
        scale = np.asarray(ref["scale"])
        np.testing.assert_allclose(mine["scale"], scale, rtol=1e-12, atol=0)
        # a mean is within 1e-12 of the column's spread (relative to the mean itself
        # it is ill-conditioned: these columns are centred, some means are 1e-5 of it)
        assert np.all(np.abs(np.asarray(mine["center"]) - ref["center"]) <= 1e-12 * scale)


def test_batch_scoring_a_saved_model_on_ray_gives_the_training_jobs_scores(
    cluster: LocalDeployment, trained: tuple[str, dict[str, Any]]
) -> None:
    train_id, _ = trained
    job_id, steps = _run(cluster, [{"psi": {}}, {"predict": {"model": "breast-sb@1"}}])
    rows = steps["psi"]["bank"]["metrics"]["intersection"]
    for party in FILES:  # every aligned row scored, a task per 128-row shard
        assert steps["predict"][party]["metrics"]["compute"]["ray_tasks"] == -(-rows // 128)
    work = cluster.root / "nodes" / "bank" / "work"
    sealed = _node_file(cluster, "bank", job_id, "predictions-predict.csv.sealed").read_bytes()
    got = _scores(FileNodeKeys(work / "keys").open(sealed, aad=SCORES_AAD))
    want = _scores(_node_file(cluster, "bank", train_id, "predictions-predict.csv").read_bytes())
    assert len(got) == rows and set(want.index) < set(got.index)  # the test rows among all
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=0, atol=1e-9)
