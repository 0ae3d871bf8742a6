"""Feature adapters: where a serving party finds its own features of an id.

Each party looks up only its own columns, in its own process: the label
holder's gateway (when a request carries an id but not the features) and
every partner's serving node. Three sources, one interface
(:class:`FeatureAdapter`), all vectorised over a batch of ids:

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

from sharedml.errors import ConfigError, DataError

ENTRY_POINT_GROUP = "sharedml.feature_adapters"


class FeatureAdapter(ABC):
    """A party's features by id; ``columns`` are the feature columns it offers."""

    columns: list[str]
    party: str

    @abstractmethod
    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(X, found)``: float64 rows of every column (zeros where not found)."""

    def select(self, names: list[str] | None, width: int) -> np.ndarray:
        """Positions of the model's columns: by name when the model names them,
        else every offered column in order (which must be ``width`` many)."""
        if names is None:
            if len(self.columns) != width:
                raise ConfigError(
                    f"the feature source offers {len(self.columns)} columns "
                    f"({', '.join(self.columns[:6])}...), the model part takes {width}",
                    party=self.party,
                    step="serve: features",
                    remedy="point --features at the columns the part was trained on, in order",
                )
            return np.arange(width)
        missing = [c for c in names if c not in self.columns]
        if missing:
            raise ConfigError(
                f"the feature source lacks the model's column(s) {missing[:5]}",
                party=self.party,
                step="serve: features",
                remedy="add them to the source, or serve a model trained on its columns",
            )
        return np.asarray([self.columns.index(c) for c in names], dtype=np.int64)


class TableAdapter(FeatureAdapter):
    """An in-memory table, indexed by id (a CSV or Parquet file, or a DataFrame)."""

    def __init__(self, frame: Any, id_column: str, party: str, exclude: tuple[str, ...] = ()) -> None:
        import pandas as pd

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
        try:
            self._values = frame[self.columns].to_numpy(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"feature columns must be numeric: {exc}", party=party,
                            step="serve: features") from None

    @classmethod
    def from_file(cls, path: Path, id_column: str, party: str,
                  exclude: tuple[str, ...] = ()) -> TableAdapter:
        import pandas as pd

        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read feature file {path}: {exc}", party=party,
                              step="serve: features") from None
        return cls(frame, id_column, party, exclude)

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        pos = positions(self._rows, ids)
        found = pos >= 0
        return self._values[np.where(found, pos, 0)], found


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
        self._query = sa.select(self._id, *(meta.c[c] for c in self.columns)).where(
            self._id.in_(sa.bindparam("ids", expanding=True)))

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import pandas as pd

        keys: list[Any] = ids
        if self._numeric_ids:
            keys = [int(i) for i in ids if i.lstrip("-").isdigit()]
        with self._engine.connect() as conn:
            rows = conn.execute(self._query, {"ids": keys}).all()
        frame = pd.DataFrame(rows, columns=["_id", *self.columns])
        return _gather(frame.set_index(frame["_id"].astype(str))[self.columns], ids)


class CallableAdapter(FeatureAdapter):
    """A function ``ids -> DataFrame`` (indexed by id) from an entry point."""

    def __init__(self, fn: Callable[[list[str]], Any], party: str) -> None:
        self.party = party
        self._fn = fn
        self.columns = [str(c) for c in fn([]).columns]

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        frame = self._fn(ids)
        return _gather(frame[self.columns], ids)


def positions(rows: dict[str, int], ids: list[str]) -> np.ndarray:
    """Row of each id in ``rows`` (-1 where absent), without a Python-level loop."""
    return np.fromiter(map(rows.get, ids, repeat(-1)), dtype=np.int64, count=len(ids))


def _gather(frame: Any, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    keys = [str(k) for k in frame.index]
    pos = positions(dict(zip(keys, range(len(keys)), strict=True)), ids)
    found = pos >= 0
    values = frame.to_numpy(np.float64)
    if not len(values):
        return np.zeros((len(ids), frame.shape[1])), found
    return values[np.where(found, pos, 0)], found


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
