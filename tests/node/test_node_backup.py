"""A node's model parts, sealed under a passphrase and restored (8.3-5)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from sharedml.crypto import passphrase as pp
from sharedml.errors import AuthError, ConfigError
from sharedml.node.backup import backup_models, restore_models

SECRET = "a passphrase of some length"


def _node(root: Path) -> Path:
    work = root / "work"
    for job, step in (("j1", "train_lr"), ("j1", "train_sb"), ("j2", "train")):
        path = work / "jobs" / job / f"model-{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": "sharedml.linear", "coef": [0.25, -1.5], "job": job}))
    (work / "jobs" / "j1" / "predictions-predict_lr.csv").write_text("id,score\n7,0.3\n")
    (work / "models").mkdir()
    (work / "models" / ("ab" * 16 + ".smp")).write_bytes(b"SMLP sealed part")
    (work / "keys").mkdir()
    (work / "keys" / "at-rest.key").write_bytes(b"k" * 32)
    return work


def test_model_parts_come_back_on_a_new_disk_and_nothing_else(tmp_path: Path) -> None:
    work = _node(tmp_path / "old")
    file = tmp_path / "bank-models.json"
    assert backup_models("bank", work, file, SECRET) == 4
    assert file.stat().st_mode & 0o777 == 0o600
    assert b"sharedml.linear" not in file.read_bytes()  # sealed
    new = tmp_path / "new" / "work"
    restored = restore_models("bank", new, file, SECRET)
    assert sorted(p.relative_to(new).as_posix() for p in restored) == [
        "jobs/j1/model-train_lr.json", "jobs/j1/model-train_sb.json", "jobs/j2/model-train.json",
        "keys/at-rest.key", "models/" + "ab" * 16 + ".smp"]
    for path in restored:
        assert path.read_text() == (work / path.relative_to(new)).read_text()
    assert not (new / "jobs" / "j1" / "predictions-predict_lr.csv").exists()
    with pytest.raises(ConfigError, match="not overwritten"):
        restore_models("bank", new, file, SECRET)


def test_a_wrong_passphrase_another_node_or_a_hostile_archive_is_refused(tmp_path: Path) -> None:
    work = _node(tmp_path / "old")
    file = tmp_path / "m.json"
    backup_models("bank", work, file, SECRET)
    with pytest.raises(AuthError, match="does not open"):
        restore_models("bank", tmp_path / "n1", file, "another passphrase entirely")
    with pytest.raises(ConfigError, match="not 'shop'"):
        restore_models("shop", tmp_path / "n2", file, SECRET)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"evil"
        info = tarfile.TarInfo("../../outside.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    hostile = {"format": "sharedml-node-models", "party": "bank",
               "models": pp.seal(buffer.getvalue(), SECRET, "model parts of node bank")}
    file.write_text(json.dumps(hostile))
    with pytest.raises(ConfigError, match="unexpected member"):
        restore_models("bank", tmp_path / "n3", file, SECRET)
    assert not (tmp_path / "outside.json").exists()
