"""The node's dataset registry: name -> where the rows live, and their schema.

A party's operator registers each dataset in the node's config, by name; a
job spec (and so the platform) only ever names it. Three kinds of location::

    datasets:
      customers: data/customers.csv                 # CSV (short form)
      history:   {path: data/history.parquet}       # Parquet (by suffix)
      accounts:                                     # a SQL table, via SQLAlchemy
        sql: postgresql+psycopg://reader@db/bank    #   any SQLAlchemy URL
        table: accounts
        columns: {id: category, y: int, income: float}   # optional declared schema

The registry is the step's :class:`~sharedml.datasets.DatasetSource` on the
node: a name not registered is refused. A SQL table is read when a step loads
it, into a Parquet snapshot in the node's work dir (mode 0600) that the usual
reader validates. :meth:`NodeRegistry.records` is what the node tells the
platform at hello (name, column names and types, row count — never a row); the
platform's dataset records for this party come from there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from sharedml.control import ColumnRecord, DatasetRecord
from sharedml.datasets import DatasetSource
from sharedml.datasets.schema import FeatureType, Schema, column_types
from sharedml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd


class DatasetEntry(BaseModel):
    """One registered dataset: a file (CSV or Parquet) or a SQL table, and its schema."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = None
    sql: str | None = None
    table: str | None = None
    #: Declared column types (every column, id and label included); else inferred.
    columns: dict[str, FeatureType] | None = None

    @model_validator(mode="after")
    def _one_location(self) -> DatasetEntry:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give either 'path' (CSV or Parquet) or 'sql' with 'table'")
        if self.sql is not None and not self.table:
            raise ValueError("a SQL dataset needs 'table'")
        return self

    @property
    def kind(self) -> Literal["csv", "parquet", "sql"]:
        if self.sql is not None:
            return "sql"
        assert self.path is not None
        return "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"


def entry(raw: Any, base: Path) -> DatasetEntry:
    """A config value (a path, a mapping or an entry) as an entry, its path relative to ``base``."""
    if isinstance(raw, (str, Path)):
        parsed = DatasetEntry(path=Path(raw))
    elif isinstance(raw, DatasetEntry):
        parsed = raw.model_copy()
    else:
        parsed = DatasetEntry.model_validate(raw)
    if parsed.path is not None:
        parsed.path = base / parsed.path
    return parsed


class NodeRegistry(DatasetSource):
    """The datasets a node's operator registered; any other name is refused."""

    def __init__(self, entries: Mapping[str, Path | DatasetEntry], work_dir: Path) -> None:
        #: Read at every lookup, not copied: the node's registrations as they are when a
        #: step runs (a path, or an entry; paths already resolved by the config).
        self.entries = entries
        self.snapshots = work_dir / "datasets"

    def _entry(self, name: str, party: str | None, step: str | None) -> DatasetEntry:
        found = self.entries.get(name)
        if found is None:
            raise DataError(
                f"dataset {name!r} is not registered on this node", party=party, step=step,
                remedy="add it under 'datasets:' in the node's config",
            )
        return entry(found, Path("."))

    def path(self, name: str, *, party: str | None = None, step: str | None = None) -> Path:
        found = self._entry(name, party, step)
        if found.path is not None:
            return found.path
        return self._snapshot(name, found, party, step)

    def load(self, name: str, id_columns: Any, label: str | None = None,
             *, party: str | None = None, step: str | None = None) -> pd.DataFrame:
        from sharedml.datasets.reader import load_frame

        found = self._entry(name, party, step)
        schema = None
        if found.columns is not None:  # declared types; the other columns' as load_frame infers
            ids = tuple(id_columns)
            inferred, _ = _describe(name, found, self)
            types = {c: found.columns.get(c, "float" if t == "int" else t)
                     for c, t in inferred.items()}
            features = {c: t for c, t in types.items() if c not in ids and c != label}
            label_type = types.get(label, "float") if label else "float"
            schema = Schema(ids, features, label, label_type, allow_missing=True)  # type: ignore[arg-type]
        return load_frame(self.path(name, party=party, step=step), list(id_columns), label,
                          party=party, schema=schema)

    def _snapshot(self, name: str, found: DatasetEntry, party: str | None,
                  step: str | None) -> Path:
        """Read the SQL table into a Parquet file only this node's user can read."""
        frame = _read_table(found, name, party, step)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        out = self.snapshots / f"{name}.parquet"
        tmp = out.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            frame.to_parquet(fh, index=False)
        tmp.replace(out)
        return out

    def records(self) -> list[DatasetRecord]:
        """Name, columns (declared or inferred) and rows of every dataset: what the platform learns."""
        out = []
        for name in sorted(self.entries):
            columns, rows = _describe(name, self._entry(name, None, None), self)
            out.append(DatasetRecord(
                name=name, rows=rows,
                columns=[ColumnRecord(name=c, type=t) for c, t in columns.items()],
            ))
        return out


def _read_table(found: DatasetEntry, name: str, party: str | None, step: str | None) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(str(found.sql))
        try:
            with engine.connect() as conn:
                return pd.read_sql_table(str(found.table), conn)
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ValueError, ImportError) as exc:
        raise DataError(
            f"cannot read SQL table {found.table!r} of dataset {name!r}: {type(exc).__name__}",
            party=party, step=step,
            remedy="check the 'sql' URL, the table name and the node's database permissions",
        ) from None


def _describe(name: str, found: DatasetEntry, registry: NodeRegistry) -> tuple[dict[str, str], int | None]:
    import pandas as pd

    try:
        path = registry.path(name)
        frame = pd.read_parquet(path) if found.kind != "csv" else pd.read_csv(path, nrows=1000)
        rows = len(frame) if found.kind != "csv" else _csv_rows(path)
    except (OSError, ValueError, DataError) as exc:
        raise ConfigError(f"node dataset {name!r} cannot be read: {exc}",
                          remedy="fix its entry under 'datasets:' in the node's config") from None
    columns: dict[str, str] = dict(column_types(frame))
    if found.columns is not None:
        unknown = sorted(set(found.columns) - set(columns))
        if unknown:
            raise ConfigError(f"node dataset {name!r} declares columns {unknown} it does not have")
        columns = {c: found.columns.get(c, t) for c, t in columns.items()}
    return columns, rows


def _csv_rows(path: Path) -> int:
    """Data rows of a CSV file: its lines but the header (a last line without newline counts)."""
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(lines - (1 if last == b"\n" else 0), 0)
