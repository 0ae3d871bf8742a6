"""What a party's dataset must look like: id column(s), an optional label, typed features.

A :class:`Schema` is given (to check a file against declared types) or
inferred from a frame's first rows (:meth:`Schema.infer`, as
:func:`sharedml.datasets.reader.load_frame` does for a job step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from sharedml.errors import ConfigError

FeatureType = Literal["float", "int", "bool", "category"]
FEATURE_TYPES: tuple[str, ...] = ("float", "int", "bool", "category")


@dataclass(frozen=True)
class Schema:
    """What a dataset must look like: id column(s), optional label, typed features."""

    id_columns: tuple[str, ...]
    features: Mapping[str, FeatureType]
    label: str | None = None
    label_type: FeatureType = "float"
    allow_missing: bool = False
    allow_extra_columns: bool = False

    def __post_init__(self) -> None:
        if not self.id_columns:
            raise ConfigError("a schema needs at least one id column")
        bad = {c: t for c, t in self.features.items() if t not in FEATURE_TYPES}
        if bad or self.label_type not in FEATURE_TYPES:
            raise ConfigError(
                f"unknown feature types {bad or self.label_type}; use one of {FEATURE_TYPES}"
            )
        names = [*self.id_columns, *([self.label] if self.label else []), *self.features]
        if len(set(names)) != len(names):
            raise ConfigError(f"schema names a column twice: {names}")

    @property
    def columns(self) -> dict[str, FeatureType]:
        """Every non-id column with its type (the label included)."""
        out: dict[str, FeatureType] = {}
        if self.label:
            out[self.label] = self.label_type
        out.update(self.features)
        return out

    @classmethod
    def infer(
        cls, frame: pd.DataFrame, id_columns: Sequence[str], label: str | None = None
    ) -> Schema:
        """A schema from a frame's dtypes: numbers → float/int, booleans, the rest category."""
        features: dict[str, FeatureType] = {}
        for col in frame.columns:
            if col in id_columns or col == label:
                continue
            features[str(col)] = _infer_type(frame[col])
        # a label the frame lacks: the file's check then reports the missing column
        label_type = _infer_type(frame[label]) if label and label in frame.columns else "float"
        return cls(tuple(id_columns), features, label, label_type)


def column_types(frame: pd.DataFrame) -> dict[str, FeatureType]:
    """Every column's inferred type, as :meth:`Schema.infer` infers a feature's."""
    return {str(col): _infer_type(frame[col]) for col in frame.columns}


def _infer_type(s: pd.Series) -> FeatureType:
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_numeric_dtype(s):
        return "float"
    return "category"
