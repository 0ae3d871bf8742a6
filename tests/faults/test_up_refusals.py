"""``sharedml up`` on a dataset the nodes could not read refuses before it builds
anything (issue 14 item 8): on ``arch-landed`` a non-UTF-8 or empty CSV left a
half-built folder (CA, certificates, node configs, a platform database) behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedml.errors import ConfigError
from sharedml.platform.local_deployment import DeploymentSpec, prepare

BAD = {
    "not UTF-8": (b"id,x\n1,\xff\xfe\n", "not valid UTF-8"),
    "empty": (b"", "empty"),
    "header only": (b"id,x\n", "no rows"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_csv_leaves_no_half_built_folder(kind: str, tmp_path: Path, shared_data: Path) -> None:
    content, said = BAD[kind]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    root = tmp_path / "cluster"
    spec = DeploymentSpec({"bank": {"bank_customers": shared_data / "breast_hetero_guest.csv"},
                           "shop": {"shop_features": bad}})
    with pytest.raises(ConfigError, match=said) as info:
        prepare(root, spec)
    assert "'shop_features'" in str(info.value) and "'shop'" in str(info.value)
    assert not root.exists()


def test_a_missing_file_is_refused_and_an_existing_folder_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    root.mkdir()
    (root / "notes.txt").write_text("the operator's own file")
    spec = DeploymentSpec({"bank": {"b": tmp_path / "nope.csv"}, "shop": {"s": tmp_path / "x.csv"}})
    with pytest.raises(ConfigError, match="cannot be read"):
        prepare(root, spec)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
