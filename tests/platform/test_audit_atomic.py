"""Issue 14, hardening: every audited operation writes its entry in the transaction
of its change (9.3).

Each operation that changes the store is run twice on a real SQLite platform:
once as is (the store changes and exactly one entry of the operation's action
is appended), and once with the audit write failing (the operation raises and
the store — every table, row for row — is as it was, with no entry). Before,
18 of them committed the change and then appended in a second transaction, so
a crash between the two left a change nobody could see in the log.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from platform_world import PASSWORD, World, make_world
from sqlalchemy import select

from sharedml.platform.audit import AuditLog
from sharedml.platform.auth import Principal, Totp
from sharedml.platform.store.models import AuditEntry, Base, Job, Node
from sharedml.platform.totp_enrol import TotpEnrolment

COLUMNS = [{"name": "x", "type": "float"}]


class AuditDown(RuntimeError):
    """The injected failure of the audit write."""


def principal(world: World, who: str) -> Principal:
    return world.platform.auth.authenticate(world.tokens[who])


def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit log, by table."""
    with world.platform.store.reading() as s:
        return {
            t.name: sorted(tuple(map(repr, r)) for r in s.execute(select(t)).all())
            for t in Base.metadata.sorted_tables if t.name != AuditEntry.__tablename__
        }


def entries(world: World) -> list[str]:
    with world.platform.store.reading() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all())


# -- each operation: (action, setup -> the call to make) -----------------------------
Op = Callable[[World], Callable[[], object]]


def _project(world: World) -> int:
    return world.platform.projects.create(principal(world, "admin"), "risk").id


def _job(world: World) -> str:
    now = world.clock.now()
    with world.platform.store.session() as s:
        job = Job(name="j", spec="{}", created_at=now, updated_at=now)
        s.add(job)
        s.flush()
        return job.id


def _node_record(world: World) -> None:
    with world.platform.store.session() as s:
        world.platform.datasets.from_node(s, "bank", [{"name": "reported", "columns": COLUMNS,
                                                       "rows": 5}])


def _node(world: World) -> None:
    with world.platform.store.session() as s:
        s.add(Node(id="bank", party="bank", registered_at=world.clock.now()))


def _totp_enrol(world: World) -> Callable[[], object]:
    who = principal(world, "analyst")
    _, text, ticket = TotpEnrolment(world.platform).begin(who)
    secret = base64.b32decode(text + "=" * (-len(text) % 8))
    code = Totp.code(secret, world.clock.now().replace(microsecond=0))
    return lambda: TotpEnrolment(world.platform).confirm(who, ticket, code)


def _token_revoke(world: World) -> Callable[[], object]:
    admin = principal(world, "admin")
    row, _ = world.platform.auth.tokens.create(admin, "old")
    return lambda: world.platform.auth.tokens.revoke(admin, row.id)


def _grant_revoke(world: World) -> Callable[[], object]:
    pid, admin = _project(world), principal(world, "admin")
    world.platform.grants.set(admin, world.ids["analyst"], "project", pid, "read")
    return lambda: world.platform.grants.revoke(admin, "project", pid, world.ids["analyst"])


def _dataset_delete(world: World) -> Callable[[], object]:
    owner = principal(world, "data_owner")
    ds = world.platform.datasets.register(owner, owner_party="bank", name="old", columns=COLUMNS)
    return lambda: world.platform.datasets.delete(owner, ds.id)


def _grant_set(world: World) -> Callable[[], object]:
    pid, admin = _project(world), principal(world, "admin")
    return lambda: world.platform.grants.set(admin, world.ids["analyst"], "project", pid, "use")


def _model_register(world: World) -> Callable[[], object]:
    job_id = _job(world)
    return lambda: world.platform.models.register("test", job_id=job_id, party="bank")


def _node_delete(world: World) -> Callable[[], object]:
    _node(world)
    return lambda: world.platform.nodes.delete("test", "bank")


def _adopt(world: World) -> Callable[[], object]:
    _node_record(world)
    owner = principal(world, "data_owner")
    return lambda: world.platform.datasets.register(owner, owner_party="bank", name="reported",
                                                    columns=[])


OPERATIONS: dict[str, Op] = {
    "user.create": lambda w: lambda: w.platform.users.create(
        "test", "newbie", PASSWORD, "analyst", totp=False),
    "user.update": lambda w: lambda: w.platform.users.update(
        "test", w.ids["analyst"], role="auditor", password="a new password"),
    "user.locale": lambda w: lambda: w.platform.users.set_locale("test", w.ids["analyst"], "zh"),
    "user.totp.reset": lambda w: lambda: w.platform.users.reset_totp("test", w.ids["analyst"]),
    "project.create": lambda w: lambda: w.platform.projects.create(principal(w, "admin"), "new"),
    "grant.set": _grant_set,
    "grant.revoke": _grant_revoke,
    "dataset.register": lambda w: lambda: w.platform.datasets.register(
        principal(w, "data_owner"), owner_party="bank", name="fresh", columns=COLUMNS),
    "dataset.register (a node's record)": _adopt,
    "dataset.delete": _dataset_delete,
    "model.register": _model_register,
    "node.delete": _node_delete,
    "auth.token.create": lambda w: lambda: w.platform.auth.tokens.create(
        principal(w, "admin"), "ci"),
    "auth.token.revoke": _token_revoke,
    "auth.login": lambda w: lambda: w.platform.auth.login("analyst", PASSWORD, None),
    "auth.logout": lambda w: (lambda who: lambda: w.platform.auth.logout(who))(
        principal(w, "analyst")),
    "settings.change": lambda w: lambda: w.platform.settings.update(
        {"token_idle_days": 7}, "test"),
    "auth.totp.enrol": _totp_enrol,
}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], World]:
    def fresh() -> World:
        return make_world(tmp_path_factory.mktemp("w"))
    return fresh


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_an_operation_and_its_audit_entry_commit_together(
    name: str, worlds: Callable[[], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    action = name.split(" ")[0]
    world = worlds()
    world.clock.advance(1)
    call = OPERATIONS[name](world)
    before, logged = snapshot(world), entries(world)

    def fail(*args: Any, **kwargs: Any) -> AuditEntry:
        raise AuditDown("the audit write failed")

    with monkeypatch.context() as m:
        m.setattr(AuditLog, "_add", fail)
        with pytest.raises(AuditDown):
            call()
    assert entries(world) == logged
    assert snapshot(world) == before, f"{name}: changed without its audit entry"

    # the same operation, the audit write working: it changes the store, logged once
    call()
    assert snapshot(world) != before, f"{name} changed nothing: not an operation to test here"
    assert entries(world) == [*logged, action]
    assert world.platform.audit.verify().ok


def test_every_operation_that_audits_apart_is_listed() -> None:
    """The pattern this file guards against: ``audit.append(`` (its own transaction)
    is left only for records of no change (denials, TOTP enrolment start, exports,
    the CLI's backup, the checkpoint publisher)."""
    import re

    import sharedml.platform as pkg

    root = Path(pkg.__file__).parent
    calls = {f"{p.relative_to(root)}:{m.group(1)}"
             for p in root.rglob("*.py")
             for m in re.finditer(r"audit\.append\(\s*[^,]+,\s*(\"[^\"]+\")", p.read_text())}
    assert calls == {
        'totp_enrol.py:"auth.totp.begin"', 'totp_enrol.py:"auth.totp.enrol"',
        'cli.py:"platform.backup"', 'api/routes_admin.py:"audit.export"',
        'api/errors.py:"access.denied"', 'auth.py:"auth.login"',
    }, calls
