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
         "shop": {"shop_features": shared_data / "breast_hetero_host.csv"},
         "third": {"third_features": shared_data / "breast_hetero_host.csv"}},
        heartbeat_s=0.3, task_timeout_s=6.0, max_attempts=3, dealer=False,
    ))
    with LocalDeployment(root) as running:
        running.start(wait=90)
        yield running


def _spec(other: str = "shop", sleep_s: float = 6.0) -> dict[str, Any]:
    return {
        "name": f"describe-twice-{other}",
        "parties": {"bank": {"dataset": "bank_customers", "label": "y"},
                    other: {"dataset": f"{other}_features"}},
        "steps": [{"describe": {}}, {"id": "again", "describe": {"sleep_s": sleep_s}}],
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


def test_a_dead_node_fails_only_its_jobs_with_a_clear_reason_and_rejoins(
    cluster: LocalDeployment,
) -> None:
    with cluster.client("analyst") as analyst:
        other_job = analyst.submit(_spec("shop", sleep_s=10.0))["id"]
        its_job = analyst.submit(_spec("third", sleep_s=30.0))["id"]
        for job_id in (other_job, its_job):
            cluster.approve_all(job_id)
        _wait(lambda: all(t["state"] == "running" for t in analyst.tasks(its_job)
                          if t["step_id"] == "again") and any(
            t["step_id"] == "again" for t in analyst.tasks(its_job)), 60, "third's job running")
        cluster.kill("third")  # dies and stays down: no supervisor here
        failed = _wait(lambda: (j := analyst.job(its_job))["state"] in ("failed", "succeeded")
                       and j, 60, "third's job ended")
        assert failed["state"] == "failed", failed
        assert "'third'" in failed["reason"] and "'again'" in failed["reason"], failed["reason"]
        other = _wait(lambda: (j := analyst.job(other_job))["state"] in ("failed", "succeeded")
                      and j, 90, "the other job ended")
        assert other["state"] == "succeeded", other  # a job without the dead node is untouched
        cluster.start_node("third")  # back: it says hello and takes new work
        _wait(lambda: any(n["id"] == "third" and n["status"] == "online"
                          for n in cluster.client("admin").nodes()), 60, "third online again")
        again = analyst.submit(_spec("third", sleep_s=0.0))["id"]
        cluster.approve_all(again)
        done = _wait(lambda: (j := analyst.job(again))["state"] in ("failed", "succeeded") and j,
                     90, "the new job ended")
        assert done["state"] == "succeeded", done
