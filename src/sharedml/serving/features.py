"""A party's model features of an id: its raw rows prepared by its own fitted pipeline.

A model part carries the transforms its party fitted during training (fill,
one-hot, scale, binning; :class:`~sharedml.modelpart.FeaturePipeline`).
:class:`PreparedFeatures` binds a feature source to one version's pipeline:

1. At load, the source's columns and types are checked against the part's
   input schema — a missing, extra or retyped column is refused by name
   (the same check as batch scoring), so a version never starts serving
   on data it was not trained for.
2. A source held in memory (a CSV or Parquet file) is prepared once, whole,
   when the version loads: a request then costs one dict lookup per id and a
   row gather. Other sources (SQL, a callable) are prepared per micro-batch.

The pipeline runs where the columns live, with the same functions the
training job's steps used, so online features equal the training job's
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sharedml.modelpart.pipeline import FeaturePipeline
from sharedml.serving.adapters import FeatureAdapter, positions

STEP = "serve: features"


def load_transforms() -> None:
    """Import the pipeline's transforms now, before a process says it is ready: their
    package pulls in scikit-learn (seconds on a loaded machine), which would otherwise
    fall into the first version switch's time and its partner timeout."""
    from sharedml.components import onehot
    from sharedml.learn.preprocessing import binning, impute, scaling

    del onehot, binning, impute, scaling


class PreparedFeatures:
    """``adapter``'s rows as one model version's feature matrix (see the module docstring)."""

    def __init__(self, adapter: FeatureAdapter, pipeline: FeaturePipeline) -> None:
        self.adapter, self.pipeline, self.party = adapter, pipeline, adapter.party
        pipeline.check(adapter.sample(), (), party=self.party, step=STEP)
        self.width = len(pipeline.features)
        table = adapter.table()
        self._matrix: np.ndarray | None = None
        self._rows: dict[str, int] = {}
        if table is not None:
            frame, self._rows = table
            self._matrix = self.transform(frame)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows (the schema's columns) as the model's float64 feature matrix."""
        return self.transform_with(self.pipeline, frame, self.party)

    @staticmethod
    def transform_with(pipeline: FeaturePipeline, frame: pd.DataFrame,
                       party: str) -> np.ndarray:
        if not len(frame):
            return np.zeros((0, len(pipeline.features)))
        out = pipeline.features_of(frame, (), party=party, step=STEP)
        return out.to_numpy(np.float64)

    def fetch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(X, found)``: each id's features (zeros where the source lacks the id)."""
        if self._matrix is not None:
            pos = positions(self._rows, ids)
            found = pos >= 0
            X = self._matrix[np.where(found, pos, 0)]
            if not found.all():
                X[~found] = 0.0
            return X, found
        frame, found = self.adapter.rows(ids)
        X = np.zeros((len(ids), self.width))
        X[found] = self.transform(frame)
        return X, found
