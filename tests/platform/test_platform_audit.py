"""The audit log (9.3): every kind of tampering is named, exports verify on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from sharedml.platform.audit import AuditLog, verify_lines
from sharedml.platform.clock import ManualClock
from sharedml.platform.store import Store, sqlite_url


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    store = Store(sqlite_url(tmp_path))
    store.upgrade()
    audit = AuditLog(store, ManualClock())
    for i in range(1, 7):
        audit.append(f"user{i}", "dataset.register", f"bank/d{i}", detail={"rows": i * 10})
    return audit


def raw(log: AuditLog, sql: str) -> None:
    with log._store.engine.begin() as conn:
        conn.exec_driver_sql(sql)


def test_an_untouched_chain_verifies(log: AuditLog) -> None:
    v = log.verify()
    assert v.ok and v.entries == 6 and v.first_bad_seq is None and len(v.head) == 64


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "'user5'"), ("detail", """'{"rows":31}'"""), ("ts", "'2030-01-01T00:00:01+00:00'")],
)
def test_a_one_byte_edit_is_detected(log: AuditLog, column: str, value: str) -> None:
    raw(log, f"UPDATE audit_log SET {column} = {value} WHERE seq = 3")
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 3 and "altered" in v.reason


def test_rehashing_an_edited_entry_breaks_the_next_link(log: AuditLog) -> None:
    """An editor who also recomputes the entry's own hash is caught at the next entry."""
    from sharedml.platform.audit import entry_hash

    with log._store.session() as s:
        row = s.execute(text("SELECT * FROM audit_log WHERE seq = 3")).mappings().one()
        fields = dict(row) | {"actor": "mallory"}
        new = entry_hash(row["prev_hash"], fields)
        s.execute(
            text("UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 3"), {"h": new}
        )
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 4 and "does not link" in v.reason


def test_a_deleted_entry_is_detected(log: AuditLog) -> None:
    raw(log, "DELETE FROM audit_log WHERE seq = 4")
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 5 and "entry 4 is missing" in v.reason


def test_reordered_entries_are_detected(log: AuditLog) -> None:
    raw(log, "UPDATE audit_log SET seq = 100 WHERE seq = 2")
    raw(log, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    raw(log, "UPDATE audit_log SET seq = 3 WHERE seq = 100")
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 2


def test_export_is_json_lines_that_verify_alone(log: AuditLog) -> None:
    lines = list(log.export())
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert verify_lines(lines).ok
    edited = lines[:]
    edited[1] = edited[1].replace("user2", "user9")
    bad = verify_lines(edited)
    assert not bad.ok and bad.first_bad_seq == 2
    assert not verify_lines(lines[:2] + lines[3:]).ok


def test_cli_verify_names_the_first_bad_entry(tmp_path: Path) -> None:
    from sharedml.platform.cli import audit_app
    from sharedml.platform.service import Platform

    p = Platform.open(tmp_path)
    for i in range(4):
        p.audit.append("op", "settings.change", "settings", detail={"i": i})
    runner = CliRunner()
    ok = runner.invoke(audit_app, ["verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0 and "OK: 4 entries" in ok.output
    head = ok.output.split("head ")[1].strip()
    same = runner.invoke(audit_app, ["verify", "--data-dir", str(tmp_path), "--head", head])
    assert same.exit_code == 0
    out = tmp_path / "audit.jsonl"
    assert runner.invoke(audit_app, ["export", str(out), "--data-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(audit_app, ["verify", "--file", str(out)]).exit_code == 0
    with p.store.engine.begin() as conn:
        conn.exec_driver_sql("""UPDATE audit_log SET detail = '{"i":7}' WHERE seq = 2""")
    bad = runner.invoke(audit_app, ["verify", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "BROKEN at entry 2" in bad.output
    with p.store.engine.begin() as conn:
        conn.exec_driver_sql("""UPDATE audit_log SET detail = '{"i":1}' WHERE seq = 2""")
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 4")
    truncated = runner.invoke(audit_app, ["verify", "--data-dir", str(tmp_path), "--head", head])
    assert truncated.exit_code == 1 and head in truncated.output and "cut" in truncated.output
