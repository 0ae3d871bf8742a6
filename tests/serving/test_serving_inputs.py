"""Where serving parties find features (file, SQL table, entry point), which
ids a partner admits, and how concurrent requests form micro-batches."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.errors import ConfigError, DataError
from sharedml.modelpart import FeaturePipeline
from sharedml.serving import adapters
from sharedml.serving.adapters import CallableAdapter, TableAdapter, open_adapter
from sharedml.serving.allow import AllowRule
from sharedml.serving.batcher import Item, MicroBatcher
from sharedml.serving.features import PreparedFeatures

FRAME = pd.DataFrame({"id": [10, 11, 12], "x0": [0.5, 1.5, 2.5], "x1": [1.0, 2.0, 3.0],
                      "y": [0, 1, 0]})


def _check(adapter: adapters.FeatureAdapter) -> None:
    assert adapter.columns == ["x0", "x1"]
    rows, found = adapter.rows(["12", "99", "10"])
    assert found.tolist() == [True, False, True]
    assert rows.to_numpy().tolist() == [[2.5, 3.0], [0.5, 1.0]]
    assert list(adapter.sample().columns) == ["x0", "x1"]
    assert adapter.rows(["99"])[1].tolist() == [False]


def test_prepared_features_replay_the_pipeline_and_refuse_another_schema():
    pipeline = FeaturePipeline(
        schema={"x0": "number", "x1": "number"},
        ops=[{"op": "fill", "columns": ["x0"], "values": [9.0]},
             {"op": "scale", "columns": ["x1"], "center": [2.0], "scale": [0.5]}],
        features=["x1", "x0"])
    frame = FRAME.assign(x0=[0.5, None, 2.5])
    for adapter in (TableAdapter(frame, "id", "bank", ("y",)),
                    CallableAdapter(lambda ids: frame.assign(id=frame["id"].astype(str))
                                    .set_index("id").loc[[i for i in ids if i in {"10", "11",
                                                                                  "12"}],
                                                         ["x0", "x1"]], "bank")):
        X, found = PreparedFeatures(adapter, pipeline).fetch(["11", "404", "12"])
        assert found.tolist() == [True, False, True]
        assert X.tolist() == [[0.0, 9.0], [0.0, 0.0], [2.0, 2.5]]
    with pytest.raises(DataError, match=r"missing column\(s\) \['x1'\]") as refused:
        PreparedFeatures(TableAdapter(FRAME, "id", "bank", ("y", "x1")), pipeline)
    assert refused.value.party == "bank"
    with pytest.raises(DataError, match=r"x0 \(text, the model expects number\)"):
        PreparedFeatures(TableAdapter(FRAME.assign(x0=["a", "b", "c"]), "id", "bank", ("y",)),
                         pipeline)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_feature_file(tmp_path: Path, suffix: str):
    path = tmp_path / f"features{suffix}"
    FRAME.to_csv(path, index=False) if suffix == ".csv" else FRAME.to_parquet(path)
    _check(open_adapter(str(path), "id", "bank", ("y",)))


def test_a_sqlite_table(tmp_path: Path):
    with sqlite3.connect(tmp_path / "f.db") as db:
        FRAME.to_sql("customers", db, index=False)
    _check(open_adapter(f"sqlite:///{tmp_path / 'f.db'}#customers", "id", "bank", ("y",)))
    with pytest.raises(ConfigError, match="names no table"):
        open_adapter(f"sqlite:///{tmp_path / 'f.db'}", "id", "bank")


def test_a_callable_from_an_entry_point(monkeypatch: pytest.MonkeyPatch):
    def lookup(ids: list[str]) -> Any:
        frame = FRAME.assign(id=FRAME["id"].astype(str)).set_index("id")[["x0", "x1"]]
        return frame.loc[[i for i in ids if i in frame.index]]

    class EntryPoint:
        name = "crm"

        def load(self) -> Any:
            return lookup

    monkeypatch.setattr(adapters, "entry_points", lambda group: [EntryPoint()])
    _check(open_adapter("entrypoint:crm", "id", "bank"))
    with pytest.raises(ConfigError, match="no feature adapter 'other'"):
        open_adapter("entrypoint:other", "id", "bank")
    assert isinstance(CallableAdapter(lookup, "bank"), adapters.FeatureAdapter)


def test_bad_feature_tables_are_refused_naming_the_party():
    with pytest.raises(DataError, match=r"id '10' appears twice.*party 'bank'"):
        TableAdapter(pd.concat([FRAME, FRAME]), "id", "bank")
    with pytest.raises(ConfigError, match="no id column 'key'"):
        TableAdapter(FRAME, "key", "bank")
    with pytest.raises(ConfigError, match="unknown feature source"):
        open_adapter("features.xlsx", "id", "bank")


def test_allow_list_rules(tmp_path: Path):
    ids = ["100", "200", "abc"]
    assert AllowRule().admits(ids).tolist() == [True, True, True]
    assert AllowRule("regex:[0-9]+").admits(ids).tolist() == [True, True, False]
    assert AllowRule("prefix:2,a").admits(ids).tolist() == [False, True, True]
    (tmp_path / "ok.txt").write_text("100\nabc\n")
    assert AllowRule(f"file:{tmp_path / 'ok.txt'}").admits(ids).tolist() == [True, False, True]
    for bad in ("regex:[", "nope:1", f"file:{tmp_path / 'missing'}"):
        with pytest.raises(ConfigError, match="bad allow-list rule"):
            AllowRule(bad)


def test_concurrent_requests_share_batches_and_each_gets_its_rows():
    calls: list[tuple[str, int]] = []

    async def run(key: str, items: list[Item]) -> list[Any]:
        calls.append((key, sum(len(it.ids) for it in items)))
        await asyncio.sleep(0.01)
        return [np.array([float(i) for i in it.ids]) if it.ids[0] != "bad" else
                DataError("bad id") for it in items]

    async def main() -> list[Any]:
        batcher = MicroBatcher(run, max_rows=8, max_inflight=2)
        jobs = [batcher.submit("v1" if k % 3 else "v2", [str(k), str(k + 100)], None)
                for k in range(12)]
        jobs.append(batcher.submit("v1", ["bad"], None))
        return await asyncio.gather(*jobs, return_exceptions=True)

    out = asyncio.run(main())
    for k in range(12):
        assert out[k].tolist() == [k, k + 100]
    assert isinstance(out[12], DataError)
    assert all(rows <= 8 for _, rows in calls)
    assert len(calls) < 13  # requests were batched
    assert {key for key, _ in calls} == {"v1", "v2"}


def test_a_lone_request_runs_in_its_own_task_and_later_ones_queue_behind_it():
    tasks: list[Any] = []

    async def run(key: str, items: list[Item]) -> list[Any]:
        tasks.append((asyncio.current_task(), len(items)))
        await asyncio.sleep(0.01)
        return [np.array([float(i) for i in it.ids]) for it in items]

    async def main() -> tuple[Any, list[Any]]:
        batcher = MicroBatcher(run, max_rows=8, max_inflight=1)
        alone = await batcher.submit("v1", ["1"], None)
        mine = asyncio.current_task()
        burst = await asyncio.gather(*(batcher.submit("v1", [str(k)], None) for k in range(5)))
        return (alone, mine), burst

    (alone, mine), burst = asyncio.run(main())
    assert alone.tolist() == [1.0] and tasks[0] == (mine, 1)  # no hand-off to another task
    assert [b.tolist() for b in burst] == [[float(k)] for k in range(5)]
    assert [n for _, n in tasks[1:]] == [1, 4]  # the first ran alone, the rest waited as one batch
