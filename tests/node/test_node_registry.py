"""The node's dataset registry: name -> CSV, Parquet or a SQL table, with a schema; and the
platform's dataset records taken from the node that holds them (issue 13 item 4, issue 14)."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from sharedml.errors import ConfigError, DataError
from sharedml.node.agent import NodeConfig
from sharedml.node.registry import DatasetEntry, NodeRegistry


@pytest.fixture
def sources(tmp_path: Path, shared_data: Path) -> dict[str, object]:
    csv = shared_data / "breast_hetero_guest.csv"
    frame = pd.read_csv(csv)
    frame.to_parquet(tmp_path / "guest.parquet", index=False)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    frame.to_sql("customers", engine, index=False)
    engine.dispose()
    return {
        "csv": str(csv),
        "parquet": {"path": str(tmp_path / "guest.parquet")},
        "sql": {"sql": f"sqlite:///{tmp_path / 'bank.db'}", "table": "customers",
                "columns": {"id": "category", "y": "int"}},
    }


def test_csv_parquet_and_sql_tables_load_as_the_same_frame(
    sources: dict[str, object], tmp_path: Path
) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("party: bank\nplatform: x:1\npki_dir: pki\nwork_dir: work\n"
                      f"datasets: {sources}\n".replace("'", '"'))
    loaded = NodeConfig.load(config)
    registry = NodeRegistry(loaded.datasets, loaded.work_dir)
    frames = {name: registry.load(name, ["id"], "y", party="bank") for name in sources}
    same = {"id": str, "y": float}  # typed stores keep integer ids; SQL the declared int label
    for other in ("parquet", "sql"):
        pd.testing.assert_frame_equal(frames["csv"].astype(same), frames[other].astype(same),
                                      check_dtype=False)
    snapshot = registry.path("sql")
    assert snapshot.parent == loaded.work_dir / "datasets"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    with pytest.raises(DataError, match="'elsewhere' is not registered on this node"):
        registry.path("elsewhere", party="bank", step="psi")


def test_records_say_names_columns_and_rows_never_values(
    sources: dict[str, object], tmp_path: Path
) -> None:
    registry = NodeRegistry({"csv": sources["csv"],  # type: ignore[dict-item]
                             "sql": DatasetEntry.model_validate(sources["sql"])}, tmp_path)
    records = {r.name: r for r in registry.records()}
    assert records["csv"].rows == records["sql"].rows == 569
    csv_cols = {c.name: c.type for c in records["csv"].columns}
    assert list(csv_cols)[:2] == ["id", "y"] and csv_cols["x0"] == "float"
    sql_cols = {c.name: c.type for c in records["sql"].columns}
    assert sql_cols["id"] == "category" and sql_cols["y"] == "int"  # declared types win
    wire = b"".join(r.encode() for r in records.values())
    first = pd.read_csv(sources["csv"]).iloc[0]  # type: ignore[call-overload]
    assert str(first["x0"]).encode() not in wire


def test_bad_entries_are_refused_naming_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either 'path'"):
        DatasetEntry.model_validate({"sql": "sqlite://", "path": "x.csv"})
    with pytest.raises(ValueError, match="needs 'table'"):
        DatasetEntry.model_validate({"sql": "sqlite://"})
    registry = NodeRegistry({"gone": tmp_path / "gone.csv"}, tmp_path)
    with pytest.raises(ConfigError, match="node dataset 'gone' cannot be read"):
        registry.records()
    engine = f"sqlite:///{tmp_path / 'empty.db'}"
    bad = NodeRegistry({"t": DatasetEntry(sql=engine, table="missing")}, tmp_path)
    with pytest.raises(DataError, match="cannot read SQL table 'missing' of dataset 't'"):
        bad.path("t", party="bank", step="psi")
