"""A local cluster for real: the platform and two node processes over mutual TLS.

Jobs go in through the REST API (HTTPS, verified against the deployment CA) as
the analyst, each dataset owner approves with a signature of the job's spec, the
nodes check it and run the steps talking to each other directly (GrpcChannel), and the
metrics come back. Then the faults: the platform is killed (SIGKILL) and
restarted mid-job, and a node is killed mid-job.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare

pytestmark = pytest.mark.slow

TIMEOUT = 4.0


class Api:
    def __init__(self, cluster: LocalDeployment) -> None:
        self.cluster = cluster
        self.url = cluster.info["url"] + "/api/v1"
        self.tokens = cluster.tokens()
        self.tls = ssl.create_default_context(cafile=cluster.info["ca"])

    def call(self, method: str, path: str, user: str = "analyst", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        # generous: the machine is shared, and nodes training with Paillier load it
        return httpx.request(method, self.url + path, headers=headers, timeout=60,
                             verify=self.tls, **kw)

    def submit(self, spec: dict[str, Any], **extra: Any) -> str:
        r = self.call("POST", "/jobs", json={"spec": spec, **extra})
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        self.cluster.approve_all(job_id)  # each owner signs with its own approval key
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait(self, job_id: str, until: set[str], within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            job = self.job(job_id)
            if job["state"] in until or time.monotonic() > deadline:
                return job
            time.sleep(0.2)

    def wait_running(self, job_id: str, within: float = 30.0) -> None:
        """Until every party's task of the first step has reported progress."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            tasks = self.call("GET", f"/jobs/{job_id}/tasks").json()
            first = [t for t in tasks if t["step_id"] == "describe"]
            if first and all(t["state"] == "running" and t["progress"] > 0 for t in first):
                return
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not start: {self.job(job_id)}")


def spec(sleep_s: float, again: bool = True) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"describe": {"sleep_s": sleep_s}}]
    if again:
        steps.append({"id": "again", "describe": {}})
    return {
        "name": "describe-both",
        "parties": {
            "bank": {"dataset": "bank_customers", "label": "y"},
            "shop": {"dataset": "shop_features"},
        },
        "steps": steps,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("cluster")
    prepare(root, DeploymentSpec(
        {
            "bank": {"bank_customers": shared_data / "breast_hetero_guest.csv"},
            "shop": {"shop_features": shared_data / "breast_hetero_host.csv"},
        },
        heartbeat_s=0.3, task_timeout_s=TIMEOUT, max_attempts=2,
    ))
    with LocalDeployment(root) as running:
        running.start(wait=90)
        yield running


def test_job_submitted_through_the_api_runs_and_reports_metrics(cluster: LocalDeployment) -> None:
    api = Api(cluster)
    job_id = api.submit(spec(0.0))
    job = api.wait(job_id, {"succeeded", "failed"}, within=60)
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0
    result = api.call("GET", f"/jobs/{job_id}/result").json()
    for step in ("describe", "again"):
        bank, shop = result["steps"][step]["bank"], result["steps"][step]["shop"]
        # the breast set split vertically: 569 rows each; id+y+10 and id+20 columns
        assert (bank["metrics"]["rows"], bank["metrics"]["columns"]) == (569, 12)
        assert (shop["metrics"]["rows"], shop["metrics"]["columns"]) == (569, 21)
        # each party learnt the other's row count over the party-to-party channel
        assert bank["metrics"]["rows_by_party"] == {"bank": 569, "shop": 569}
    tasks = api.call("GET", f"/jobs/{job_id}/tasks").json()
    assert sorted((t["step_id"], t["party"], t["state"]) for t in tasks) == [
        ("again", "bank", "succeeded"), ("again", "shop", "succeeded"),
        ("describe", "bank", "succeeded"), ("describe", "shop", "succeeded"),
    ]
    audit = api.call("GET", "/audit", "admin", params={"limit": 1000}).json()
    actions = {e["action"] for e in audit if e["target"] == job_id}
    assert {"job.submit", "task.dispatch", "job.succeeded"} <= actions


ML_STEPS: list[dict[str, Any]] = [
    {"psi": {}},
    {"split": {"test_size": 0.3, "seed": 42, "stratify": "y"}},
    {"scale": {"method": "standard"}},
    {"train": {"model": "logistic_regression", "protocol": "he", "epochs": 3, "key_bits": 1024}},
    {"evaluate": {"metrics": ["auc", "ks"]}},
]


def test_platform_runs_the_same_job_spec_as_sharedml_run(
    cluster: LocalDeployment, shared_data: Path, tmp_path: Path
) -> None:
    """PSI, split, scale, HE logistic regression and evaluation on the cluster give the
    metrics ``sharedml run`` gives for the same spec with every party local: equal sizes,
    and an AUC within the spread of SGD over different minibatch orders (each run draws
    its parties' secret seeds afresh; observed AUCs 0.988-0.996)."""
    from sharedml.standalone import run_job

    api = Api(cluster)
    job_id = api.submit({**spec(0.0), "name": "breast-lr", "steps": ML_STEPS})
    job = api.wait(job_id, {"succeeded", "failed"}, within=120)
    assert job["state"] == "succeeded", job
    steps = api.call("GET", f"/jobs/{job_id}/result").json()["steps"]

    local = run_job({
        "name": "breast-lr",
        "parties": {
            "bank": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
            "shop": {"dataset": str(shared_data / "breast_hetero_host.csv")},
        },
        "steps": ML_STEPS,
    }, tmp_path, embedded=True)
    expected = {s["id"]: s["parties"] for s in local["steps"]}
    for step in ("psi", "split", "scale"):
        for party in ("bank", "shop"):
            assert steps[step][party]["metrics"] == expected[step][party]["metrics"]
    assert steps["split"]["shop"]["metrics"] == {"train_rows": 398, "test_rows": 171}
    auc = steps["evaluate"]["bank"]["metrics"]["auc"]
    assert auc == pytest.approx(expected["evaluate"]["bank"]["metrics"]["auc"], abs=0.03)
    assert auc > 0.95  # and the model is a real one
    assert steps["evaluate"]["shop"]["metrics"] == {}  # scores and metrics at the label holder only


def test_platform_restart_mid_job_loses_nothing(cluster: LocalDeployment) -> None:
    api = Api(cluster)
    job_id = api.submit(spec(5.0))
    api.wait_running(job_id)
    cluster.kill("platform")  # SIGKILL: no shutdown, no flush
    time.sleep(1.0)
    cluster.start_platform()
    cluster.wait_ready(60)
    job = api.wait(job_id, {"succeeded", "failed"}, within=60)
    assert job["state"] == "succeeded", job
    result = api.call("GET", f"/jobs/{job_id}/result").json()
    assert set(result["steps"]) == {"describe", "again"}
    assert all(set(parties) == {"bank", "shop"} for parties in result["steps"].values())
    tasks = api.call("GET", f"/jobs/{job_id}/tasks").json()
    assert {t["attempt"] for t in tasks} == {0}, "resumed, not retried"
    assert len(tasks) == 4


def test_killing_a_node_mid_job_fails_the_job_within_the_timeout(cluster: LocalDeployment) -> None:
    api = Api(cluster)
    job_id = api.submit(spec(30.0, again=False), max_attempts=1)
    api.wait_running(job_id)
    cluster.kill("shop")
    killed = time.monotonic()
    job = api.wait(job_id, {"succeeded", "failed"}, within=TIMEOUT + 20)
    elapsed = time.monotonic() - killed
    assert job["state"] == "failed", job
    assert "party 'shop'" in job["reason"] and "step 'describe'" in job["reason"], job["reason"]
    # detection is at TIMEOUT after the last heartbeat, seen at the next tick (0.2 s)
    # and the next poll (0.2 s); the rest is slack for a loaded machine
    assert elapsed < TIMEOUT + 8, f"took {elapsed:.1f} s"
    print(f"node killed -> job failed in {elapsed:.1f} s (task timeout {TIMEOUT:g} s)")
    tasks = {t["party"]: t for t in api.call("GET", f"/jobs/{job_id}/tasks").json()}
    assert tasks["shop"]["state"] == "failed" and tasks["bank"]["state"] == "canceled"
