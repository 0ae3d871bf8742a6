"""The reader's fast path for CSV files of a simple layout (see :mod:`~sharedml.datasets.reader`).

The validating reader's general path scans every record with Python's
``csv`` module (to give each problem its file line, quoted newlines
included) and parses every cell as text before typing it: about ten times
``pandas.read_csv``'s time on a large file. Most files a bank exports have
a simple layout — UTF-8, no quote characters, no blank lines, one record per
line — and for those the file line of record ``i`` is ``i + 2``, so the scan
is not needed, and the numeric columns can be typed by pandas' C parser
directly.

:func:`read_simple` checks the layout in one streaming pass over the bytes
(UTF-8, no ``"`` or NUL, no blank line, no lone ``\\r``, the comma and line
counts), reads the schema's columns with the C parser (ids, categories and
booleans as text, numbers typed by the parser) and confirms that every line
has the header's number of fields. It returns ``None`` for any file it does
not fully understand, and the general path then reads it as before: every
check and every message of the reader stays the general path's. The checks
on values (non-numeric, missing, infinite, non-integer, ids) run on the
frame it returns exactly as on the general path's (:func:`reader._coerce`).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sharedml.datasets.schema import Schema

_CHUNK = 16 << 20
_TEXT_KINDS = ("category", "bool")
_NUMERIC = ("i", "u", "f")


@dataclass(frozen=True)
class Layout:
    """A simple file's header and counts."""

    header: list[str]
    lines: int
    commas: int


def scan_layout(path: Path) -> Layout | None:
    """The file's header and counts, or ``None`` unless its layout is simple."""
    lines = commas = 0
    first = b""
    ends_line = True  # the previous chunk ended a line (or there was none)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            chunk += fh.readline()  # end on a line boundary: UTF-8 never splits at b"\n"
            if not _simple_chunk(chunk, ends_line):
                return None
            if not first:
                first = chunk.split(b"\n", 1)[0]
            lines += chunk.count(b"\n")
            commas += chunk.count(b",")
            ends_line = chunk.endswith(b"\n")
    if not first:
        return None
    lines += not ends_line  # a last line without its newline
    return Layout(first.rstrip(b"\r").decode("utf-8").split(","), lines, commas)


def _simple_chunk(chunk: bytes, after_line_end: bool) -> bool:
    try:
        codecs.decode(chunk, "utf-8")
    except UnicodeDecodeError:
        return False
    if b'"' in chunk or b"\x00" in chunk:
        return False
    if b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"):
        return False
    if b"\n\n" in chunk or b"\n\r\n" in chunk:
        return False
    return not (after_line_end and chunk.startswith((b"\n", b"\r\n")))


def read_simple(path: Path, schema: Schema) -> tuple[pd.DataFrame, np.ndarray] | None:
    """``(frame, file line of each row)`` of a simple file holding exactly the schema's
    columns (extra ones only if the schema allows them), or ``None`` to use the
    general path."""
    layout = scan_layout(path)
    if layout is None:
        return None
    wanted = [*schema.id_columns, *schema.columns]
    names = layout.header
    if (len(set(names)) != len(names) or not set(wanted) <= set(names)
            or (len(names) > len(wanted) and not schema.allow_extra_columns)):
        return None
    if layout.commas != (len(names) - 1) * layout.lines:  # a line with fewer fields
        return None
    text = {c: str for c in [*schema.id_columns,
                             *(c for c, k in schema.columns.items() if k in _TEXT_KINDS)]}
    try:
        # all columns: pandas reads in parallel only without usecols
        frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[],
                            encoding="utf-8", on_bad_lines="error", engine="c")
    except (ValueError, pd.errors.ParserError):  # a line with more fields, or stranger
        return None
    if len(frame) + 1 != layout.lines or not _typed_as_declared(frame, schema):
        return None
    return frame[wanted], np.arange(2, len(frame) + 2, dtype=np.int64)


def _typed_as_declared(frame: pd.DataFrame, schema: Schema) -> bool:
    """A numeric column the parser read as numbers or as text, never as booleans (which
    would hide the text the general path reports as non-numeric)."""
    for col, kind in schema.columns.items():
        if kind in _TEXT_KINDS:
            continue
        dtype = frame[col].dtype
        if not (dtype.kind in _NUMERIC or pd.api.types.is_string_dtype(dtype)):
            return False
    return True
