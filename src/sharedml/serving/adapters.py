"""Feature adapters: where a serving party finds its own features of an id.

Each party looks up only its own columns, in its own process: the label
holder's gateway (when a request carries an id but not the features) and
every partner's serving node. The rows are raw, as in the party's dataset;
its model part's fitted pipeline prepares them (:mod:`~sharedml.serving.features`).
Three sources, one interface (:class:`FeatureAdapter`), all vectorised over a
batch of ids:

* a CSV or Parquet file, read once into memory (:class:`TableAdapter`);
* a table in SQLite or PostgreSQL, one ``SELECT ... WHERE id IN (...)`` per
  batch (:class:`SQLAdapter`);
* a Python callable registered under the ``sharedml.feature_adapters`` entry
  point: ``fn(ids: list[str]) -> pandas.DataFrame`` indexed by id, which
  returns the rows it knows (``fn([])`` gives the columns).

:func:`open_adapter` reads the ``--features`` spec: ``PATH.csv``,
``PATH.parquet``, ``sqlite:///FILE#TABLE``, ``postgresql://...#TABLE`` or
``entrypoint:NAME``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import ConfigError, DataError

ENTRY_POINT_GROUP = "sharedml.feature_adapters"


class FeatureAdapter(ABC):
    """A party's raw feature rows by id; ``columns`` are the columns it offers.

    The rows are raw (as in the party's dataset): the model part's pipeline
    turns them into the model's features (:mod:`sharedml.serving.features`).
    """

    columns: list[str]
    party: str

    @abstractmethod
    def rows(self, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        """``(frame, found)``: the rows of the found ids, in request order, and which were."""

    @abstractmethod
    def sample(self) -> pd.DataFrame:
        """A few rows with the source's column types (for the schema check at load)."""

    def table(self) -> tuple[pd.DataFrame, dict[str, int]] | None:
        """The whole source and each id's row, when it is in memory (else ``None``)."""
        return None


class TableAdapter(FeatureAdapter):
    """An in-memory table, indexed by id (a CSV or Parquet file, or a DataFrame)."""

    def __init__(self, frame: pd.DataFrame, id_column: str, party: str,
                 exclude: tuple[str, ...] = ()) -> None:
        self.party = party
        if id_column not in frame.columns:
            raise ConfigError(f"the feature table has no id column {id_column!r}",
                              party=party, step="serve: features", remedy="pass --id-column")
        ids = frame[id_column].astype(str).tolist()
        if len(set(ids)) != len(ids):
            dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
            raise DataError(f"id {dup!r} appears twice in the feature table", party=party,
                            step="serve: features")
        self.columns = [str(c) for c in frame.columns if c != id_column and c not in exclude]
        self._rows = dict(zip(ids, range(len(ids)), strict=True))
        self._frame = frame[self.columns].reset_index(drop=True)

    @classmethod
    def from_file(cls, path: Path, id_column: str, party: str,
                  exclude: tuple[str, ...] = ()) -> TableAdapter:
        try:
            frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                     else pd.read_csv(path, dtype={id_column: str}))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read feature file {path}: {exc}", party=party,
                              step="serve: features") from None
        return cls(frame, id_column, party, exclude)

    def rows(self, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        pos = positions(self._rows, ids)
        found = pos >= 0
        return self._frame.iloc[pos[found]].reset_index(drop=True), found

    def sample(self) -> pd.DataFrame:
        return self._frame.head(100)

    def table(self) -> tuple[pd.DataFrame, dict[str, int]]:
        return self._frame, self._rows


class SQLAdapter(FeatureAdapter):
    """A table in SQLite or PostgreSQL (SQLAlchemy URL), read per batch."""

    def __init__(self, url: str, table: str, id_column: str, party: str,
                 exclude: tuple[str, ...] = ()) -> None:
        import sqlalchemy as sa

        self.party = party
        self._engine = sa.create_engine(url)
        try:
            meta = sa.Table(table, sa.MetaData(), autoload_with=self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"cannot read table {table!r}: {exc.__class__.__name__}",
                              party=party, step="serve: features") from None
        if id_column not in meta.c:
            raise ConfigError(f"table {table!r} has no id column {id_column!r}", party=party,
                              step="serve: features", remedy="pass --id-column")
        self.columns = [c.name for c in meta.c if c.name != id_column and c.name not in exclude]
        self._id = meta.c[id_column]
        self._numeric_ids = isinstance(self._id.type, sa.Integer)
        self._select = sa.select(self._id, *(meta.c[c] for c in self.columns))
        self._query = self._select.where(self._id.in_(sa.bindparam("ids", expanding=True)))

    def _read(self, query: Any, params: dict[str, Any]) -> pd.DataFrame:
        with self._engine.connect() as conn:
            rows = conn.execute(query, params).all()
        frame = pd.DataFrame(rows, columns=["_id", *self.columns])
        return frame.set_index(frame["_id"].astype(str))[self.columns]

    def rows(self, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        keys: list[Any] = ids
        if self._numeric_ids:
            keys = [int(i) for i in ids if i.lstrip("-").isdigit()]
        return _gather(self._read(self._query, {"ids": keys}), ids)

    def sample(self) -> pd.DataFrame:
        return self._read(self._select.limit(100), {})


class CallableAdapter(FeatureAdapter):
    """A function ``ids -> DataFrame`` (indexed by id) from an entry point."""

    def __init__(self, fn: Callable[[list[str]], Any], party: str) -> None:
        self.party = party
        self._fn = fn
        self.columns = [str(c) for c in fn([]).columns]

    def rows(self, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        frame = self._fn(ids)
        return _gather(frame.set_axis([str(k) for k in frame.index])[self.columns], ids)

    def sample(self) -> pd.DataFrame:
        return self._fn([])[self.columns]


def positions(rows: dict[str, int], ids: list[str]) -> np.ndarray:
    """Row of each id in ``rows`` (-1 where absent), without a Python-level loop."""
    return np.fromiter(map(rows.get, ids, repeat(-1)), dtype=np.int64, count=len(ids))


def _gather(frame: pd.DataFrame, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``frame`` (indexed by id as text) for ``ids``, in their order."""
    pos = positions(dict(zip(frame.index, range(len(frame)), strict=True)), ids)
    found = pos >= 0
    return frame.iloc[pos[found]].reset_index(drop=True), found


def open_adapter(spec: str, id_column: str, party: str,
                 exclude: tuple[str, ...] = ()) -> FeatureAdapter:
    """The adapter a ``--features`` spec names (see the module docstring)."""
    if spec.startswith("entrypoint:"):
        name = spec.split(":", 1)[1]
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise ConfigError(f"no feature adapter {name!r} is installed", party=party,
                              step="serve: features",
                              remedy=f"register it under the {ENTRY_POINT_GROUP!r} entry point")
        return CallableAdapter(found[0].load(), party)
    if "://" in spec:
        url, _, table = spec.partition("#")
        if not table:
            raise ConfigError(f"feature source {url!r} names no table", party=party,
                              step="serve: features", remedy="append '#TABLE' to the URL")
        return SQLAdapter(url, table, id_column, party, exclude)
    path = Path(spec)
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"unknown feature source {spec!r}", party=party,
                          step="serve: features",
                          remedy="use a .csv or .parquet file, a SQLAlchemy URL#TABLE or "
                          "entrypoint:NAME")
    return TableAdapter.from_file(path, id_column, party, exclude)
