"""The reader's fast path (simple CSV layouts) gives what the general path gives:
the same typed frame, the same problems on the same lines; files it does not
fully understand go to the general path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sharedml.datasets import reader
from sharedml.datasets.fast_csv import read_simple, scan_layout
from sharedml.datasets.reader import load_frame, validate_file
from sharedml.datasets.schema import Schema

SCHEMA = Schema(("id",), {"age": "int", "income": "float", "city": "category",
                          "flag": "bool"}, label="y", label_type="int")
HEAD = "id,y,age,income,city,flag\n"
GOOD = HEAD + "1,0,30,1.5,Oslo,true\n2,1,41,2.25,0042,0\n3,0,25,-0.5,Oslo,FALSE\n"

#: Files the fast path reads: each problem must be reported as the general path does.
SIMPLE = {
    "good": GOOD,
    "crlf": GOOD.replace("\n", "\r\n"),
    "no final newline": GOOD.rstrip("\n"),
    "header only": HEAD,
    "spaces around numbers": HEAD + "1,0, 30 ,1.5 ,Oslo,1\n",
    "non-numeric": GOOD + "4,0,abc,1.0,Oslo,1\n5,1,33,12k,Oslo,0\n",
    "nan and inf": GOOD + "4,0,30,,Oslo,1\n5,0,31,inf,Oslo,1\n6,0,32,NaN,Oslo,1\n7,0,1,1e400,x,1\n",
    "booleans in a number column": GOOD + "4,0,30,True,Oslo,1\n",
    "non-integer and non-boolean": GOOD + "4,0,2.5,1.0,Oslo,maybe\n",
    "duplicate and blank ids": GOOD + "2,0,30,1.0,Oslo,1\n ,1,30,1.0,Oslo,1\n",
    "huge integers": GOOD + "4,0,999999999999999999999,1.0,Oslo,1\n5,0,-1e19,1,x,1\n",
}
#: Files it leaves to the general path (their line numbers need the record scan).
GENERAL = {
    "quoted newline": GOOD + '4,0,30,1.0,"Os\nlo",1\n5,0,x,1.0,Oslo,1\n',
    "blank line": GOOD + "\n4,0,x,1.0,Oslo,1\n",
    "whitespace line": GOOD + " \n4,0,x,1.0,Oslo,1\n",
    "truncated": GOOD + "4,0,3",
    "ragged": GOOD + "4,0,30,1.0,Oslo,1,extra\n5,0,1,1.0,Oslo,1\n",
    "short and long balance": GOOD + "4,0,30,1.0,Oslo\n5,0,1,1.0,Oslo,1,1\n",
    "not UTF-8": (GOOD + "4,0,30,1.0,Tromsø,1\n").encode("latin-1"),
    "lone carriage return": GOOD + "4,0,30,1.0,Oslo,1\r5,0,30,1.0,Oslo,1\n",
    "missing column": "id,y,age,city,flag\n1,0,30,Oslo,1\n",
    "extra column": "id,y,age,income,city,flag,shoe\n1,0,30,1.0,Oslo,1,42\n",
    "duplicate column": "id,y,age,income,city,flag,age\n1,0,30,1.0,Oslo,1,31\n",
    "empty": "",
}


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "d.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _general(path: Path, schema: Schema, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setattr(reader, "read_simple", lambda *_: None)
        return validate_file(path, schema)


def _same(fast: tuple, general: tuple) -> None:
    (frame, report), (frame_g, report_g) = fast, general
    assert [(p.kind, p.column, p.rows, p.count, p.message) for p in report.problems] == \
        [(p.kind, p.column, p.rows, p.count, p.message) for p in report_g.problems]
    assert report.rows == report_g.rows
    assert (frame is None) == (frame_g is None)
    if frame is not None:
        pd.testing.assert_frame_equal(frame, frame_g)


@pytest.mark.parametrize("name", sorted(SIMPLE))
def test_simple_files_take_the_fast_path_and_match(tmp_path: Path, name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, SIMPLE[name])
    assert read_simple(path, SCHEMA) is not None, "expected the fast path"
    _same(validate_file(path, SCHEMA), _general(path, SCHEMA, monkeypatch))


@pytest.mark.parametrize("name", sorted(GENERAL))
def test_other_files_take_the_general_path(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, GENERAL[name])
    assert read_simple(path, SCHEMA) is None


def test_problems_keep_their_file_lines(tmp_path: Path) -> None:
    """Line numbers on the fast path are file lines (header = line 1), as before."""
    _, report = validate_file(_write(tmp_path, SIMPLE["nan and inf"]), SCHEMA)
    found = {p.kind: p for p in report.problems}
    assert found["missing value"].rows == [5, 7]
    assert found["infinite value"].rows == [6, 8]
    _, report = validate_file(_write(tmp_path, SIMPLE["booleans in a number column"]), SCHEMA)
    assert next((p.kind, p.column, p.rows) for p in report.problems) == (
        "non-numeric", "income", [5])


def test_extra_columns_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lax = Schema(SCHEMA.id_columns, SCHEMA.features, "y", "int", allow_extra_columns=True)
    path = _write(tmp_path, GENERAL["extra column"])
    got = read_simple(path, lax)
    assert got is not None and "shoe" not in got[0].columns
    _same(validate_file(path, lax), _general(path, lax, monkeypatch))


def test_layout_counts_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file read in several chunks: a blank line at a chunk boundary is still seen."""
    import sharedml.datasets.fast_csv as fast_csv

    monkeypatch.setattr(fast_csv, "_CHUNK", 16)
    rows = "".join(f"{i},0,30,1.5,Oslo,1\n" for i in range(1, 40))
    layout = scan_layout(_write(tmp_path, HEAD + rows))
    assert layout is not None and layout.lines == 40 and layout.commas == 5 * 40
    assert scan_layout(_write(tmp_path, HEAD + rows + "\n" + rows)) is None


def test_real_files_match_the_general_path(shared_data: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit on the reference data: the training job's features do not change."""
    for name, label in (("default_credit_hetero_guest.csv", "y"),
                        ("default_credit_hetero_host.csv", None)):
        path = shared_data / name
        fast = load_frame(path, ["id"], label)
        with monkeypatch.context() as m:
            m.setattr(reader, "read_simple", lambda *_: None)
            general = load_frame(path, ["id"], label)
        pd.testing.assert_frame_equal(fast, general, check_exact=True)
