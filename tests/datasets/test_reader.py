"""The dataset reader: every validation case reports rows and never crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.datasets.reader import load_frame, validate_file
from sharedml.datasets.schema import Schema
from sharedml.errors import DataError

SCHEMA = Schema(("id",), {"age": "int", "income": "float", "city": "category"}, label="y",
                label_type="int")
GOOD = "id,y,age,income,city\n1,0,30,1.5,Oslo\n2,1,41,2.25,Bergen\n3,0,25,0.5,Oslo\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


def _problems(tmp_path: Path, text: str | bytes, schema: Schema = SCHEMA, **kw: int):
    frame, report = validate_file(_write(tmp_path, text), schema, **kw)
    return {p.kind: p for p in report.problems}, frame, report


def test_good_file_loads_typed(tmp_path: Path) -> None:
    found, frame, report = _problems(tmp_path, GOOD)
    assert report.ok and report.rows == 3 and not found
    assert frame is not None
    assert frame["income"].dtype == np.float64
    assert frame["age"].tolist() == [30, 41, 25]


def test_missing_and_extra_columns(tmp_path: Path) -> None:
    found, _, _ = _problems(tmp_path, "id,y,age,city,shoe\n1,0,30,Oslo,42\n")
    assert "income" in found["missing column"].message
    assert "shoe" in found["extra column"].message


def test_non_numeric_values_with_lines(tmp_path: Path) -> None:
    text = GOOD + "4,0,abc,1.0,Oslo\n5,1,33,12k,Oslo\n"
    found, _, _ = _problems(tmp_path, text)
    assert found["non-numeric"].rows in ([5], [6])
    kinds = [p for p in _problems(tmp_path, text)[2].problems if p.kind == "non-numeric"]
    assert {(p.column, tuple(p.rows)) for p in kinds} == {("age", (5,)), ("income", (6,))}


def test_nan_and_inf(tmp_path: Path) -> None:
    found, _, _ = _problems(tmp_path, GOOD + "4,0,30,,Oslo\n5,0,31,inf,Oslo\n6,0,32,NaN,Oslo\n")
    assert found["missing value"].rows == [5, 7]
    assert found["infinite value"].rows == [6]
    lax = Schema(SCHEMA.id_columns, SCHEMA.features, "y", "int", allow_missing=True)
    found, _, _ = _problems(tmp_path, GOOD + "4,0,30,,Oslo\n", lax)
    assert "missing value" not in found


def test_duplicate_and_empty_ids(tmp_path: Path) -> None:
    found, _, _ = _problems(tmp_path, GOOD + "2,0,30,1.0,Oslo\n ,1,30,1.0,Oslo\n")
    assert found["duplicate id"].rows == [3, 5]
    assert found["empty id"].rows == [6]


def test_ids_come_out_stripped_and_a_padded_copy_is_a_duplicate(tmp_path: Path) -> None:
    frame, report = validate_file(_write(tmp_path, "id,y,age,income,city\n 7 ,0,30,1.0,Oslo\n"
                                           "8,1,31,2.0,Oslo\n\t9,0,32,3.0,Oslo\n"), SCHEMA)
    assert report.ok and frame is not None
    assert frame["id"].tolist() == ["7", "8", "9"]  # align, psi and split need no strip of their own
    found, _, _ = _problems(tmp_path, GOOD + " 2 ,0,30,1.0,Oslo\n")
    assert found["duplicate id"].rows == [3, 5]


def test_bad_encoding(tmp_path: Path) -> None:
    raw = GOOD.encode() + "4,0,30,1.0,Tromsø\n".encode("latin-1") + b"5,0,30,1.0,Oslo\n"
    found, _, _ = _problems(tmp_path, raw)
    assert found["encoding"].rows == [5]


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    found, frame, _ = _problems(tmp_path, GOOD, max_bytes=20)
    assert frame is None and "exceeds the limit" in found["too large"].message


def test_truncated_file(tmp_path: Path) -> None:
    found, _, _ = _problems(tmp_path, GOOD + "4,0,3")
    assert found["truncated"].rows == [5]
    found, _, _ = _problems(tmp_path, GOOD + '4,0,30,1.0,"Os')
    assert "malformed" in found or "truncated" in found


def test_ragged_and_empty_files(tmp_path: Path) -> None:
    found, frame, _ = _problems(tmp_path, GOOD + "4,0,30,1.0,Oslo,extra,more\n5,0,1,1.0,Oslo\n")
    assert found["ragged"].rows == [5]
    assert frame is not None and frame["id"].tolist() == ["1", "2", "3", "5"]
    # A quoted newline keeps later line numbers right.
    found, _, _ = _problems(tmp_path, GOOD + '4,0,30,1.0,"Os\nlo"\n5,0,x,1.0,Oslo\n')
    assert found["non-numeric"].rows == [7]
    found, _, _ = _problems(tmp_path, "")
    assert "empty" in found


def test_non_integer_and_boolean(tmp_path: Path) -> None:
    schema = Schema(("id",), {"n": "int", "flag": "bool"})
    found, _, _ = _problems(tmp_path, "id,n,flag\n1,2,true\n2,2.5,maybe\n3,4,0\n", schema)
    assert found["non-integer"].rows == [3]
    assert found["non-boolean"].rows == [3]


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"id": [1, 2], "x": [0.5, 1.5]}).to_parquet(path)
    schema = Schema(("id",), {"x": "float"})
    frame, report = validate_file(path, schema)
    assert report.ok and frame is not None and frame["x"].tolist() == [0.5, 1.5]
    path.write_bytes(path.read_bytes()[:-40])
    frame, report = validate_file(path, schema)
    assert frame is None and report.problems[0].kind == "malformed"


def test_one_error_lists_all_problems_naming_the_party(tmp_path: Path) -> None:
    bad = _write(tmp_path, GOOD + "2,0,x,inf,Oslo\n")
    _, report = validate_file(bad, SCHEMA)
    with pytest.raises(DataError) as info:
        report.raise_for_problems("bank", step="load customers")
    msg = str(info.value)
    assert "duplicate id" in msg and "non-numeric" in msg and "infinite value" in msg
    assert "'bank'" in msg and "fix these rows" in msg


def test_load_frame_infers_schema(tmp_path: Path, shared_data: Path) -> None:
    frame = load_frame(shared_data / "breast_hetero_host.csv", ["id"])
    assert len(frame) == 569 and frame["x0"].dtype == np.float64
    with pytest.raises(DataError, match="duplicate id"):
        load_frame(_write(tmp_path, GOOD + "1,0,3,1.0,Oslo\n"), ["id"], "y")
