"""What the endpoints do: dataset scoping, the approval flow (8.3-1), runtime settings (8.6-5),
models, users, clean errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from platform_world import World
from sqlalchemy import select

from sharedml.platform.store.models import Job

V1 = "/api/v1"


def ok(r: Any, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json() if r.content else None


def owner_of(w: World, party: str) -> str:
    """The data owner acting for ``party`` (the world's data_owner is the bank's)."""
    if party == "bank":
        return "data_owner"
    name = f"{party}_owner"
    if name not in w.tokens:
        w.add_user(name, "data_owner", party=party)
        w.login(name)
    return name


def dataset(w: World, name: str, party: str = "bank", **kw: Any) -> dict[str, Any]:
    body = {"owner_party": party, "name": name, "columns": [{"name": "age", "type": "int"}], **kw}
    return ok(w.call(owner_of(w, party), "POST", f"{V1}/datasets", json=body), 201)


def submit(w: World, who: str, datasets: dict[str, str], **kw: Any) -> Any:
    spec = {
        "name": "credit",
        "parties": {p: {"dataset": d} for p, d in datasets.items()},
        "steps": [{"describe": {}}],
    }
    return w.call(who, "POST", f"{V1}/jobs", json={"spec": spec, **kw})


def test_datasets_are_metadata_and_scoped_to_grants(world: World) -> None:
    d1 = dataset(world, "customers", row_count=1000, description="bank's customers")
    d2 = dataset(world, "txns", party="bank")
    assert d1["columns"] == [{"name": "age", "type": "int"}] and d1["row_count"] == 1000
    assert {d["name"] for d in ok(world.call("analyst", "GET", f"{V1}/datasets"))} == set()
    assert world.call("analyst", "GET", f"{V1}/datasets/{d1['id']}").status_code == 403
    grant = {"user_id": world.ids["analyst"], "permission": "read"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d1['id']}/grants", json=grant))
    assert [d["name"] for d in ok(world.call("analyst", "GET", f"{V1}/datasets"))] == ["customers"]
    ok(world.call("analyst", "GET", f"{V1}/datasets/{d1['id']}"))
    # auditors and admins see all, data owners their own
    assert len(ok(world.call("auditor", "GET", f"{V1}/datasets"))) == 2
    assert len(ok(world.call("data_owner", "GET", f"{V1}/datasets"))) == 2
    # a duplicate name for the same party clashes; another party may use it (its own owner)
    assert world.call("data_owner", "POST", f"{V1}/datasets",
                      json={"owner_party": "bank", "name": "txns"}).status_code == 409  # fmt: skip
    assert world.call("data_owner", "POST", f"{V1}/datasets",
                      json={"owner_party": "shop", "name": "txns"}).status_code == 403  # fmt: skip
    dataset(world, "txns", party="shop")
    ok(world.call("data_owner", "DELETE", f"{V1}/datasets/{d2['id']}"), 204)
    assert world.call("data_owner", "GET", f"{V1}/datasets/{d2['id']}").status_code == 404


def test_project_membership_shows_its_datasets(world: World) -> None:
    p = ok(world.call("admin", "POST", f"{V1}/projects", json={"name": "risk"}), 201)
    grant = {"user_id": world.ids["data_owner"], "permission": "use"}
    ok(world.call("admin", "PUT", f"{V1}/projects/{p['id']}/grants", json=grant))
    dataset(world, "in-project", project_id=p["id"])
    assert ok(world.call("analyst", "GET", f"{V1}/datasets")) == []
    member = {"user_id": world.ids["analyst"], "permission": "read"}
    ok(world.call("admin", "PUT", f"{V1}/projects/{p['id']}/grants", json=member))
    assert [d["name"] for d in ok(world.call("analyst", "GET", f"{V1}/datasets"))] == ["in-project"]
    assert [x["name"] for x in ok(world.call("analyst", "GET", f"{V1}/projects"))] == ["risk"]
    ok(world.call("admin", "DELETE", f"{V1}/projects/{p['id']}/grants/{world.ids['analyst']}"), 204)
    assert ok(world.call("analyst", "GET", f"{V1}/projects")) == []


def test_a_job_needs_use_grants_on_its_datasets(world: World) -> None:
    d = dataset(world, "customers")
    r = submit(world, "analyst", {"bank": "customers"})
    assert r.status_code == 403 and "use" in r.json()["detail"]
    read = {"user_id": world.ids["analyst"], "permission": "read"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d['id']}/grants", json=read))
    assert submit(world, "analyst", {"bank": "customers"}).status_code == 403  # read is not use
    r = submit(world, "analyst", {"bank": "unregistered"})
    assert r.status_code == 404 and "not registered" in r.json()["detail"]


def test_each_use_is_approved_by_the_owner_before_it_runs(world: World) -> None:
    """8.3-1: submit -> pending approvals -> only the owner decides -> approved."""
    d1 = dataset(world, "customers")
    d2 = dataset(world, "orders", party="shop")
    for d, owner in ((d1, "data_owner"), (d2, "shop_owner")):
        use = {"user_id": world.ids["analyst"], "permission": "use"}
        ok(world.call(owner, "PUT", f"{V1}/datasets/{d['id']}/grants", json=use))
    job = ok(submit(world, "analyst", {"bank": "customers", "shop": "orders"}), 201)
    status = ok(world.call("analyst", "GET", f"{V1}/approvals/jobs/{job['id']}"))
    assert status["status"] == "pending" and len(status["approvals"]) == 2
    assert not world.platform.approvals.approvals_complete(job["id"])
    (first,) = ok(world.call("data_owner", "GET", f"{V1}/approvals", params={"state": "pending"}))
    (second,) = ok(world.call("shop_owner", "GET", f"{V1}/approvals", params={"state": "pending"}))
    assert (first["dataset_id"], second["dataset_id"]) == (d1["id"], d2["id"])
    # another data owner cannot decide on these datasets; nor can an admin; nor the
    # owner of the other party's
    assert world.call("shop_owner", "POST", f"{V1}/approvals/{first['id']}/decision",
                      json={"approve": True}).status_code == 403  # fmt: skip
    world.add_user("other_owner", "data_owner")
    world.login("other_owner")
    path = f"{V1}/approvals/{first['id']}/decision"
    assert world.call("other_owner", "POST", path, json={"approve": True}).status_code == 403
    assert world.call("admin", "POST", path, json={"approve": True}).status_code == 403
    decided = ok(world.call("data_owner", "POST", path, json={"approve": True, "comment": "fine"}))
    assert decided["state"] == "approved" and decided["decided_by"] == world.ids["data_owner"]
    assert world.call("data_owner", "POST", path, json={"approve": False}).status_code == 409
    assert not world.platform.approvals.approvals_complete(job["id"])
    ok(world.call("shop_owner", "POST", f"{V1}/approvals/{second['id']}/decision", json={"approve": True}))
    assert world.platform.approvals.approvals_complete(job["id"])
    assert ok(world.call("analyst", "GET", f"{V1}/approvals/jobs/{job['id']}"))["status"] == "approved"
    actions = [e.action for e in world.platform.audit.query(action="approval.", limit=100)]
    assert actions.count("approval.approved") == 2 and "approval.request" in actions


def test_a_rejection_fails_the_jobs_use_of_data(world: World) -> None:
    d = dataset(world, "customers")
    use = {"user_id": world.ids["analyst"], "permission": "use"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d['id']}/grants", json=use))
    job = ok(submit(world, "analyst", {"bank": "customers"}), 201)
    (a,) = ok(world.call("data_owner", "GET", f"{V1}/approvals", params={"job_id": job["id"]}))
    ok(world.call("data_owner", "POST", f"{V1}/approvals/{a['id']}/decision", json={"approve": False}))
    assert world.platform.approvals.status(job["id"]) == "rejected"
    world.app.state.scheduler.tick()
    got = ok(world.call("analyst", "GET", f"{V1}/jobs/{job['id']}"))
    assert got["state"] == "failed" and "rejected" in got["reason"]


def test_runtime_settings_take_effect_without_a_restart_and_are_audited(world: World) -> None:
    before = ok(world.call("auditor", "GET", f"{V1}/settings"))
    assert before["session_idle_minutes"] == 30
    changed = ok(world.call("admin", "PATCH", f"{V1}/settings",
                            json={"session_idle_minutes": 5, "task_timeout_s": 12.5}))  # fmt: skip
    assert changed["session_idle_minutes"] == 5
    # the same app, the same sessions: 6 idle minutes now end a session
    world.clock.advance(minutes=6)
    assert world.call("analyst", "GET", f"{V1}/auth/me").status_code == 401
    assert world.app.state.scheduler.config.task_timeout_s == 12.5
    (entry,) = world.platform.audit.query(action="settings.change")
    assert entry.actor == "admin"
    assert json.loads(entry.detail)["changes"]["session_idle_minutes"] == [30, 5]


@pytest.mark.parametrize(
    "change",
    [{"session_idle_minutes": 0}, {"log_level": "LOUD"}, {"no_such_setting": 1}, {"lockout_threshold": "x"}],
)
def test_bad_settings_are_refused_by_name(world: World, change: dict[str, Any]) -> None:
    r = world.call("admin", "PATCH", f"{V1}/settings", json=change)
    assert r.status_code == 422 and next(iter(change)) in r.json()["detail"]
    assert ok(world.call("admin", "GET", f"{V1}/settings"))["session_idle_minutes"] == 30


def test_lockout_threshold_is_a_live_setting(world: World) -> None:
    ok(world.call("admin", "PATCH", f"{V1}/settings", json={"lockout_threshold": 2}))
    bad = {"username": "analyst", "password": "wrong-password"}
    for _ in range(2):
        world.client.post(f"{V1}/auth/login", json=bad)
    assert world.login("analyst").status_code == 429  # this client backs off after two


def test_users_admin_endpoints(world: World) -> None:
    new = ok(world.call("admin", "POST", f"{V1}/users",
                        json={"username": "bob", "password": "password123", "role": "analyst"}), 201)  # fmt: skip
    assert new["totp_uri"].startswith("otpauth://totp/sharedml:bob?") and new["totp_enrolled"]
    listed = ok(world.call("auditor", "GET", f"{V1}/users"))
    assert "bob" in [u["username"] for u in listed]
    assert all("password" not in json.dumps(u) and "totp_uri" not in u for u in listed)
    assert world.call("admin", "POST", f"{V1}/users",
                      json={"username": "bob", "password": "password123", "role": "analyst"}).status_code == 409  # fmt: skip
    ok(world.call("admin", "PATCH", f"{V1}/users/{new['id']}", json={"role": "auditor"}))
    assert ok(world.call("admin", "GET", f"{V1}/users/{new['id']}"))["role"] == "auditor"
    uri = ok(world.call("admin", "POST", f"{V1}/users/{new['id']}/totp"))["totp_uri"]
    assert uri != new["totp_uri"]
    assert world.call("admin", "POST", f"{V1}/users",
                      json={"username": "eve", "password": "short", "role": "analyst"}).status_code == 422  # fmt: skip


def test_models_are_listed_to_those_who_may_read_the_job(world: World) -> None:
    now = world.clock.now()
    with world.platform.store.session() as s:
        job = Job(name="j", spec="{}", created_by=world.ids["analyst"], created_at=now, updated_at=now)
        s.add(job)
    m = ok(world.call("admin", "POST", f"{V1}/models",
                      json={"job_id": job.id, "party": "bank", "path": "/srv/m.bin", "metrics": {"auc": 0.8}}), 201)  # fmt: skip
    assert [x["id"] for x in ok(world.call("analyst", "GET", f"{V1}/models"))] == [m["id"]]
    assert ok(world.call("data_owner", "GET", f"{V1}/models")) == []
    assert ok(world.call("analyst", "GET", f"{V1}/models", params={"job_id": job.id}))[0]["metrics"] == {"auc": 0.8}
    assert world.call("admin", "POST", f"{V1}/models", json={"job_id": "nope", "party": "bank"}).status_code == 404


def test_nodes_are_listed(world: World) -> None:
    world.app.state.scheduler.node_hello("bank", "127.0.0.1:7001")
    nodes = ok(world.call("analyst", "GET", f"{V1}/nodes"))
    assert [(n["id"], n["address"]) for n in nodes] == [("bank", "127.0.0.1:7001")]
    ok(world.call("admin", "DELETE", f"{V1}/nodes/bank"), 204)
    assert world.call("admin", "GET", f"{V1}/nodes/bank").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"{V1}/users/99999999999999999999", None),
        ("GET", f"{V1}/datasets/0", None),
        ("GET", f"{V1}/projects/abc/grants", None),
        ("POST", f"{V1}/datasets", {"owner_party": "../etc", "name": "x"}),
        ("POST", f"{V1}/datasets", {"owner_party": "bank", "name": "x", "row_count": -1}),
        ("PATCH", f"{V1}/settings", ["not", "a", "mapping"]),
        ("POST", f"{V1}/auth/login", {"username": "a"}),
    ],
)
def test_bad_input_is_a_clean_4xx(world: World, method: str, path: str, body: Any) -> None:
    r = world.call("admin", method, path, json=body)
    assert 400 <= r.status_code < 500, r.text


def test_unknown_ids_are_404(world: World) -> None:
    for path in (f"{V1}/users/999", f"{V1}/projects/999", f"{V1}/datasets/999",
                 f"{V1}/models/999", f"{V1}/nodes/nope", f"{V1}/approvals/jobs/nope"):  # fmt: skip
        r = world.call("admin", "GET", path)
        assert r.status_code == 404 and r.json()["error"] == "NotFound", path


def test_the_audit_endpoints(world: World) -> None:
    dataset(world, "customers")
    entries = ok(world.call("auditor", "GET", f"{V1}/audit", params={"action": "dataset."}))
    assert [e["target"] for e in entries] == ["bank/customers"]
    v = ok(world.call("auditor", "GET", f"{V1}/audit/verify"))
    assert v["ok"] and v["entries"] >= 5
    text = world.call("auditor", "GET", f"{V1}/audit/export").text
    assert [json.loads(line)["seq"] for line in text.splitlines()] == list(range(1, v["entries"] + 1))
    with world.platform.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'data_ownes' WHERE action = 'dataset.register'")
    bad = ok(world.call("auditor", "GET", f"{V1}/audit/verify"))
    (seq,) = [e["seq"] for e in entries]
    assert not bad["ok"] and bad["first_bad_seq"] == seq


def test_stored_job_spec_is_json(world: World) -> None:
    d = dataset(world, "customers")
    use = {"user_id": world.ids["analyst"], "permission": "use"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d['id']}/grants", json=use))
    job = ok(submit(world, "analyst", {"bank": "customers"}), 201)
    with world.platform.store.session() as s:
        stored = s.scalars(select(Job).where(Job.id == job["id"])).one()
    assert json.loads(stored.spec)["parties"] == {"bank": {"dataset": "customers"}}


def test_no_task_is_dispatched_before_every_owner_approved(world: World) -> None:
    """8.3-1 end to end with the app's scheduler: orders reach the node only after approval."""
    d = dataset(world, "customers")
    use = {"user_id": world.ids["analyst"], "permission": "use"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d['id']}/grants", json=use))
    job = ok(submit(world, "analyst", {"bank": "customers"}), 201)
    scheduler = world.app.state.scheduler
    scheduler.node_hello("bank", "127.0.0.1:7001")
    scheduler.tick()
    orders, _ = scheduler.node_beat("bank", {})
    assert orders == []
    waiting = ok(world.call("analyst", "GET", f"{V1}/jobs/{job['id']}"))
    assert waiting["state"] == "pending" and "approval" in waiting["reason"]
    (a,) = ok(world.call("data_owner", "GET", f"{V1}/approvals", params={"job_id": job["id"]}))
    ok(world.call("data_owner", "POST", f"{V1}/approvals/{a['id']}/decision", json={"approve": True}))
    scheduler.tick()
    orders, _ = scheduler.node_beat("bank", {})
    assert [(o["job_id"], o["step_id"]) for o in orders] == [(job["id"], "describe")]


def test_a_job_in_a_project_needs_use_on_the_project(world: World) -> None:
    d = dataset(world, "customers")
    use = {"user_id": world.ids["analyst"], "permission": "use"}
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{d['id']}/grants", json=use))
    p = ok(world.call("admin", "POST", f"{V1}/projects", json={"name": "risk"}), 201)
    r = submit(world, "analyst", {"bank": "customers"}, project_id=p["id"])
    assert r.status_code == 403
    read = {"user_id": world.ids["analyst"], "permission": "read"}
    ok(world.call("admin", "PUT", f"{V1}/projects/{p['id']}/grants", json=read))
    assert submit(world, "analyst", {"bank": "customers"}, project_id=p["id"]).status_code == 403
    ok(world.call("admin", "PUT", f"{V1}/projects/{p['id']}/grants", json=use))
    job = ok(submit(world, "analyst", {"bank": "customers"}, project_id=p["id"]), 201)
    assert job["project_id"] == p["id"]
    # project members read the project's jobs; others do not
    world.add_user("colleague", "analyst")
    world.login("colleague")
    assert world.call("colleague", "GET", f"{V1}/jobs/{job['id']}").status_code == 403
    member = {"user_id": world.ids["colleague"], "permission": "read"}
    ok(world.call("admin", "PUT", f"{V1}/projects/{p['id']}/grants", json=member))
    assert world.call("colleague", "GET", f"{V1}/jobs/{job['id']}").status_code == 200
    assert world.call("colleague", "POST", f"{V1}/jobs/{job['id']}/cancel").status_code == 403
