"""Model parts: sealed at rest, loaded only as the version asked for, signed exports."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.errors import ConfigError, DataError, PolicyDenied
from sharedml.modelpart import FileNodeKeys, ModelPart, PartStore
from sharedml.modelpart.format import split_file
from sharedml.standalone.models import LocalRegistry


def _registry(trained: Path) -> LocalRegistry:
    return LocalRegistry(trained / "models")


def _version(trained: Path) -> tuple[str, dict[str, str]]:
    got = _registry(trained).show("breast-lr@1")
    return got["uid"], got["fingerprints"]


def test_train_registers_a_version_with_each_partys_fingerprint(trained: Path) -> None:
    book = _registry(trained)
    record = book.show("breast-lr@1")
    assert record["parties"] == ["guest", "host"]
    assert record["job"] == "breast-lr" and record["step"] == "train"
    assert record["spec_hash"].startswith("sha256:")
    for party in ("guest", "host"):
        part = book.store(party).load(record["uid"], record["fingerprints"][party])
        assert part.header.party == party and part.header.label_holder == "guest"
        assert part.fingerprint == record["fingerprints"][party]
    # the registry holds hashes and public metrics, never parameters
    text = (trained / "models" / "registry.json").read_text()
    coef = book.store("guest").load(record["uid"]).model.coef_
    assert coef is not None and not any(repr(float(c))[:8] in text for c in coef)
    assert book.verify_log() == 1


def test_parts_are_sealed_at_rest_with_mode_0600(trained: Path) -> None:
    uid, _ = _version(trained)
    for party in ("guest", "host"):
        store = _registry(trained).store(party)
        path = store.path(uid)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((trained / "models" / party / "keys" / "at-rest.key").stat().st_mode
                            ) == 0o600
        blob = path.read_bytes()
        header, _, body = split_file(blob, str(path))
        assert header.model_uid == uid
        # no parameter name or quoted column name in clear; tokens of four bytes or more, so a
        # random ciphertext contains one by chance with odds of about len(body) / 2**32
        assert b"coef" not in body and b'"x0"' not in body


def test_a_part_of_another_version_is_refused(trained: Path, tmp_path: Path) -> None:
    uid, prints = _version(trained)
    store = _registry(trained).store("host")
    other = "0" * 32
    # the file of version uid copied under another version's name
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / f"{other}.smp").write_bytes(store.path(uid).read_bytes())
    impostor = PartStore(tmp_path / "parts", store.keys, party="host")
    with pytest.raises(DataError, match=f"is a part of model version {uid}, not of {other}"):
        impostor.load(other)
    with pytest.raises(DataError, match="the registry recorded"):
        store.load(uid, prints["guest"])  # another party's fingerprint for this version


def test_an_altered_part_or_another_nodes_key_is_refused(trained: Path, tmp_path: Path) -> None:
    uid, _ = _version(trained)
    store = _registry(trained).store("host")
    blob = bytearray(store.path(uid).read_bytes())
    blob[-20] ^= 1
    with pytest.raises(DataError, match="failed authentication"):
        ModelPart.unseal(bytes(blob), store.keys)
    header_edit = store.path(uid).read_bytes().replace(b'"party":"host"', b'"party":"hosz"')
    with pytest.raises(DataError, match="failed authentication"):
        ModelPart.unseal(header_edit, store.keys)
    stranger = FileNodeKeys.create(tmp_path / "keys")
    with pytest.raises(DataError, match="sealed by another node's key"):
        ModelPart.unseal(store.path(uid).read_bytes(), stranger)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    FileNodeKeys.create(tmp_path / "k")
    os.chmod(tmp_path / "k" / "at-rest.key", 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        FileNodeKeys(tmp_path / "k")


def test_signed_export_imports_on_another_node_and_refusals(trained: Path,
                                                            tmp_path: Path) -> None:
    uid, prints = _version(trained)
    source = _registry(trained).store("host")
    export = source.export(uid, tmp_path / "host.smx")
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    target_keys = FileNodeKeys.create(tmp_path / "node2-keys")
    target = PartStore(tmp_path / "node2-parts", target_keys, party="host")
    trusted = [source.keys.public_key_pem()]

    with pytest.raises(PolicyDenied, match="does not trust"):
        target.import_(export, uid=uid, fingerprint=prints["host"])
    with pytest.raises(DataError, match="not of " + "1" * 32):
        target.import_(export, uid="1" * 32, fingerprint=None, trusted=trusted)
    with pytest.raises(DataError, match="the registry recorded"):
        target.import_(export, uid=uid, fingerprint=prints["guest"], trusted=trusted)
    wrong_party = PartStore(tmp_path / "p3", target_keys, party="guest")
    with pytest.raises(DataError, match="not 'guest''s"):
        wrong_party.import_(export, uid=uid, fingerprint=None, trusted=trusted)
    altered = bytearray(export.read_bytes())
    altered[-100] ^= 1
    (tmp_path / "altered.smx").write_bytes(bytes(altered))
    with pytest.raises(DataError, match="signature does not hold"):
        target.import_(tmp_path / "altered.smx", uid=uid, fingerprint=None, trusted=trusted)

    part = target.import_(export, uid=uid, fingerprint=prints["host"], trusted=trusted)
    again = target.load(uid, prints["host"])  # re-sealed under node 2's key
    assert again.fingerprint == part.fingerprint == prints["host"]
    assert np.array_equal(again.model.coef_, source.load(uid).model.coef_)
    with pytest.raises(DataError, match="immutable"):
        target.import_(export, uid=uid, fingerprint=prints["host"], trusted=trusted)


def test_schema_mismatch_is_refused_naming_the_column(trained: Path, shared_data: Path) -> None:
    uid, _ = _version(trained)
    part = _registry(trained).store("host").load(uid)
    rows = pd.read_csv(shared_data / "breast_hetero_host.csv", dtype={"id": str}).head(5)
    assert list(part.features(rows, ["id"]).columns) == part.pipeline.features
    with pytest.raises(DataError, match=r"missing column\(s\) \['x7'\]"):
        part.features(rows.drop(columns=["x7"]), ["id"])
    with pytest.raises(DataError, match=r"x3 \(text, the model expects number\)"):
        part.features(rows.assign(x3="high"), ["id"])
    with pytest.raises(DataError, match=r"does not know \['income'\]"):
        part.features(rows.assign(income=1.0), ["id"])


def test_tag_moves_an_alias_and_is_logged(trained: Path) -> None:
    book = _registry(trained)
    book.tag("breast-lr@1", "production", actor="alice")
    assert book.resolve_text("breast-lr@production").version == 1
    assert book.log()[-1]["action"] == "model.tag"
    assert book.log()[-1]["actor"] == "alice"
    assert book.verify_log() == 2
    with pytest.raises(ConfigError, match="no alias 'candidate'"):
        book.resolve_text("breast-lr@candidate")
