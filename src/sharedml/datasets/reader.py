"""Read one party's dataset file (CSV or Parquet) and check it against a schema.

Runs in the process of the party that owns the file; the data never leaves
it. Validation (:func:`validate_file`) never raises on bad data: it collects
every problem it finds — missing or extra columns, non-numeric values, NaN and
infinity, duplicate or empty ids, bytes that are not UTF-8, a file over the
size limit, a truncated or ragged file — each with the rows it concerns, into a
:class:`ValidationReport`. :meth:`ValidationReport.raise_for_problems` turns
them into one :class:`DataError` naming the party and the remedy. Row
numbers are file line numbers for CSV (the header is line 1) and 0-based row
indices for Parquet. :func:`load_frame` is what a job step uses: infer the
schema, validate, raise on any problem.

A CSV file of a simple layout (UTF-8, no quote characters, no blank lines)
is read by the fast path of :mod:`~sharedml.datasets.fast_csv` (pandas' C
parser types the numeric columns; no per-record scan), at about
``pandas.read_csv``'s speed; any other file by the general path below. The
checks on values are the same code on both paths.
"""

from __future__ import annotations

import codecs
import csv
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sharedml.datasets.fast_csv import read_simple
from sharedml.datasets.schema import FeatureType, Schema
from sharedml.errors import DataError

DEFAULT_MAX_BYTES = 8 << 30
MAX_ROWS_SHOWN = 10
_CHUNK = 16 << 20


@dataclass
class Problem:
    """One thing wrong with a dataset, with the rows it concerns."""

    kind: str
    message: str
    column: str | None = None
    rows: list[int] = field(default_factory=list)
    count: int = 0

    def __str__(self) -> str:
        where = f" in column {self.column!r}" if self.column else ""
        shown = ", ".join(map(str, self.rows[:MAX_ROWS_SHOWN]))
        more = f" (+{self.count - MAX_ROWS_SHOWN} more)" if self.count > MAX_ROWS_SHOWN else ""
        at = f" at {'lines' if self.rows else ''} {shown}{more}" if self.rows else ""
        return f"{self.kind}{where}: {self.message}{at}"


@dataclass
class ValidationReport:
    """Every problem found in one file; empty means the file is valid."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, column: str | None = None,
            rows: Sequence[int] | np.ndarray = ()) -> None:
        rows = [int(r) for r in rows]
        self.problems.append(Problem(kind, message, column, rows[:MAX_ROWS_SHOWN], len(rows)))

    def raise_for_problems(self, party: str | None = None, step: str = "load data") -> None:
        if self.ok:
            return
        listing = "; ".join(str(p) for p in self.problems)
        raise DataError(
            f"dataset {self.path} has {len(self.problems)} problem(s): {listing}",
            party=party,
            step=step,
            remedy="fix these rows or columns in the file (or the schema) and load it again",
            column=next((p.column for p in self.problems if p.column), None),
        )


def _check_encoding(path: Path, report: ValidationReport) -> None:
    """Report lines whose bytes are not UTF-8, streaming the file in chunks."""
    bad: list[int] = []
    line = 1
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            chunk += fh.readline()  # end on a line boundary
            try:
                codecs.decode(chunk, "utf-8")
            except UnicodeDecodeError:
                for i, raw in enumerate(chunk.split(b"\n")):
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        bad.append(line + i)
            line += chunk.count(b"\n")
    if bad:
        report.add("encoding", "bytes that are not valid UTF-8", rows=bad)


def _scan_csv(path: Path, report: ValidationReport) -> np.ndarray | None:
    """File line of each data record, reporting records with too few or too many fields.

    Python's C ``csv`` reader follows quoting (a quoted field may hold a
    newline), so line numbers stay right where a plain line count would not.
    Records with too many fields are left out of the returned lines, as
    pandas skips them too.
    """
    lines = array("q")
    short: list[int] = []
    long: list[int] = []
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if not header:  # no line at all, or a blank first line
                report.add("empty", "the file has no header and no rows")
                return None
            width = len(header)
            start = reader.line_num + 1
            for rec in reader:
                if rec:
                    if len(rec) < width:
                        short.append(start)
                    elif len(rec) > width:
                        long.append(start)
                    if len(rec) <= width:
                        lines.append(start)
                start = reader.line_num + 1
        except csv.Error as exc:
            report.add("malformed", f"CSV syntax error ({exc}); truncated inside a quoted field?",
                       rows=[reader.line_num])
            return None
    if short:
        report.add("truncated", "row has fewer fields than the header (truncated file?)", rows=short)
    if long:
        report.add("ragged", "row has more fields than the header", rows=long)
    return np.frombuffer(lines, dtype=np.int64)


def _read_csv(path: Path, report: ValidationReport) -> tuple[pd.DataFrame | None, np.ndarray]:
    lines = _scan_csv(path, report)
    if lines is None:
        return None, np.zeros(0, np.int64)
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8",
            encoding_errors="replace", on_bad_lines="skip",
        )
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        report.add("malformed", f"not a readable CSV file ({type(exc).__name__})")
        return None, lines
    if len(frame) != len(lines):  # would be a disagreement between the two parsers
        report.add("malformed", f"{len(lines)} records scanned but {len(frame)} parsed")
        return None, lines
    return frame, lines


def _read_parquet(path: Path, report: ValidationReport) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        report.add("malformed", f"not a readable Parquet file ({type(exc).__name__}: {exc}); truncated?")
        return None


def _check_columns(frame: pd.DataFrame, schema: Schema, report: ValidationReport) -> None:
    expected = [*schema.id_columns, *schema.columns]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        report.add("missing column", f"schema columns {missing} are not in the file")
    extra = [str(c) for c in frame.columns if c not in expected]
    if extra and not schema.allow_extra_columns:
        report.add("extra column", f"columns {extra} are not in the schema")
    dup = frame.columns[frame.columns.duplicated()].tolist()
    if dup:
        report.add("duplicate column", f"column names {dup} appear more than once")


def _coerce(frame: pd.DataFrame, col: str, kind: FeatureType, schema: Schema,
            report: ValidationReport, lines: np.ndarray) -> pd.Series:
    raw = frame[col]
    if kind == "category":
        return raw.astype("string")
    text = raw.astype("string").str.strip() if raw.dtype == object or pd.api.types.is_string_dtype(raw) else None
    if text is not None:
        if kind == "bool":
            low = text.str.lower()
            mapping = {"true": True, "false": False, "1": True, "0": False, "": None}
            bad = ~low.isin(list(mapping)) & low.notna()
            if bad.any():
                report.add("non-boolean", "values are not true/false/1/0", col,
                           lines[np.flatnonzero(bad.to_numpy())])
            return low.map(mapping).astype("boolean")
        blank = (text == "").fillna(True).to_numpy()
        values = pd.to_numeric(text.where(~pd.Series(blank, index=text.index)), errors="coerce")
        bad = np.isnan(values.to_numpy(dtype=float)) & ~blank
        lowered = text.str.lower()
        bad &= ~lowered.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()
        if bad.any():
            report.add("non-numeric", "values are not numbers", col, lines[np.flatnonzero(bad)])
        arr = values.to_numpy(dtype=float)
    else:
        arr = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        blank = np.zeros(len(arr), dtype=bool)
    nan = np.isnan(arr)
    if nan.any() and not schema.allow_missing:
        report.add("missing value", "empty or NaN values", col, lines[np.flatnonzero(nan)])
    inf = np.isinf(arr)
    if inf.any():
        report.add("infinite value", "values are ±infinity", col, lines[np.flatnonzero(inf)])
    if kind == "int":
        finite = np.isfinite(arr)
        frac = finite & (arr != np.round(np.where(finite, arr, 0)))
        if frac.any():
            report.add("non-integer", "values have a fractional part", col,
                       lines[np.flatnonzero(frac)])
        big = finite & (np.abs(arr) >= 2.0**63)
        if big.any():
            report.add("integer out of range", "values do not fit a 64-bit integer", col,
                       lines[np.flatnonzero(big)])
        arr = np.where(finite & ~big, arr, np.nan)  # each reported above; <NA> in the frame
        return pd.Series(arr, index=raw.index).round().astype("Int64")
    return pd.Series(arr, index=raw.index, dtype="float64")


def _check_ids(
    frame: pd.DataFrame, schema: Schema, report: ValidationReport, lines: np.ndarray
) -> pd.DataFrame:
    """The id columns stripped of surrounding whitespace — the one strip of the ids:
    align, psi and split compare them as stripped text — with empty and duplicate
    ids (after stripping) reported."""
    texts = {c: _stripped(frame[c]) for c in schema.id_columns}
    ids = pd.DataFrame({c: t[0] for c, t in texts.items()}, index=frame.index)
    arrow = [t[1] for t in texts.values()]
    if len(arrow) == 1 and arrow[0] is not None and _all_distinct_and_set(arrow[0]):
        return ids  # the usual case, decided in Arrow: no row to name
    empty = (ids.isna() | (ids == "")).any(axis=1).to_numpy()
    if empty.any():
        report.add("empty id", "rows without an id", None, lines[np.flatnonzero(empty)])
    dup = ids.duplicated(keep=False).to_numpy() & ~empty
    if dup.any():
        report.add("duplicate id", "the same id appears on several rows", None,
                   lines[np.flatnonzero(dup)])
    return ids


def _stripped(raw: pd.Series) -> tuple[pd.Series, pa.Array | None]:
    """A text id column stripped (in Arrow: no Python call per id; the column itself
    when no id has whitespace to strip) and its Arrow text; numbers as they are."""
    if not (raw.dtype == object or pd.api.types.is_string_dtype(raw)):
        return raw, None
    try:
        text = pa.array(raw, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: as pandas prints them
        return raw.astype("string").str.strip().astype(object), None
    trimmed = pc.utf8_trim_whitespace(text)
    if pc.all(pc.equal(pc.utf8_length(trimmed), pc.utf8_length(text))).as_py() is not False:
        return raw, trimmed
    return pd.Series(trimmed.to_numpy(zero_copy_only=False), index=raw.index,
                     dtype=object), trimmed


def _all_distinct_and_set(text: pa.Array) -> bool:
    """No id is missing or empty, and none appears twice."""
    if text.null_count or pc.any(pc.equal(pc.utf8_length(text), 0)).as_py():
        return False
    return bool(pc.count_distinct(text, mode="all").as_py() == len(text))


def validate_file(
    path: str | Path, schema: Schema, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[pd.DataFrame | None, ValidationReport]:
    """Read and check one file; returns the typed frame (``None`` if unreadable) and the report.

    Never raises for bad data: every problem goes into the report.
    """
    path = Path(path)
    report = ValidationReport(str(path))
    if not path.is_file():
        report.add("not found", "no such file")
        return None, report
    size = path.stat().st_size
    if size > max_bytes:
        report.add("too large", f"{size} bytes exceeds the limit of {max_bytes} bytes "
                   f"({math.ceil(size / max_bytes)}× over); split the file or raise max_bytes")
        return None, report
    parquet = path.suffix.lower() in (".parquet", ".pq")
    if parquet:
        frame = _read_parquet(path, report)
        lines = np.arange(0 if frame is None else len(frame))
    elif (simple := read_simple(path, schema)) is not None:
        frame, lines = simple
    else:
        _check_encoding(path, report)
        frame, lines = _read_csv(path, report)
    if frame is None:
        return None, report
    report.rows = len(frame)
    _check_columns(frame, schema, report)
    present = [c for c in schema.id_columns if c in frame.columns]
    ids = frame[present]
    if len(present) == len(schema.id_columns) and not frame.columns.duplicated().any():
        ids = _check_ids(frame, schema, report, lines)
    out = pd.DataFrame(index=frame.index)
    for col in present:
        out[col] = ids[col]
    for col, kind in schema.columns.items():
        if col in frame.columns and not frame.columns.duplicated().any():
            out[col] = _coerce(frame, col, kind, schema, report, lines)
    return out, report


def load_frame(path: str | Path, id_columns: Sequence[str], label: str | None = None,
               *, party: str | None = None, schema: Schema | None = None) -> pd.DataFrame:
    """Load one file for a job step: infer the schema if none is given, validate, raise on problems."""
    path = Path(path)
    if schema is None:
        try:
            head = (pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq")
                    else pd.read_csv(path, nrows=1000))
        except Exception:  # unreadable: validate_file reports it precisely below
            head = None
        if head is not None:
            inferred = Schema.infer(head, id_columns, label)
            # The first rows can look integral where later ones are not: read numbers as float.
            features = {c: ("float" if t == "int" else t) for c, t in inferred.features.items()}
            label_type = "float" if inferred.label_type == "int" else inferred.label_type
            schema = Schema(inferred.id_columns, features, label, label_type, allow_missing=True)
        else:
            schema = Schema(tuple(id_columns), {}, label, allow_extra_columns=True)
    frame, report = validate_file(path, schema)
    report.raise_for_problems(party, step="load data")
    return _frame_or_fail(frame, report)


def _frame_or_fail(frame: pd.DataFrame | None, report: ValidationReport) -> pd.DataFrame:
    if frame is None:  # unreachable: an unreadable file always leaves a problem
        raise DataError(f"dataset {report.path} could not be read")
    return frame
