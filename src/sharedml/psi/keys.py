"""Turn id columns into fixed-size digests: normalisation rules and composite keys.

Local to one party, no protocol. Ids are normalised the same way by every
party (the rules are part of the job spec and must match), then each row's
key becomes ``SHA-256(len(c1) || c1 || len(c2) || c2 ...)`` over the UTF-8 of
its normalised components, so ``("ab", "c")`` and ``("a", "bc")`` differ. The
digests of all rows form one ``(n, 32)`` ``uint8`` array, filled batch by batch,
so 10M ids never exist as 10M Python objects at once.

Normalisation (:class:`KeyRules`):

* strings: Unicode NFC (``nfc``), surrounding whitespace stripped (``strip``),
  case folded with :meth:`str.casefold` (``casefold``, off by default);
* integers (and floats holding whole numbers, as pandas reads an integer
  column with gaps) become their decimal text, so ``7``, ``7.0`` and ``"7"``
  are the same key; other floats are rejected as ids;
* a missing or (after normalisation) empty component is a :class:`DataError`
  naming the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sharedml.errors import DataError

BATCH = 65536


@dataclass(frozen=True)
class KeyRules:
    """How ids are normalised before hashing; every party must use the same rules."""

    strip: bool = True
    casefold: bool = False
    nfc: bool = True


def _rows(mask: np.ndarray, limit: int = 10) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def normalise(column: pd.Series, rules: KeyRules, *, name: str = "id") -> pd.Series:
    """One id column as normalised strings (vectorised, pandas string methods)."""
    values = column.reset_index(drop=True)
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"id column {name!r} is empty in rows {_rows(missing)}",
            remedy="drop or fill those rows before alignment",
        )
    if pd.api.types.is_bool_dtype(values):
        raise DataError(f"id column {name!r} holds booleans", remedy="use string or integer ids")
    if pd.api.types.is_integer_dtype(values):
        return values.astype("int64").astype(str)
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(
                f"id column {name!r} holds non-integral numbers in rows {_rows(bad)}",
                remedy="ids must be strings or whole numbers",
            )
        return pd.Series(arr.astype(np.int64)).astype(str)
    text = values.astype(str)
    if rules.nfc:
        text = text.str.normalize("NFC")
    if rules.strip:
        text = text.str.strip()
    if rules.casefold:
        text = text.str.casefold()
    empty = (text.str.len() == 0).to_numpy()
    if empty.any():
        raise DataError(
            f"id column {name!r} is empty in rows {_rows(empty)}",
            remedy="drop or fill those rows before alignment",
        )
    return text


def digest_keys(
    frame: pd.DataFrame | pd.Series | Sequence[object],
    columns: Sequence[str] | None = None,
    rules: KeyRules | None = None,
) -> np.ndarray:
    """``(n, 32)`` uint8 SHA-256 digests of each row's normalised (composite) key."""
    rules = rules or KeyRules()
    if isinstance(frame, pd.DataFrame):
        cols = list(columns or frame.columns)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(
                f"id columns {missing} are not in the data (columns: {list(frame.columns)})",
                remedy="name the id columns the dataset has",
            )
        parts = [normalise(frame[c], rules, name=c) for c in cols]
    else:
        series = frame if isinstance(frame, pd.Series) else pd.Series(list(frame))
        parts = [normalise(series, rules)]
    n = len(parts[0])
    out = np.empty((n, 32), dtype=np.uint8)
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        chunks = [p.iloc[start:stop].tolist() for p in parts]
        buf = bytearray()
        for row in zip(*chunks, strict=True):
            h = hashlib.sha256()
            for comp in row:
                raw = comp.encode("utf-8", "surrogatepass")
                h.update(len(raw).to_bytes(4, "little"))
                h.update(raw)
            buf += h.digest()
        out[start:stop] = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(-1, 32)
    return out
