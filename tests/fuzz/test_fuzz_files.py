"""Fuzzing the file parsers a party reads: the CSV dataset reader and model-part files
(issue 14). Random bytes, and mutations of real files: the reader returns a report
or raises :class:`DataError`; a model loader returns a model or raises
:class:`DataError`/:class:`ConfigError`; 0 crashes, 0 hangs in ``FUZZ_EXAMPLES``
examples per target."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedml.datasets.reader import load_frame, validate_file
from sharedml.datasets.schema import Schema
from sharedml.errors import ConfigError, DataError
from sharedml.learn.linear import SSLogisticRegression
from sharedml.learn.tree import SecureBoostClassifier

from .conftest import FUZZ, refuses_only

pytestmark = pytest.mark.timeout(900)

CSV_PIECES = st.lists(st.sampled_from(
    [b"id", b"y", b"x0", b",", b"\n", b"\r\n", b'"', b"1", b"0.5", b"-", b"nan", b"inf", b"e9",
     b"\xff", b"\xc3\xa9", b" ", b"\x00", b"true", b"", b"1e400", b"999999999999999999999"]),
    max_size=80).map(b"".join)


def _write(data: bytes, suffix: str = ".csv") -> Path:
    fh = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115
    with fh:
        fh.write(data)
    return Path(fh.name)


@FUZZ
@given(st.one_of(st.binary(max_size=400), CSV_PIECES))
def test_csv_reader_random_and_csv_like_bytes(data: bytes) -> None:
    path = _write(b"id,y,x0\n" + data if data[:1] == b"1" else data)
    try:
        schema = Schema(("id",), {"x0": "float"}, "y", allow_missing=True)
        frame, report = refuses_only((), lambda: validate_file(path, schema), "validate_file")
        assert report is not None and (frame is not None or not report.ok)
        refuses_only((DataError,), lambda: load_frame(path, ["id"], "y", party="bank"),
                     "load_frame")
    finally:
        path.unlink()


CSV_ROWS = st.lists(st.sampled_from(
    [b"1", b"2", b"0.5", b"-3", b"nan", b"inf", b"1e400", b"", b" 7 ", b"true", b"x", b"\xc3\xa9",
     b"999999999999999999999"]), min_size=3, max_size=3).map(b",".join)


@FUZZ
@given(st.lists(CSV_ROWS, max_size=12), st.sampled_from([b"\n", b"\r\n"]),
       st.sampled_from(["float", "int", "bool", "category"]))
def test_csv_fast_path_matches_the_general_path(rows: list[bytes], end: bytes,
                                                 kind: str) -> None:
    """Differential: whatever the fast path accepts, it reads as the general path does."""
    from sharedml.datasets import reader
    from sharedml.datasets.fast_csv import read_simple

    path = _write(end.join([b"id,y,x0", *rows]) + end)
    schema = Schema(("id",), {"x0": kind}, "y", "float")  # type: ignore[dict-item]
    try:
        if read_simple(path, schema) is None:
            return
        fast = refuses_only((), lambda: validate_file(path, schema), "validate_file (fast)")
        general_read, reader.read_simple = reader.read_simple, lambda *_: None
        try:
            general = validate_file(path, schema)
        finally:
            reader.read_simple = general_read
        assert [str(p) for p in fast[1].problems] == [str(p) for p in general[1].problems]
        if fast[0] is not None and general[0] is not None:
            pd.testing.assert_frame_equal(fast[0], general[0])
    finally:
        path.unlink()


@FUZZ
@given(st.binary(max_size=400))
def test_parquet_reader_random_bytes(data: bytes) -> None:
    path = _write(b"PAR1" + data, ".parquet")
    try:
        refuses_only((DataError,), lambda: load_frame(path, ["id"], "y", party="bank"),
                     "load_frame (parquet)")
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def model_docs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """Real model parts of both parties: SS logistic regression and SecureBoost."""
    from sharedml.standalone import run_job

    out = tmp_path_factory.mktemp("models")
    run_job({"name": "fuzz-models", "parties": {
        "bank": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
        "shop": {"dataset": str(shared_data / "breast_hetero_host.csv")}},
        "steps": [{"psi": {}}, {"split": {"seed": 1}},
                  {"id": "lr", "train": {"model": "logistic_regression", "epochs": 1}},
                  {"id": "sb", "train": {"model": "secureboost", "protocol": "ss",
                                         "n_estimators": 2, "max_depth": 2}}]},
        out, embedded=True, timeout=120)
    return {f"{kind}-{party}": json.loads((out / party / f"model-{kind}.json").read_text())
            for kind in ("lr", "sb") for party in ("bank", "shop")}


LOADERS = {"lr": SSLogisticRegression, "sb": SecureBoostClassifier}
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON = st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=8)


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*at, i))
    return out


def _replace(doc: Any, at: tuple[Any, ...], value: Any) -> Any:
    if not at:
        return value
    copy = doc.copy()
    copy[at[0]] = _replace(doc[at[0]], at[1:], value)
    return copy


@pytest.mark.skip(reason="main now seals a party's model part (modelpart/part.py) and the job "
                  "writes no plain model file: this target moves to ModelPart.unseal/from_body")
@FUZZ
@given(st.sampled_from(["lr-bank", "lr-shop", "sb-bank", "sb-shop"]), st.data())
def test_model_part_files_with_a_field_replaced(model_docs: dict[str, Any], which: str,
                                                data: st.DataObject) -> None:
    doc = model_docs[which]
    at = data.draw(st.sampled_from(_paths(doc)))
    mutated = _replace(doc, at, data.draw(JSON))
    path = _write(json.dumps(mutated).encode(), ".json")
    try:
        refuses_only((DataError, ConfigError), lambda: LOADERS[which[:2]].load(path),
                     f"{which} load")
    finally:
        path.unlink()


@FUZZ
@given(st.sampled_from(["lr-bank", "sb-bank"]), st.binary(max_size=300))
def test_model_part_files_random_bytes(which: str, data: bytes) -> None:
    path = _write(data, ".json")
    try:
        refuses_only((DataError, ConfigError), lambda: LOADERS[which[:2]].load(path),
                     f"{which} load")
    finally:
        path.unlink()
