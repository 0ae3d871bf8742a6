"""Where a party's datasets come from: the loader a job step is given.

A job spec names each party's dataset (``PartyConfig.dataset``); that name
means one thing everywhere — a reference the party's :class:`DatasetSource`
resolves. The step context carries the source
(:attr:`sharedml.components.StepContext.datasets`), so a step loads its
party's data without knowing how it runs:

* :class:`DatasetFiles` — ``sharedml run``: the name is a file path, relative
  to the job spec's folder;
* :class:`sharedml.node.registry.NodeRegistry` — a node agent: the name is
  one the node's operator registered in its config (a file or a SQL table); no
  other data can be read, whatever a job spec says.

Both read through :func:`sharedml.datasets.reader.load_frame` (schema inferred, file
validated, one error listing every problem).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class DatasetSource(ABC):
    """Resolves the dataset names of a job spec to files, and loads them validated."""

    @abstractmethod
    def path(self, name: str, *, party: str | None = None, step: str | None = None) -> Path:
        """The file of dataset ``name``; a :class:`DataError` naming ``party`` and
        ``step`` when this source has no such dataset."""

    def load(
        self, name: str, id_columns: Sequence[str], label: str | None = None,
        *, party: str | None = None, step: str | None = None,
    ) -> pd.DataFrame:
        """Dataset ``name`` as a typed frame, validated (:func:`~sharedml.datasets.reader.load_frame`)."""
        from sharedml.datasets.reader import load_frame

        return load_frame(self.path(name, party=party, step=step), list(id_columns), label,
                          party=party)


class DatasetFiles(DatasetSource):
    """Dataset names are file paths, relative to ``base`` (the current folder if none)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base

    def path(self, name: str, *, party: str | None = None, step: str | None = None) -> Path:
        path = Path(name)
        if path.is_absolute() or self.base is None:
            return path
        return (self.base / path).resolve()
