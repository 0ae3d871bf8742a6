"""The platform tests' shared world: a store on each backend and an API app with
one logged-in user per role. A module of its own (not conftest.py) so test
files import it by a name no other test folder uses."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from sharedml.platform.api import create_app
from sharedml.platform.auth import Totp
from sharedml.platform.clock import ManualClock
from sharedml.platform.config import PlatformConfig
from sharedml.platform.service import Platform
from sharedml.platform.store import Store

PG_URL_FILE = Path(
    os.environ.get("SHAREDML_TEST_POSTGRES_URL_FILE", "/tmp/sharedml-test-postgres-url")
)
PASSWORD = "correct horse battery"


def postgres_url() -> str | None:
    url = os.environ.get("SHAREDML_TEST_POSTGRES_URL")
    if not url and PG_URL_FILE.exists():
        url = PG_URL_FILE.read_text(encoding="utf-8").strip()
    return url or None


def worker_database(url: str) -> str:
    """Under pytest-xdist (``make test-parallel``), this worker's own database beside the
    test database (``sharedml_test_gw0``, …), made at first use, so that workers never
    drop each other's schema; the URL unchanged otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                 {"n": name}).scalar()
            if not found:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except ProgrammingError:
        pass  # made meanwhile by a run of the same worker name
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def fresh_postgres() -> Store:
    """The test database, emptied (its public schema dropped and made again)."""
    url = postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL leg, but .ci/services.sh gave no URL")
        pytest.skip("no PostgreSQL: set SHAREDML_TEST_POSTGRES_URL or run .ci/services.sh")
    try:
        store = Store(worker_database(url))
        with store.engine.connect():
            pass
    except OperationalError as exc:
        # A URL file left by an earlier .ci/services.sh on a machine whose server has
        # since stopped: a developer's machine skips, CI (which starts it) fails.
        if os.environ.get("CI") or os.environ.get("SHAREDML_TEST_POSTGRES_URL"):
            raise
        pytest.skip(f"PostgreSQL at the URL in {PG_URL_FILE} does not answer (run "
                    f".ci/services.sh): {str(exc).splitlines()[0]}")
    with store.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return store


@dataclass
class World:
    """A platform app over SQLite with a manual clock and one logged-in user per role."""

    app: Any
    client: TestClient
    platform: Platform
    clock: ManualClock
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, bytes] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> Any:
        headers = self.h(who) if who else {}
        return self.client.request(method, path, headers=headers, **kw)

    def add_user(self, name: str, role: str, *, totp: bool = False, party: str | None = None) -> int:
        user, _ = self.platform.users.create("test", name, PASSWORD, role, totp=totp, party=party)
        self.ids[name] = user.id
        if totp:
            secret = self.platform.auth.totp_secret(self.platform.users.get(user.id))
            assert secret is not None
            self.secrets[name] = secret
        return user.id

    def code(self, name: str, offset_steps: int = 0) -> str:
        when = self.clock.now()
        return Totp.code(self.secrets[name], when.replace(microsecond=0) + offset_steps * dt.timedelta(seconds=30))

    def login(self, name: str, totp: str | None = None) -> Any:
        body = {"username": name, "password": PASSWORD, "totp": totp}
        r = self.client.post("/api/v1/auth/login", json=body)
        if r.status_code == 200:
            self.tokens[name] = r.json()["token"]
        return r


ROLES = ("admin", "data_owner", "analyst", "auditor")
#: The party each role's user of a world acts for (issue 14: only a party's members
#: register, grant and approve its datasets).
PARTY_OF = {"data_owner": "bank", "admin": "bank"}


#: argon2id at the lowest cost: the tests exercise the logic, not the work factor.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def make_world(tmp_path: Path, clock: ManualClock | None = None) -> World:
    clock = clock or ManualClock()
    platform = Platform.open(tmp_path, clock=clock, hasher=CHEAP)
    app = create_app(PlatformConfig(tmp_path), platform=platform)
    world = World(app, TestClient(app), app.state.platform, clock)
    for role in ROLES:  # the data owner and the admin act for the bank
        world.add_user(role, role, party=PARTY_OF.get(role))
        assert world.login(role).status_code == 200
    return world




def owners_sign(keys: dict[str, Path]) -> Any:
    """A scheduler's source of signed approvals for tests without a platform: each
    party's owner (its key in ``keys``) signs every job's spec, as
    ``sharedml approval approve`` would; parties without a key sign nothing."""
    import json

    from sharedml.approvals import Statement, load_private, sign, spec_sha256

    def signed(session: Any, job: Any) -> list[dict[str, Any]]:
        spec = json.loads(job.spec)
        out = []
        for party, p in spec["parties"].items():
            if p and p.get("dataset") and party in keys:
                statement = Statement(job_id=job.id, party=party, dataset=p["dataset"],
                                      spec_sha256=spec_sha256(spec))
                out.append(sign(load_private(keys[party]), statement, f"{party}-owner").model_dump())
        return out

    return signed


#: A small job over :func:`two_party_datasets`' datasets.
TWO_PARTY_SPEC: dict[str, Any] = {
    "name": "describe-both",
    "parties": {"bank": {"dataset": "customers", "label": "y"}, "shop": {"dataset": "baskets"}},
    "steps": [{"describe": {}}],
}
#: Who owns which dataset in :func:`two_party_datasets`: (user, party, dataset).
OWNED = (("data_owner", "bank", "customers"), ("shop_owner", "shop", "baskets"))


def two_party_datasets(world: World) -> World:
    """A dataset at the bank and one at the shop, each registered and granted to the
    analyst by its own party's data owner (``shop_owner`` is added for the shop)."""
    world.add_user("shop_owner", "data_owner", party="shop")
    assert world.login("shop_owner").status_code == 200
    for owner, party, name in OWNED:
        r = world.call(owner, "POST", "/api/v1/datasets",
                       json={"owner_party": party, "name": name, "row_count": 10})
        assert r.status_code == 201, r.text
        g = world.call(owner, "PUT", f"/api/v1/datasets/{r.json()['id']}/grants",
                       json={"user_id": world.ids["analyst"], "permission": "use"})
        assert g.status_code == 200, g.text
    return world


def approve_all(world: World, job_id: str) -> None:
    """Each owner of :func:`two_party_datasets` approves every use ``job_id`` asks for."""
    for owner, _, _ in OWNED:
        for a in world.call(owner, "GET", "/api/v1/approvals", params={"job_id": job_id}).json():
            r = world.call(owner, "POST", f"/api/v1/approvals/{a['id']}/decision",
                           json={"approve": True})
            assert r.status_code == 200, r.text
