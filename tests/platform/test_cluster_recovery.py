"""Supervision and recovery on one machine (8.3-5): ``sharedml up``'s supervisor starts a
crashed node again, the step it died in is retried on every party, and the node resumes
the job from the state it sealed to its disk after the earlier steps."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.platform.supervisor import Supervisor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("recovery")
    prepare(root, DeploymentSpec(
        {"bank": {"bank_customers": shared_data / "breast_hetero_guest.csv"},
         "shop": {"shop_features": shared_data / "breast_hetero_host.csv"}},
        heartbeat_s=0.3, task_timeout_s=6.0, max_attempts=3, dealer=False,
    ))
    with LocalDeployment(root) as running:
        running.start(wait=90)
        yield running


def _spec() -> dict[str, Any]:
    return {
        "name": "describe-twice",
        "parties": {"bank": {"dataset": "bank_customers", "label": "y"},
                    "shop": {"dataset": "shop_features"}},
        "steps": [{"describe": {}}, {"id": "again", "describe": {"sleep_s": 6.0}}],
    }


def _wait(predicate: Any, within: float, what: str, tick: Any = None) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {within:g} s: {what}")


def test_a_crashed_node_is_restarted_and_resumes_the_job_from_its_saved_state(
    cluster: LocalDeployment,
) -> None:
    supervisor = Supervisor(cluster)
    with cluster.client("analyst") as analyst:
        job_id = analyst.submit(_spec())["id"]
        cluster.approve_all(job_id)

        def again_running() -> bool:
            tasks = [t for t in analyst.tasks(job_id) if t["step_id"] == "again"]
            return len(tasks) == 2 and all(
                t["state"] == "running" and t["progress"] > 0 for t in tasks)

        _wait(again_running, 60, "step 'again' running on both parties")
        os.kill(cluster.procs["shop"].pid, signal.SIGKILL)  # a crash, not a stop
        restarted: list[str] = []
        _wait(lambda: restarted, 30, "the supervisor restarted shop",
              tick=lambda: restarted.extend(supervisor.check()))
        assert restarted == ["shop"]
        job = _wait(lambda: (j := analyst.job(job_id))["state"] in ("succeeded", "failed") and j,
                    120, "the job ended", tick=supervisor.check)
        assert job["state"] == "succeeded", job
        tasks = analyst.tasks(job_id)
    first = {(t["party"], t["attempt"]) for t in tasks if t["step_id"] == "describe"}
    assert first == {("bank", 0), ("shop", 0)}, "the step before the crash was not run again"
    again = {(t["party"], t["attempt"]): t for t in tasks if t["step_id"] == "again"}
    assert again[("shop", 0)]["state"] == "failed"
    assert "shop" in again[("shop", 0)]["reason"], again[("shop", 0)]["reason"]
    retried = [t for (party, attempt), t in again.items() if attempt > 0]
    assert {t["party"] for t in retried if t["state"] == "succeeded"} == {"bank", "shop"}
    log = (cluster.root / "logs" / "shop.log").read_text()
    assert f"job {job_id} resumes from its saved state after ['describe']" in log
    # the node is back for the next job
    online = {n["id"] for n in cluster.client("admin").nodes() if n["status"] == "online"}
    assert {"bank", "shop"} <= online
