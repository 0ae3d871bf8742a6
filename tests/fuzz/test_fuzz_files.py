"""Fuzzing the file parsers a party reads: the CSV dataset reader and model-part files
(issue 14). Random bytes, and mutations of real files: the reader returns a report
or raises :class:`DataError`; a sealed model part (``ModelPart.unseal``) and its
body (``ModelPart.from_body``) open or are refused with :class:`DataError` /
:class:`ConfigError`, as does a model loader; 0 crashes, 0 hangs in
``FUZZ_EXAMPLES`` examples per target."""

from __future__ import annotations

import dataclasses
import json
import struct
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
from sharedml.modelpart import FileNodeKeys, ModelPart
from sharedml.modelpart.format import canonical, fingerprint

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
def model_parts(tmp_path_factory: pytest.TempPathFactory,
                shared_data: Path) -> dict[str, tuple[bytes, FileNodeKeys, ModelPart]]:
    """Real sealed model parts of both parties (SS logistic regression and SecureBoost):
    each file's bytes, the node keys that open it, and the part opened."""
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
    parts = {}
    for party in ("bank", "shop"):
        keys = FileNodeKeys(out / "models" / party / "keys")
        for path in (out / "models" / party / "parts").glob("*.smp"):
            blob = path.read_bytes()
            part = ModelPart.unseal(blob, keys)
            parts[f"{part.header.step}-{party}"] = (blob, keys, part)
    assert sorted(parts) == ["lr-bank", "lr-shop", "sb-bank", "sb-shop"]
    return parts


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


@FUZZ
@given(st.sampled_from(["lr-bank", "lr-shop", "sb-bank", "sb-shop"]), st.data())
def test_model_part_bodies_with_a_field_replaced(
    model_parts: dict[str, tuple[bytes, FileNodeKeys, ModelPart]], which: str,
    data: st.DataObject,
) -> None:
    """A body that passes the fingerprint (recomputed, as for a part damaged before it
    was sealed) with one field replaced: a part, or a clear refusal."""
    part = model_parts[which][2]
    at = data.draw(st.sampled_from(_paths(part.body)))
    body = json.dumps(_replace(part.body, at, data.draw(JSON))).encode()
    header = dataclasses.replace(part.header, fingerprint=fingerprint(body))
    refuses_only((DataError, ConfigError), lambda: ModelPart.from_body(header, body, which),
                 f"{which} from_body at {at}")


@FUZZ
@given(st.sampled_from(["lr-bank", "sb-shop"]), st.data())
def test_sealed_model_part_files_damaged(
    model_parts: dict[str, tuple[bytes, FileNodeKeys, ModelPart]], which: str,
    data: st.DataObject,
) -> None:
    """The sealed file with bytes flipped, cut, or a header field replaced: refused."""
    blob, keys, part = model_parts[which]
    how = data.draw(st.sampled_from(["flip", "cut", "header"]))
    if how == "flip":
        damaged = bytearray(blob)
        for at, bit in data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1),
                                                    st.integers(0, 7)), min_size=1, max_size=4)):
            damaged[at] ^= 1 << bit
        damaged_blob = bytes(damaged)
    elif how == "cut":
        damaged_blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        doc = json.loads(part.header.to_bytes())
        field = data.draw(st.sampled_from(sorted(doc)))
        changed = {**doc, field: data.draw(JSON.filter(lambda v: v != doc[field]))}
        try:
            head = canonical(changed)
        except ValueError:  # NaN or infinity: no canonical form, plain JSON then
            head = json.dumps(changed).encode()
        sealed = blob[len(part.header.prefix()):]
        damaged_blob = struct.pack(">4sBI", b"SMLP", 1, len(head)) + head + sealed
    got = refuses_only((DataError, ConfigError), lambda: ModelPart.unseal(damaged_blob, keys),
                       f"{which} unseal ({how})")
    assert got is None or damaged_blob == blob, f"{which}: a damaged file opened ({how})"


@FUZZ
@given(st.sampled_from(["lr-bank", "sb-bank"]), st.binary(max_size=300))
def test_model_part_files_random_bytes(which: str, data: bytes) -> None:
    path = _write(data, ".json")
    try:
        refuses_only((DataError, ConfigError), lambda: LOADERS[which[:2]].load(path),
                     f"{which} load")
    finally:
        path.unlink()
