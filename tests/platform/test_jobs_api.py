"""The job routes over the real app, store, auth and approvals (in-process).

Nodes are played by calling the scheduler's node interface directly; the
cluster tests (test_cluster_jobs.py) run real node processes.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from platform_world import TWO_PARTY_SPEC, World, two_party_datasets

SPEC = TWO_PARTY_SPEC


@pytest.fixture
def jobs_world(world: World) -> World:
    """Owners of a dataset at each party, the analyst allowed to use both."""
    two_party_datasets(world)
    world.add_user("other", "analyst")
    assert world.login("other").status_code == 200
    return world


def submit(w: World, body: dict[str, Any], who: str = "analyst") -> Any:
    return w.call(who, "POST", "/api/v1/jobs", json=body)


def approve(w: World, job_id: str) -> None:
    for owner in ("data_owner", "shop_owner"):
        for a in w.call(owner, "GET", "/api/v1/approvals", params={"job_id": job_id}).json():
            r = w.call(owner, "POST", f"/api/v1/approvals/{a['id']}/decision",
                       json={"approve": True})
            assert r.status_code == 200, r.text


def test_submit_list_get_tasks_and_result(jobs_world: World) -> None:
    w = jobs_world
    r = submit(w, {"spec": SPEC, "max_attempts": 2, "timeout_s": 9})
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["state"], job["max_attempts"], job["timeout_s"]) == ("pending", 2, 9.0)
    job_id = job["id"]
    assert [j["id"] for j in w.call("analyst", "GET", "/api/v1/jobs").json()] == [job_id]
    assert w.call("other", "GET", "/api/v1/jobs").json() == []
    assert w.call("other", "GET", f"/api/v1/jobs/{job_id}").status_code == 403

    scheduler = w.app.state.scheduler
    for party in ("bank", "shop"):
        scheduler.node_hello(party, "127.0.0.1:1")
    scheduler.tick()
    waiting = w.call("analyst", "GET", f"/api/v1/jobs/{job_id}").json()
    assert waiting["state"] == "pending" and "approval" in waiting["reason"]
    approve(w, job_id)
    scheduler.tick()
    assert w.call("analyst", "GET", f"/api/v1/jobs/{job_id}").json()["state"] == "running"
    tasks = w.call("analyst", "GET", f"/api/v1/jobs/{job_id}/tasks").json()
    assert sorted((t["party"], t["state"]) for t in tasks) == [
        ("bank", "running"), ("shop", "running")
    ]
    for t in tasks:
        scheduler.task_report(t["party"], t["id"], True, {"rows": 10}, "", 0.2)
    done = w.call("analyst", "GET", f"/api/v1/jobs/{job_id}").json()
    assert done["state"] == "succeeded" and done["progress"] == 1.0
    result = w.call("auditor", "GET", f"/api/v1/jobs/{job_id}/result").json()
    assert result["steps"]["describe"]["shop"] == {"metrics": {"rows": 10}, "seconds": 0.2}
    assert w.call("analyst", "POST", f"/api/v1/jobs/{job_id}/cancel").status_code == 409


def test_yaml_text_spec_is_parsed_never_opened_as_a_path(jobs_world: World) -> None:
    w = jobs_world
    assert submit(w, {"spec": yaml.safe_dump(SPEC)}).status_code == 201
    r = submit(w, {"spec": "/etc/passwd"})
    assert r.status_code == 422 and "must be a mapping" in r.json()["detail"]
    r = submit(w, {"spec": "parties: [unclosed"})
    assert r.status_code == 422 and "not YAML" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"steps": [{"describe": {"sleep_s": -1}}]}, "steps[0].describe.sleep_s"),
        ({"steps": [{"describe": {"bogus": 1}}]}, "steps[0].describe.bogus"),
        ({"steps": [{"nope": {}}]}, "unknown step 'nope'"),
        ({"parties": {"bank": {"datset": "x"}}}, "parties.bank.datset"),
        ({"steps": []}, "steps"),
    ],
)
def test_bad_spec_is_422_naming_the_field(jobs_world: World, change: dict[str, Any],
                                          path: str) -> None:
    r = submit(jobs_world, {"spec": {**SPEC, **change}})
    assert r.status_code == 422, r.text
    assert path in r.json()["detail"]


def test_access_is_checked_on_every_route(jobs_world: World) -> None:
    w = jobs_world
    assert w.call(None, "POST", "/api/v1/jobs", json={"spec": SPEC}).status_code == 401
    assert submit(w, {"spec": SPEC}, who="auditor").status_code == 403
    # a dataset nobody registered, and one the analyst may not use
    unknown = {**SPEC, "parties": {**SPEC["parties"], "shop": {"dataset": "ghost"}}}
    assert submit(w, {"spec": unknown}).status_code == 404
    assert submit(w, {"spec": SPEC}, who="other").status_code == 403
    job_id = submit(w, {"spec": SPEC}).json()["id"]
    assert w.call("data_owner", "POST", f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert w.call("other", "POST", f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert w.call("analyst", "GET", "/api/v1/jobs/" + "0" * 32).status_code == 404
    assert w.call("analyst", "GET", "/api/v1/jobs/not-hex").status_code == 422
    assert w.call("analyst", "GET", "/api/v1/jobs", params={"state": "weird"}).status_code == 422


def test_cancel_reaches_tasks_and_is_audited(jobs_world: World) -> None:
    w = jobs_world
    job_id = submit(w, {"spec": SPEC}).json()["id"]
    r = w.call("analyst", "POST", f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "canceled"
    assert r.json()["reason"] == "canceled by analyst"
    tasks = w.call("analyst", "GET", f"/api/v1/jobs/{job_id}/tasks").json()
    assert {t["state"] for t in tasks} == {"canceled"}
    assert w.call("analyst", "POST", f"/api/v1/jobs/{job_id}/cancel").status_code == 409
    log = w.call("admin", "GET", "/api/v1/audit", params={"action": "job.cancel"}).json()
    assert [(e["actor"], e["target"]) for e in log] == [("analyst", job_id)]
    assert w.call("admin", "GET", "/api/v1/audit/verify").json()["ok"] is True
