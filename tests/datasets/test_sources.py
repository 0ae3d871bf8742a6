"""Where a job's dataset names point: one meaning, resolved by the party's source."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sharedml.components import PartyConfig, StepContext
from sharedml.components.jobspec import load
from sharedml.datasets import DatasetFiles, DatasetSource
from sharedml.errors import ConfigError, DataError
from sharedml.node.registry import NodeRegistry
from sharedml.session import Session
from sharedml.transport import LocalHub

CSV = "id,y,x\n1,0,0.5\n2,1,1.5\n"


def _context(party: PartyConfig, datasets: DatasetSource) -> StepContext:
    session = Session("bank", ("bank",), LocalHub(["bank"]).channel("bank"))
    return StepContext(session, party, {"bank": party}, {}, Path("."), "psi", datasets=datasets)


def test_a_spec_keeps_dataset_names_as_written(tmp_path: Path) -> None:
    spec = load({"parties": {"bank": {"dataset": "data/bank.csv", "label": "y"}},
                 "steps": [{"describe": {}}]})
    assert spec.party_configs()["bank"].dataset == "data/bank.csv"


def test_files_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bank.csv").write_text(CSV)
    files = DatasetFiles(tmp_path)
    assert files.path("data/bank.csv") == tmp_path / "data" / "bank.csv"
    assert files.path(str(tmp_path / "x.csv")) == tmp_path / "x.csv"  # absolute: as given
    ctx = _context(PartyConfig("bank", "data/bank.csv", "y"), files)
    frame = ctx.load_dataset()
    assert list(frame.columns) == ["id", "y", "x"] and frame["x"].tolist() == [0.5, 1.5]


def test_a_node_reads_only_what_it_registered(tmp_path: Path) -> None:
    (tmp_path / "bank.csv").write_text(CSV)
    node = NodeRegistry({"customers": tmp_path / "bank.csv"}, tmp_path / "work")
    frame = _context(PartyConfig("bank", "customers", "y"), node).load_dataset(["id"])
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    # a file path in the spec is just an unknown name on a node: never read
    with pytest.raises(DataError, match=r"'.*bank\.csv' is not registered on this node") as info:
        _context(PartyConfig("bank", str(tmp_path / "bank.csv"), "y"), node).load_dataset()
    assert info.value.party == "bank" and info.value.step == "psi"
    assert "datasets:" in (info.value.remedy or "")


def test_a_party_without_a_dataset_is_told_so() -> None:
    with pytest.raises(ConfigError, match="no dataset"):
        _context(PartyConfig("bank", None), DatasetFiles()).load_dataset()
