"""The platform's /metrics, /healthz and /readyz (issue 13 item 7): what the alert rules read."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from platform_world import make_world
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from sharedml.platform.store.models import Job, Task

SPEC = {"name": "j", "parties": {"bank": {"dataset": "d", "label": "y"}, "shop": {"dataset": "e"}},
        "steps": [{"describe": {}}]}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_probes_answer_without_a_login(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    assert world.call(None, "GET", "/healthz").json() == {"status": "ok"}
    assert world.call(None, "GET", "/readyz").status_code == 200
    world.app.state.metrics.ticks.last -= 31.0  # the scheduler loop stopped ticking
    r = world.call(None, "GET", "/readyz")
    assert r.status_code == 503 and "scheduler loop" in r.json()["status"]


def test_metrics_count_jobs_by_state_and_time_heartbeats_and_silence(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    scheduler = world.app.state.scheduler
    scheduler.nodes.hello("bank", "bank.example:7000", "", "boot-1", "party")
    with world.platform.store.session() as s:  # the datasets as the nodes report them
        for party, name in (("bank", "d"), ("shop", "e")):
            world.platform.datasets.from_node(
                s, party, [{"name": name, "columns": [{"name": "x", "type": "float64"}],
                            "rows": 10}])
    job_id = scheduler.submit(SPEC)
    now = world.clock.now()
    with world.platform.store.session() as s:  # a job the scheduler failed to time out
        job = s.get(Job, job_id)
        job.state, job.timeout_s = "running", 60.0
        row = s.scalars(select(Task).where(Task.job_id == job_id)).first()
        assert row is not None
        row.state, row.started_at = "running", now
        row.heartbeat_at = now - dt.timedelta(seconds=90)
    world.clock.advance(30)
    r = world.call(None, "GET", "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = _samples(r.text)
    assert got[("sharedml_jobs", (("state", "running"),))] == 1.0
    assert got[("sharedml_jobs", (("state", "succeeded"),))] == 0.0
    assert got[("sharedml_node_heartbeat_age_seconds", (("node", "bank"),))] == 30.0
    assert got[("sharedml_node_online", (("node", "bank"),))] == 1.0
    assert got[("sharedml_job_silence_seconds", (("job_id", job_id),))] == 120.0
    assert got[("sharedml_job_timeout_seconds", (("job_id", job_id),))] == 60.0
    assert got[("sharedml_process_resident_memory_bytes", (("role", "platform"),))] > 1e6
    assert re.search(r"^sharedml_process_cpu_seconds_total\{role=\"platform\"\} ", r.text, re.M)


def test_the_alert_rules_name_metrics_that_exist() -> None:
    import yaml

    from sharedml.deployment.bundle import ALERTS

    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"SharedmlNodeMissingHeartbeats", "SharedmlJobStuck"} <= names
    used = set(re.findall(r"sharedml_[a-z_]+", " ".join(r["expr"] for r in rules)))
    assert used == {"sharedml_node_heartbeat_age_seconds",
                    "sharedml_node_heartbeat_interval_seconds",
                    "sharedml_job_silence_seconds", "sharedml_job_timeout_seconds"}
