"""The platform's /metrics, /healthz and /readyz (issue 13 item 7): what the alert rules read."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from platform_world import CHEAP, make_world
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from sharedml.errors import ConfigError
from sharedml.platform.api import create_app
from sharedml.platform.cli import metrics_listener
from sharedml.platform.config import PlatformConfig
from sharedml.platform.service import Platform
from sharedml.platform.store.models import Job, Task
from sharedml.telemetry.access import MetricsAccess, write_token

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


def _app_with(tmp_path: Path, access: MetricsAccess) -> TestClient:
    platform = Platform.open(tmp_path / "data", hasher=CHEAP)
    return TestClient(create_app(PlatformConfig(tmp_path / "data", metrics=access),
                                 platform=platform))


def test_with_a_token_file_metrics_need_the_bearer_token_and_probes_stay_open(
    tmp_path: Path,
) -> None:
    token = write_token(tmp_path / "metrics.token")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    client = _app_with(tmp_path, MetricsAccess(token_file=token))
    secret = token.read_text().strip()
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"},
                    {"Authorization": f"Basic {secret}"}, {"Authorization": f"Bearer {secret}x"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "sharedml_" not in r.text
    r = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and "sharedml_jobs" in r.text
    assert client.get("/healthz").status_code == 200


def test_a_token_file_others_may_read_stops_the_start_and_a_listener_moves_metrics(
    tmp_path: Path,
) -> None:
    token = write_token(tmp_path / "metrics.token")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others") as err:
        _app_with(tmp_path, MetricsAccess(token_file=token))
    assert "chmod 600" in (err.value.remedy or "")
    token.chmod(0o600)
    access = MetricsAccess(listen="127.0.0.1:0", token_file=token)
    client = _app_with(tmp_path, access)
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token.read_text().strip()}"})
    assert r.status_code == 404 and "metrics listener" in r.text
    server = metrics_listener(client.app, access)  # as 'sharedml platform serve' starts it
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(base + "/metrics").status_code == 401
        r = httpx.get(base + "/metrics",
                      headers={"Authorization": f"Bearer {token.read_text().strip()}"})
        assert r.status_code == 200 and "sharedml_jobs" in r.text
    finally:
        server.close()
