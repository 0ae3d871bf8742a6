"""Backup, wipe, restore (8.3-5) through the CLI: jobs, users and the audit log come back intact."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from platform_world import World, make_world
from sqlalchemy import select
from typer.testing import CliRunner

from sharedml.platform.cli import audit_app, platform_app
from sharedml.platform.service import Platform
from sharedml.platform.store import backup
from sharedml.platform.store.models import AuditEntry, Job, Task, User

V1 = "/api/v1"


def populate(w: World) -> str:
    w.add_user("tess", "analyst", totp=True)
    owner = w.platform.auth.authenticate(w.tokens["data_owner"])
    ds = w.platform.datasets.register(owner, owner_party="bank", name="customers", columns=[])
    w.platform.grants.set(owner, w.ids["analyst"], "dataset", ds.id, "use")
    spec = {"name": "credit", "parties": {"bank": {"dataset": "customers"}}, "steps": [{"describe": {}}]}
    r = w.call("analyst", "POST", f"{V1}/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def snapshot(w: World) -> dict[str, object]:
    with w.platform.store.session() as s:
        return {
            "users": [(u.id, u.username, u.role, u.password_hash, u.totp_secret_enc)
                      for u in s.scalars(select(User).order_by(User.id))],
            "jobs": [(j.id, j.spec, j.state, j.created_at, j.result) for j in s.scalars(select(Job))],
            "tasks": [(t.id, t.job_id, t.party, t.step_id, t.state) for t in s.scalars(select(Task))],
            "audit": [(e.seq, e.hash) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))],
        }  # fmt: skip


def test_backup_wipe_restore_brings_everything_back(tmp_path: Path) -> None:
    data = tmp_path / "platform"
    w = make_world(data)
    job_id = populate(w)
    file = tmp_path / "backup.jsonl"
    runner = CliRunner(env={"SHAREDML_BACKUP_PASSPHRASE": PASSPHRASE})
    r = runner.invoke(platform_app, ["backup", str(file), "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    before = snapshot(w)  # after the backup's own audit entry
    lines = file.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "sharedml-platform-backup"
    assert {json.loads(line).get("table") for line in lines[1:-1]} >= {"users", "jobs", "tasks", "audit_log"}

    backup.wipe(w.platform.store)
    assert backup.is_empty(w.platform.store)
    assert w.call("analyst", "GET", f"{V1}/jobs/{job_id}").status_code == 401  # sessions gone too

    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(data)])
    assert r.exit_code == 0 and "audit chain verifies" in r.output, r.output
    assert snapshot(w) == before
    assert runner.invoke(audit_app, ["verify", "--data-dir", str(data)]).exit_code == 0

    # the restored platform works: sessions from before the backup, password + TOTP logins
    assert w.call("analyst", "GET", f"{V1}/jobs/{job_id}").json()["id"] == job_id
    w.clock.advance(60)
    assert w.login("tess", w.code("tess")).status_code == 200
    w.platform.audit.append("admin", "after.restore", "x")
    assert w.platform.audit.verify().ok


def test_restore_refuses_a_non_empty_database_unless_told(tmp_path: Path) -> None:
    data = tmp_path / "platform"
    w = make_world(data)
    file = tmp_path / "b.jsonl"
    backup.backup(w.platform.store, file)
    runner = CliRunner()
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(data)])
    assert r.exit_code != 0 and "not empty" in str(r.exception)
    w.add_user("extra", "auditor")
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(data), "--wipe"])
    assert r.exit_code == 0, r.output
    assert "extra" not in [u.username for u in w.platform.users.list()]


def test_a_tampered_backup_restores_but_does_not_verify(tmp_path: Path) -> None:
    data = tmp_path / "platform"
    w = make_world(data)
    file = tmp_path / "b.jsonl"
    backup.backup(w.platform.store, file)
    text = file.read_text().replace('"actor": "analyst"', '"actor": "analyzt"', 1)
    assert '"actor": "analyzt"' in text
    file.write_text(text)
    r = CliRunner().invoke(platform_app, ["restore", str(file), "--data-dir", str(data), "--wipe"])
    assert r.exit_code == 1 and "BROKEN" in r.output


PASSPHRASE = "correct horse battery staple"


def test_a_restore_on_a_new_host_brings_the_platform_key_back_sealed(tmp_path: Path) -> None:
    """The backup alone opens nothing; with the passphrase the new data dir gets the old
    key, so TOTP secrets sealed under it open (8.3-5)."""
    from sharedml.platform.keys import KEY_FILE

    data = tmp_path / "platform"
    w = make_world(data)
    populate(w)
    file = tmp_path / "backup.jsonl"
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    runner = CliRunner()
    r = runner.invoke(platform_app, ["backup", str(file), "--data-dir", str(data)])
    assert r.exit_code != 0 and "passphrase" in str(r.exception)
    r = runner.invoke(platform_app, ["backup", str(file), "--data-dir", str(data),
                                     "--passphrase-file", str(secret)])
    assert r.exit_code == 0, r.output
    key = (data / KEY_FILE).read_bytes()
    assert key not in file.read_bytes() and base64.b64encode(key) not in file.read_bytes()

    fresh = tmp_path / "new-host"
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh)])
    assert r.exit_code != 0 and "sealed with a passphrase" in str(r.exception)
    assert not (fresh / KEY_FILE).exists()  # refused before anything was made
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all")
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh),
                                     "--passphrase-file", str(wrong)])
    assert r.exit_code != 0 and "does not open" in str(r.exception)
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh),
                                     "--passphrase-file", str(secret)])
    assert r.exit_code == 0 and "audit chain verifies" in r.output, r.output
    assert (fresh / KEY_FILE).read_bytes() == key
    assert (fresh / KEY_FILE).stat().st_mode & 0o777 == 0o600
    restored = Platform.open(fresh)
    try:  # the sealed TOTP secret opens under the restored key
        assert restored.auth.totp_secret(restored.users.by_name("tess")) == w.secrets["tess"]
    finally:
        restored.store.dispose()


def test_restore_never_invents_a_platform_key_silently(tmp_path: Path) -> None:
    from sharedml.platform.keys import KEY_FILE

    data = tmp_path / "platform"
    w = make_world(data)
    populate(w)
    file = tmp_path / "backup.jsonl"
    runner = CliRunner()
    r = runner.invoke(platform_app, ["backup", str(file), "--data-dir", str(data), "--no-key"])
    assert r.exit_code == 0 and "without the platform key" in r.output
    fresh = tmp_path / "new-host"
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh)])
    assert r.exit_code != 0 and "--new-key" in str(r.exception)
    assert not (fresh / KEY_FILE).exists() and not any(fresh.glob("*.db"))
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh), "--new-key"])
    assert r.exit_code == 0, r.output
    assert (fresh / KEY_FILE).read_bytes() != (data / KEY_FILE).read_bytes()
    # a data dir holding another platform's key is not overwritten by a backup's
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    r = runner.invoke(platform_app, ["backup", str(file), "--data-dir", str(data),
                                     "--passphrase-file", str(secret)])
    assert r.exit_code == 0
    r = runner.invoke(platform_app, ["restore", str(file), "--data-dir", str(fresh), "--wipe",
                                     "--passphrase-file", str(secret)])
    assert r.exit_code != 0 and "another platform's key" in str(r.exception)
