"""Issue 14 item 1: owner approval cannot be bypassed by a user with no tie to the owner.

The attack as found: a data_owner with no tie to the bank registered a dataset under
``owner_party: bank`` (after the bank retired its record), granted it to an analyst,
approved the analyst's job — and the job read the bank node's real file. Only the
bank's own data owners and admins may register, grant and approve the bank's
datasets; everything here goes through the REST API as those users would.
(That a *compromised platform* still cannot make the bank's node read is shown with
real node agents in ``test_cluster_jobs_nodes.py`` and ``tests/node/test_node_guard.py``.)
"""

from __future__ import annotations

from typing import Any

from platform_world import World

V1 = "/api/v1"


def ok(r: Any, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json() if r.content else None


def test_a_data_owner_with_no_tie_to_the_bank_cannot_register_grant_or_approve_its_data(
    world: World,
) -> None:
    # the bank's own data owner registers its customers, then retires the record
    body = {"owner_party": "bank", "name": "customers", "columns": [{"name": "age", "type": "int"}]}
    mine = ok(world.call("data_owner", "POST", f"{V1}/datasets", json=body), 201)
    ok(world.call("data_owner", "DELETE", f"{V1}/datasets/{mine['id']}"), 204)
    # mallory: a data owner of another organisation (or of none)
    ok(world.call("admin", "POST", f"{V1}/users", json={
        "username": "mallory", "password": "mallory-password", "role": "data_owner",
        "totp": False, "party": "shop"}), 201)  # fmt: skip
    world.tokens["mallory"] = ok(world.client.post(f"{V1}/auth/login", json={
        "username": "mallory", "password": "mallory-password"}))["token"]  # fmt: skip
    # she registers a dataset under the bank's name: refused
    r = world.call("mallory", "POST", f"{V1}/datasets", json=body)
    assert r.status_code == 403, r.text
    assert "bank" in r.json()["detail"]
    # so no record exists for a job to name, nor for her to grant or approve
    names = [(d["owner_party"], d["name"]) for d in ok(world.call("admin", "GET", f"{V1}/datasets"))]
    assert ("bank", "customers") not in names
    spec = {"name": "steal", "parties": {"bank": {"dataset": "customers"}},
            "steps": [{"describe": {}}]}
    r = world.call("analyst", "POST", f"{V1}/jobs", json={"spec": spec})
    assert r.status_code in (403, 404), r.text
    # when the bank registers it again, she can neither grant it nor approve a use of it
    again = ok(world.call("data_owner", "POST", f"{V1}/datasets", json=body), 201)
    grant = {"user_id": world.ids["analyst"], "permission": "use"}
    assert world.call("mallory", "PUT", f"{V1}/datasets/{again['id']}/grants",
                      json=grant).status_code == 403  # fmt: skip
    ok(world.call("data_owner", "PUT", f"{V1}/datasets/{again['id']}/grants", json=grant))
    job = ok(world.call("analyst", "POST", f"{V1}/jobs", json={"spec": spec}), 201)
    (approval,) = world.platform.approvals.for_job(job["id"])
    decision = world.call("mallory", "POST", f"{V1}/approvals/{approval.id}/decision",
                          json={"approve": True})
    assert decision.status_code == 403, decision.text
    assert world.platform.approvals.status(job["id"]) == "pending"


def test_dataset_records_come_from_the_node_that_holds_them(world: World) -> None:
    """A node's hello carries its registry's records (the node service names the party by
    the node's certificate); an owner's registration adopts the record, whatever columns
    the owner claims."""
    from sharedml.platform.scheduler import Scheduler

    scheduler = Scheduler.for_platform(world.platform)
    reported = [{"name": "customers", "rows": 569,
                 "columns": [{"name": "id", "type": "category"}, {"name": "y", "type": "int"}]}]
    scheduler.node_hello("bank", "127.0.0.1:9", datasets=reported)
    scheduler.node_hello("shop", "127.0.0.1:8", datasets=[{**reported[0], "rows": 7}])
    (bank,) = [d for d in world.platform.datasets.list(principal_of(world, "admin"))
               if d.owner_party == "bank"]
    assert (bank.name, bank.row_count, bank.owner_user_id) == ("customers", 569, None)
    claim = {"owner_party": "bank", "name": "customers", "row_count": 1,
             "columns": [{"name": "income", "type": "float"}]}
    adopted = ok(world.call("data_owner", "POST", f"{V1}/datasets", json=claim), 201)
    assert adopted["id"] == bank.id and adopted["owner_user_id"] == world.ids["data_owner"]
    assert adopted["row_count"] == 569 and [c["name"] for c in adopted["columns"]] == ["id", "y"]
    assert adopted["node_reported_at"] is not None
    # the node's next hello keeps the record current; the owner stays
    scheduler.node_hello("bank", "127.0.0.1:9", datasets=[{**reported[0], "rows": 600}])
    again = ok(world.call("data_owner", "GET", f"{V1}/datasets/{bank.id}"))
    assert (again["row_count"], again["owner_user_id"]) == (600, world.ids["data_owner"])
    # a second registration of an owned record clashes
    assert world.call("data_owner", "POST", f"{V1}/datasets", json=claim).status_code == 409
    actions = [e.action for e in world.platform.audit.query(action="dataset.", limit=20)]
    assert actions.count("dataset.report") == 3 and "dataset.register" in actions


def principal_of(world: World, role: str) -> Any:
    return world.platform.auth.authenticate(world.tokens[role])
