"""One contract suite for the store, run on SQLite and on PostgreSQL (docs/architecture.md §3, item 9).

Every test takes ``backend_store`` (conftest.py), parametrised over both
backends; the PostgreSQL leg runs in CI against the server .ci/services.sh starts.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from sharedml.platform.audit import AuditLog
from sharedml.platform.clock import ManualClock
from sharedml.platform.store import Store, backup, sqlite_url
from sharedml.platform.store.models import (
    AuditEntry,
    Base,
    Dataset,
    Job,
    Node,
    Task,
    User,
)

T0 = dt.datetime(2030, 5, 17, 12, 30, 15, 123456, tzinfo=dt.UTC)


def test_migrations_build_exactly_the_models(backend_store: Store) -> None:
    assert backend_store.current_revision() is not None
    backend_store.upgrade()  # idempotent
    with backend_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert set(backend_store.table_names()) >= {
        "users", "api_tokens", "sessions", "projects", "grants", "datasets", "approvals",
        "jobs", "tasks", "nodes", "models", "audit_log", "settings", "model_versions",
        "model_aliases",
    }  # fmt: skip


def test_rows_round_trip_with_aware_utc_times_and_json(backend_store: Store) -> None:
    with backend_store.session() as s:
        s.add(User(username="u", password_hash="h", role="analyst", created_at=T0))
        job = Job(
            name="j", spec=json.dumps({"parties": {}}), created_at=T0, updated_at=T0,
            result={"steps": {"psi": {"bank": {"metrics": {"rows": 3}}}}},
        )  # fmt: skip
        s.add(job)
        s.flush()
        s.add(
            Task(job_id=job.id, party="bank", step_id="psi", component="psi",
                 created_at=T0, metrics={"auc": 0.75})
        )  # fmt: skip
        job_id = job.id
    with backend_store.session() as s:
        got = s.get(Job, job_id)
        assert got is not None
        assert got.created_at == T0 and got.created_at.tzinfo is not None
        assert got.result == {"steps": {"psi": {"bank": {"metrics": {"rows": 3}}}}}
        assert got.state == "pending" and got.progress == 0.0 and got.max_attempts == 3
        task = s.scalars(select(Task).where(Task.job_id == job_id)).one()
        assert task.metrics == {"auc": 0.75} and task.state == "pending"


def test_naive_datetimes_are_refused(backend_store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"), backend_store.session() as s:
        s.add(Node(id="n", party="bank", registered_at=dt.datetime(2030, 1, 1)))


def test_unique_constraints_hold(backend_store: Store) -> None:
    with backend_store.session() as s:
        s.add(User(username="dup", password_hash="h", role="admin", created_at=T0))
    with pytest.raises(IntegrityError), backend_store.session() as s:
        s.add(User(username="dup", password_hash="h", role="admin", created_at=T0))
    with backend_store.session() as s:
        s.add(Dataset(owner_party="bank", name="d", columns=[], created_at=T0))
    with pytest.raises(IntegrityError), backend_store.session() as s:
        s.add(Dataset(owner_party="bank", name="d", columns=[], created_at=T0))


def test_deleting_a_job_deletes_its_tasks(backend_store: Store) -> None:
    with backend_store.session() as s:
        job = Job(name="j", spec="{}", created_at=T0, updated_at=T0)
        s.add(job)
        s.flush()
        s.add(Task(job_id=job.id, party="a", step_id="s", component="c", created_at=T0))
        job_id = job.id
    with backend_store.session() as s:
        s.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})
    with backend_store.session() as s:
        assert s.scalars(select(Task)).all() == []


def test_a_task_needs_an_existing_job(backend_store: Store) -> None:
    with pytest.raises(IntegrityError), backend_store.session() as s:
        s.add(Task(job_id="nope", party="a", step_id="s", component="c", created_at=T0))


def test_audit_chain_verifies_and_a_one_byte_edit_is_caught(backend_store: Store) -> None:
    log = AuditLog(backend_store, ManualClock(T0))
    for i in range(5):
        log.append("alice", "dataset.register", f"bank/d{i}", detail={"rows": i})
    assert log.verify().ok and log.verify().entries == 5
    with backend_store.session() as s:  # one byte of entry 3's target: d2 -> d3
        s.execute(text("UPDATE audit_log SET target = 'bank/d3' WHERE seq = 3"))
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 3 and "altered" in v.reason


def test_backup_wipe_restore_round_trips(backend_store: Store, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    log = AuditLog(backend_store, clock)
    with backend_store.session() as s:
        s.add(User(username="u", password_hash="h", role="admin", created_at=T0,
                   totp_secret_enc=b"\x00\x01sealed\xff"))  # fmt: skip
        job = Job(name="j", spec='{"a": 1}', created_at=T0, updated_at=T0, result={"x": [1, 2]})
        s.add(job)
        s.flush()
        s.add(Task(job_id=job.id, party="a", step_id="s", component="c", created_at=T0))
    log.append("u", "job.submit", "j", detail={"ünïcode": "✓"})
    before = list(backup.dump(backend_store))
    path = tmp_path / "b.jsonl"
    assert backup.backup(backend_store, path) == 4
    backup.wipe(backend_store)
    assert backup.is_empty(backend_store)
    assert backup.restore(backend_store, path) == 4
    assert list(backup.dump(backend_store)) == before
    assert log.verify().ok
    # ids continue after the restored ones (PostgreSQL sequences moved on)
    with backend_store.session() as s:
        s.add(User(username="v", password_hash="h", role="admin", created_at=T0))
    with backend_store.session() as s:
        assert sorted(u.id for u in s.scalars(select(User))) == [1, 2]
    with pytest.raises(Exception, match="not empty"):
        backup.restore(backend_store, path)


def test_a_backup_moves_between_backends(backend_store: Store, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = Store(sqlite_url(tmp_path / "other"))
    other.upgrade()
    log = AuditLog(other, ManualClock(T0))
    for i in range(3):
        log.append("op", "settings.change", "settings", detail={"i": i})
    backup.backup(other, tmp_path / "x.jsonl")
    backup.restore(backend_store, tmp_path / "x.jsonl")
    moved = AuditLog(backend_store, ManualClock(T0))
    assert moved.verify().ok and moved.verify().entries == 3
    with backend_store.session() as s:
        assert [e.seq for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))] == [1, 2, 3]


def test_a_truncated_backup_is_refused(backend_store: Store, tmp_path: Path) -> None:
    AuditLog(backend_store, ManualClock(T0)).append("a", "b")
    path = tmp_path / "b.jsonl"
    backup.backup(backend_store, path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    backup.wipe(backend_store)
    with pytest.raises(Exception, match="truncated"):
        backup.restore(backend_store, path)
    assert backup.is_empty(backend_store)


def test_concurrent_appends_keep_one_chain(backend_store: Store) -> None:
    """Two logs (as two platform processes would hold) appending from four threads at once."""
    import threading

    logs = [AuditLog(backend_store, ManualClock(T0)), AuditLog(backend_store, ManualClock(T0))]
    errors: list[BaseException] = []

    def work(log: AuditLog, name: str) -> None:
        try:
            for i in range(15):
                if i % 3 == 0:
                    with backend_store.session() as s:  # inside a caller's transaction
                        log.append_in(s, name, "job.submit", f"{name}/{i}")
                else:
                    log.append(name, "dataset.register", f"{name}/{i}")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(logs[i % 2], f"t{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    v = logs[0].verify()
    assert v.ok and v.entries == 60
