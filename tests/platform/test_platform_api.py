"""Every REST endpoint, called by every role: allowed roles succeed, the others get 403.

The table :data:`OPS` lists each operation once with the roles that may do it
in the test world (role table *and* grants); ``test_every_endpoint_is_covered``
fails when a route is added without a row here.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from platform_world import ROLES, World, make_world

from sharedml.platform.api.deps import current_principal
from sharedml.platform.auth import Principal, Totp
from sharedml.platform.store.models import Job, Node, Task

ALL = frozenset(ROLES)
READERS = frozenset({"admin", "auditor"})
_n = itertools.count(1)


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_n)}"


def spec(datasets: dict[str, str]) -> str:
    parties = {p: {"dataset": d} for p, d in datasets.items()}
    return json.dumps({"name": "j", "parties": parties, "steps": [{"describe": {}}]})


def principal(w: World, role: str) -> Principal:
    return w.platform.auth.authenticate(w.tokens[role])


def new_job(w: World, by: str = "analyst") -> str:
    """A job by ``by`` using dataset bank/d1, with its approval requested."""
    now = w.clock.now()
    with w.platform.store.session() as s:
        job = Job(
            name="j", spec=spec({"bank": "d1"}), created_by=w.ids[by], created_at=now, updated_at=now
        )
        s.add(job)
    w.platform.approvals.request_for_job(job.id)
    return job.id


def new_version(w: World, role: str = "") -> str:
    """A model version registered by a new train job of the analyst's on bank/d1."""
    job_id, uid = new_job(w), f"{next(_n):032x}"
    with w.platform.store.session() as s:
        task = Task(job_id=job_id, party="bank", step_id="train", component="train",
                    created_at=w.clock.now(), metrics={"model_uid": uid, "fingerprint": "sha256:0"})
        w.platform.registry.record_job(s, s.get(Job, job_id), [task])
    return uid


def new_dataset(w: World, grant_to: str | None = None) -> int:
    ds = w.platform.datasets.register(
        principal(w, "data_owner"), owner_party="bank", name=uniq("ds"), columns=[]
    )
    if grant_to:
        w.platform.grants.set(principal(w, "admin"), w.ids[grant_to], "dataset", ds.id, "read")
    return ds.id


def new_project(w: World, grant_to: str | None = None) -> int:
    p = w.platform.projects.create(principal(w, "admin"), uniq("proj"))
    if grant_to:
        w.platform.grants.set(principal(w, "admin"), w.ids[grant_to], "project", p.id, "read")
    return p.id


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> World:
    """admin, data_owner, analyst, auditor; project 1 (analyst: use); datasets bank/d1
    (analyst: use) and bank/d2 (no grants), both owned by data_owner; job by analyst on d1;
    a model of that job; a node."""
    world = make_world(tmp_path_factory.mktemp("api"))
    p = world.platform
    admin, owner = principal(world, "admin"), principal(world, "data_owner")
    project = p.projects.create(admin, "p1")
    p.grants.set(admin, world.ids["analyst"], "project", project.id, "use")
    d1 = p.datasets.register(owner, owner_party="bank", name="d1", columns=[{"name": "x", "type": "float"}])
    p.datasets.register(owner, owner_party="bank", name="d2", columns=[], row_count=5)
    p.grants.set(owner, world.ids["analyst"], "dataset", d1.id, "use")
    job_id = new_job(world)
    p.models.register("admin", job_id=job_id, party="bank", path="/models/1")
    with p.store.session() as s:
        s.add(Node(id="bank", party="bank", registered_at=world.clock.now()))
    world.ids["job"] = 0
    world.tokens["job"] = job_id
    world.tokens["version"] = new_version(world)
    return world


def job(w: World) -> str:
    return w.tokens["job"]


@dataclass(frozen=True)
class Op:
    method: str
    template: str
    allowed: frozenset[str]
    path: Callable[[World, str], str] | None = None
    body: Callable[[World, str], Any] | None = None

    def url(self, w: World, role: str) -> str:
        return self.path(w, role) if self.path else self.template

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def _token_of(w: World, role: str) -> str:
    row, _ = w.platform.auth.create_token(principal(w, role), "x")
    return f"/api/v1/auth/tokens/{row.id}"


def _totp_confirmation(w: World, role: str) -> dict[str, str]:
    """A begun enrolment's ticket and the current code of its secret."""
    from sharedml.platform.totp_enrol import TotpEnrolment

    _, secret, ticket = TotpEnrolment(w.platform).begin(principal(w, role))
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return {"ticket": ticket, "code": Totp.code(raw, w.clock.now())}


def _fresh_user(w: World, role: str) -> str:
    user, _ = w.platform.users.create("test", uniq("u"), "password123", "analyst", totp=False)
    return f"/api/v1/users/{user.id}/totp"


def _fresh_node(w: World, role: str) -> str:
    node = uniq("n")
    with w.platform.store.session() as s:
        s.add(Node(id=node, party="bank", registered_at=w.clock.now()))
    return f"/api/v1/nodes/{node}"


def _project_grant(w: World, role: str) -> str:
    pid = new_project(w, grant_to="auditor")
    return f"/api/v1/projects/{pid}/grants/{w.ids['auditor']}"


def _dataset_grant(w: World, role: str) -> str:
    did = new_dataset(w, grant_to="auditor")
    return f"/api/v1/datasets/{did}/grants/{w.ids['auditor']}"


def _decision(w: World, role: str) -> str:
    approval = w.platform.approvals.for_job(new_job(w))[0]
    return f"/api/v1/approvals/{approval.id}/decision"


V1 = "/api/v1"
OPS = [
    Op("GET", f"{V1}/auth/me", ALL),
    Op("PATCH", f"{V1}/auth/me", ALL, body=lambda w, r: {"locale": "zh"}),
    Op("POST", f"{V1}/auth/totp", ALL),
    Op("POST", f"{V1}/auth/totp/confirm", ALL, body=lambda w, r: _totp_confirmation(w, r)),
    Op("GET", f"{V1}/auth/tokens", ALL),
    Op("POST", f"{V1}/auth/tokens", ALL, body=lambda w, r: {"name": uniq("t")}),
    Op("DELETE", f"{V1}/auth/tokens/{{token_id}}", ALL, path=_token_of),
    Op("GET", f"{V1}/users", READERS),
    Op("POST", f"{V1}/users", frozenset({"admin"}),
       body=lambda w, r: {"username": uniq("user"), "password": "password123", "role": "analyst"}),
    Op("GET", f"{V1}/users/{{user_id}}", READERS, path=lambda w, r: f"{V1}/users/1"),
    Op("GET", f"{V1}/users/named/{{username}}", frozenset({"admin", "data_owner"}),
       path=lambda w, r: f"{V1}/users/named/analyst"),
    Op("PATCH", f"{V1}/users/{{user_id}}", frozenset({"admin"}),
       path=lambda w, r: f"{V1}/users/{w.ids['auditor']}", body=lambda w, r: {"role": "auditor"}),
    Op("POST", f"{V1}/users/{{user_id}}/totp", frozenset({"admin"}), path=_fresh_user),
    Op("GET", f"{V1}/settings", READERS),
    Op("PATCH", f"{V1}/settings", frozenset({"admin"}), body=lambda w, r: {"log_level": "INFO"}),
    Op("GET", f"{V1}/audit", READERS),
    Op("GET", f"{V1}/audit/export", READERS),
    Op("GET", f"{V1}/audit/verify", READERS),
    Op("GET", f"{V1}/audit/checkpoint", ALL),
    Op("GET", f"{V1}/nodes", ALL),
    Op("GET", f"{V1}/nodes/{{node_id}}", ALL, path=lambda w, r: f"{V1}/nodes/bank"),
    Op("DELETE", f"{V1}/nodes/{{node_id}}", frozenset({"admin"}), path=_fresh_node),
    Op("POST", f"{V1}/projects", frozenset({"admin"}), body=lambda w, r: {"name": uniq("p")}),
    Op("GET", f"{V1}/projects", ALL),
    Op("GET", f"{V1}/projects/{{project_id}}", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/projects/1"),
    Op("GET", f"{V1}/projects/{{project_id}}/grants", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/projects/1/grants"),
    Op("PUT", f"{V1}/projects/{{project_id}}/grants", frozenset({"admin"}),
       path=lambda w, r: f"{V1}/projects/{new_project(w)}/grants",
       body=lambda w, r: {"user_id": w.ids["auditor"], "permission": "read"}),
    Op("DELETE", f"{V1}/projects/{{project_id}}/grants/{{user_id}}", frozenset({"admin"}),
       path=_project_grant),
    Op("POST", f"{V1}/datasets", frozenset({"admin", "data_owner"}),
       body=lambda w, r: {"owner_party": "bank", "name": uniq("d"),
                          "columns": [{"name": "age", "type": "int"}], "row_count": 10}),
    Op("GET", f"{V1}/datasets", ALL),
    Op("GET", f"{V1}/datasets/{{dataset_id}}", frozenset({"admin", "auditor", "data_owner"}),
       path=lambda w, r: f"{V1}/datasets/2"),
    Op("DELETE", f"{V1}/datasets/{{dataset_id}}", frozenset({"admin", "data_owner"}),
       path=lambda w, r: f"{V1}/datasets/{new_dataset(w, grant_to='analyst')}"),
    Op("GET", f"{V1}/datasets/{{dataset_id}}/grants", frozenset({"admin", "auditor", "data_owner"}),
       path=lambda w, r: f"{V1}/datasets/2/grants"),
    Op("PUT", f"{V1}/datasets/{{dataset_id}}/grants", frozenset({"admin", "data_owner"}),
       path=lambda w, r: f"{V1}/datasets/{new_dataset(w)}/grants",
       body=lambda w, r: {"user_id": w.ids["analyst"], "permission": "use"}),
    Op("DELETE", f"{V1}/datasets/{{dataset_id}}/grants/{{user_id}}",
       frozenset({"admin", "data_owner"}), path=_dataset_grant),
    Op("GET", f"{V1}/approvals", ALL),
    Op("GET", f"{V1}/approvals/jobs/{{job_id}}", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/approvals/jobs/{job(w)}"),
    Op("POST", f"{V1}/approvals/{{approval_id}}/decision", frozenset({"data_owner"}),
       path=_decision, body=lambda w, r: {"approve": True}),
    Op("GET", f"{V1}/approvals/{{approval_id}}/spec", frozenset({"data_owner"}),
       path=lambda w, r: _decision(w, r).replace("/decision", "/spec")),
    Op("POST", f"{V1}/models", frozenset({"admin"}),
       body=lambda w, r: {"job_id": job(w), "party": "bank", "path": "/m"}),
    Op("GET", f"{V1}/models", ALL),
    Op("GET", f"{V1}/models/{{model_id}}", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/models/1"),
    # the model registry (api/routes_registry.py)
    Op("GET", f"{V1}/registry/models", ALL),
    Op("GET", f"{V1}/registry/models/{{ref}}", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/registry/models/{w.tokens['version']}"),
    Op("PUT", f"{V1}/registry/models/{{ref}}/aliases/{{alias}}", frozenset({"admin", "analyst"}),
       path=lambda w, r: f"{V1}/registry/models/{w.tokens['version']}/aliases/production"),
    Op("POST", f"{V1}/registry/models/{{ref}}/delete-consent", frozenset({"data_owner"}),
       path=lambda w, r: f"{V1}/registry/models/{new_version(w)}/delete-consent"),
    # the job routes (api/jobs.py): role gates of the table in access.py
    Op("POST", f"{V1}/jobs", frozenset({"admin", "analyst"}),
       body=lambda w, r: {"spec": json.loads(spec({"bank": "d1"}))}),
    Op("GET", f"{V1}/jobs", ALL),
    Op("GET", f"{V1}/jobs/{{job_id}}", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/jobs/{job(w)}"),
    Op("POST", f"{V1}/jobs/{{job_id}}/cancel", frozenset({"admin", "analyst"}),
       path=lambda w, r: f"{V1}/jobs/{new_job(w)}/cancel"),
    Op("GET", f"{V1}/jobs/{{job_id}}/tasks", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/jobs/{job(w)}/tasks"),
    Op("GET", f"{V1}/jobs/{{job_id}}/result", frozenset({"admin", "auditor", "analyst"}),
       path=lambda w, r: f"{V1}/jobs/{job(w)}/result"),
]  # fmt: skip
#: Routes outside the table, tested on their own below.
UNGATED = {("POST", f"{V1}/auth/login")}
SELF_ENDING = {("POST", f"{V1}/auth/logout")}
#: Answer only on a platform that runs TEE jobs; their role checks are driven by
#: tests/tee/test_platform_jobs.py::test_tee_routes_and_provider_keys on one that does.
TEE_ROUTES = {
    ("POST", f"{V1}/tee/enclaves"),
    ("GET", f"{V1}/tee/jobs/{{job_id}}"),
    ("GET", f"{V1}/tee/jobs/{{job_id}}/receipt"),
    ("GET", f"{V1}/tee/jobs/{{job_id}}/released/{{what}}/{{step}}"),
}


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, looking inside included routers (all included without a prefix)."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            out += api_routes(r.original_router.routes)
    return out


def routes(app: Any) -> set[tuple[str, str]]:
    return {(m, r.path) for r in api_routes(app.routes) for m in r.methods if r.path.startswith(V1)}


def test_every_endpoint_is_covered(w: World) -> None:
    table = {(op.method, op.template) for op in OPS}
    assert routes(w.app) - UNGATED - SELF_ENDING - TEE_ROUTES == table


def _depends_on(dependant: Any, fn: Any) -> bool:
    return dependant.call is fn or any(_depends_on(d, fn) for d in dependant.dependencies)


def test_every_route_but_login_requires_a_principal(w: World) -> None:
    bare = [r.path for r in api_routes(w.app.routes)
            if r.path.startswith(V1) and not _depends_on(r.dependant, current_principal)]
    assert bare == [f"{V1}/auth/login"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("op", OPS, ids=str)
def test_role_by_operation(w: World, op: Op, role: str) -> None:
    url = op.url(w, role)
    body = op.body(w, role) if op.body else None
    r = w.call(role, op.method, url, json=body)
    if role in op.allowed:
        assert 200 <= r.status_code < 300, f"{role} {op}: {r.status_code} {r.text}"
    else:
        assert r.status_code == 403, f"{role} {op} should be denied: {r.status_code} {r.text}"
        assert r.json()["error"] == "PolicyDenied"


@pytest.mark.parametrize("op", OPS, ids=str)
def test_no_credentials_is_401_everywhere(w: World, op: Op) -> None:
    r = w.client.request(op.method, op.template.replace("{", "").replace("}", ""), json={})
    assert r.status_code == 401


def test_denials_are_audited(w: World) -> None:
    w.call("auditor", "POST", f"{V1}/users", json={"username": "x", "password": "12345678", "role": "admin"})
    denied = w.platform.audit.query(action="access.denied", actor="auditor", limit=1000)
    assert any(e.target == f"POST {V1}/users" for e in denied)


def test_logout_ends_only_that_session(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    first = world.tokens["analyst"]
    world.login("analyst")
    assert world.call("analyst", "POST", f"{V1}/auth/logout").status_code == 204
    assert world.call("analyst", "GET", f"{V1}/auth/me").status_code == 401
    assert world.client.get(f"{V1}/auth/me", headers={"Authorization": f"Bearer {first}"}).status_code == 200
