"""Issue 14 item 7: an audit log that survives a rewrite (9.3).

The probe's findings, against the real store and the real CLI: rewriting an
entry's actor and recomputing every later hash still "verified"; cutting the
tail still "verified"; ``--head`` failed as soon as the log grew. Now parties
keep the platform's signed checkpoints and verify against them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from platform_world import World
from sqlalchemy import delete, select

from sharedml.errors import ConfigError
from sharedml.platform.audit import GENESIS, entry_dict, entry_hash, verify_lines
from sharedml.platform.store.models import AuditEntry


def _rewrite_actor(world: World, seq: int, actor: str) -> None:
    """What someone who may write the database does: edit, then recompute the chain."""
    with world.platform.store.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.seq >= seq)
                         .order_by(AuditEntry.seq)).all()
        prev = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq - 1)) or GENESIS
        for e in rows:  # unique hashes: clear them first, then write the new ones
            e.hash = f"tmp{e.seq}"
        s.flush()
        for e in rows:
            if e.seq == seq:
                e.actor = actor
            e.prev_hash = prev
            e.hash = prev = entry_hash(prev, entry_dict(e))


def _keep(world: World, path: Path, who: str = "analyst") -> dict[str, str]:
    from sharedml.platform.audit_checkpoints import Checkpoint, keep

    r = world.call(who, "GET", "/api/v1/audit/checkpoint")
    assert r.status_code == 200, r.text
    got = r.json()
    keep(path, got["public_key"], Checkpoint.from_dict(got))
    return dict(got)


def _cli_verify(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHAREDML_PLATFORM_DIR": str(world.platform.data_dir)}
    return subprocess.run([sys.executable, "-m", "sharedml.cli", "audit", "verify", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_rewritten_and_rehashed_entry_fails_against_a_kept_checkpoint(
    world: World, tmp_path: Path
) -> None:
    from sharedml.platform.audit_checkpoints import load_kept

    kept_file = tmp_path / "kept.txt"
    got = _keep(world, kept_file)  # an owner keeps a checkpoint of the log as it is
    assert got["seq"] >= 4
    world.platform.audit.append("admin", "user.create", "x")
    _rewrite_actor(world, 2, "someone-else")
    exported = list(world.platform.audit.export())
    assert verify_lines(exported).ok  # the chain alone cannot tell (the finding)
    pem, kept = load_kept(kept_file)
    v = verify_lines(exported, kept, pem)  # an owner's check of an export, without the key
    assert not v.ok and v.first_bad_seq == got["seq"] and "rewritten" in v.reason
    (tmp_path / "export.jsonl").write_text("".join(line + "\n" for line in exported))
    out = _cli_verify(world, "--file", str(tmp_path / "export.jsonl"), "--checkpoints",
                      str(kept_file))
    assert out.returncode == 1 and "rewritten" in out.stdout, out.stdout + out.stderr


def test_a_cut_tail_fails_against_a_kept_checkpoint(world: World, tmp_path: Path) -> None:
    from sharedml.platform.audit_checkpoints import load_kept

    kept_file = tmp_path / "kept.txt"
    got = _keep(world, kept_file)
    with world.platform.store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq >= got["seq"] - 1))
    assert world.platform.audit.verify().ok  # a shorter chain verifies alone, MACs too
    v = world.platform.audit.verify(*reversed(load_kept(kept_file)))
    assert not v.ok and "cut" in v.reason, v


def test_head_keeps_working_as_the_log_grows(world: World, tmp_path: Path) -> None:
    noted = world.platform.audit.head()[1]
    for i in range(3):
        world.platform.audit.append("admin", "settings.update", str(i))
    out = _cli_verify(world, "--head", noted)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    _rewrite_actor(world, 1, "mallory")  # every hash changes: the noted head is gone
    export = tmp_path / "export.jsonl"
    export.write_text("".join(line + "\n" for line in world.platform.audit.export()))
    out = _cli_verify(world, "--file", str(export), "--head", noted)  # no key: the chain
    assert out.returncode == 1 and "cut or rewritten" in out.stdout, out.stdout
    out = _cli_verify(world, "--head", noted)  # the platform's own check has the key
    assert out.returncode == 1 and "entry 1's MAC does not verify" in out.stdout, out.stdout


def test_checkpoints_are_signed_pinned_and_published(world: World, tmp_path: Path) -> None:
    from sharedml.platform.audit_checkpoints import Checkpoint, check_signature, keep

    kept_file = tmp_path / "kept.txt"
    got = _keep(world, kept_file, who="data_owner")  # any signed-in user may keep one
    c = Checkpoint.from_dict(got)
    assert check_signature(c, got["public_key"])
    forged = Checkpoint(c.seq + 5, c.head, c.ts, c.signature)
    assert not check_signature(forged, got["public_key"])
    with pytest.raises(ConfigError, match="signature"):
        keep(kept_file, got["public_key"], forged)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ConfigError, match="pinned"):
        keep(kept_file, other, c)
    # the serving platform's periodic publication: an entry when the log grew, else none
    p = world.platform
    after = p.checkpoints.publish(p.audit, p.clock.now().isoformat())
    (entry,) = p.audit.query(action="audit.checkpoint")
    assert entry.seq == after and int(entry.target) == after - 1
    assert p.checkpoints.publish(p.audit, p.clock.now().isoformat(), after) == after
    assert world.call(None, "GET", "/api/v1/audit/checkpoint").status_code == 401
