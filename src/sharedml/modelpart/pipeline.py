"""One party's feature pipeline: the input schema and the transforms it fitted.

A model part is useless on new rows unless they are prepared the way the
training rows were. Each preprocessing step of a job (``fill``, ``onehot``,
``scale``, ``binning``) fits its parameters at the party that owns the
columns and records them here, in order, as plain JSON (:func:`record`);
``train`` saves the pipeline inside the party's part. On new rows
:meth:`FeaturePipeline.features` checks the input schema, replays the
transforms with the very functions the steps used, and returns the model's
feature matrix in the model's column order — at the party that owns the
columns, from nothing but that party's own part.

The input schema is every column of the party's dataset as loaded for the
job (:func:`schema_of`, recorded by the step context when it loads the
data), minus the id columns and the label: name and kind (``number``,
``bool`` or ``text``; integers and floats are one kind, so a batch whose
integer column arrives as float is accepted). A missing, extra or
differently typed column is refused by name.

``woe`` computes WOE/IV values but does not transform the frame, so it adds
no operation.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import DataError

__all__ = ["FeaturePipeline", "record", "schema_of"]

#: Where steps keep the pipeline in a party's step state.
STATE_OPS = "pipeline"
STATE_SCHEMA = "input_schema"


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "text"


def schema_of(frame: pd.DataFrame, skip: Iterable[str]) -> dict[str, str]:
    """Column name -> kind for every column of ``frame`` not in ``skip``, in order."""
    skipped = set(skip)
    return {str(c): _kind(frame[c]) for c in frame.columns if c not in skipped}


def record(state: MutableMapping[str, Any], op: dict[str, Any]) -> None:
    """Append one fitted transform to the party's pipeline (kept in its step state)."""
    state.setdefault(STATE_OPS, []).append(op)


@dataclass(frozen=True)
class FeaturePipeline:
    """Input schema, fitted transforms and the model's feature order, for one party.

    Attributes:
        schema: input column -> kind (ids and the label left out).
        ops: the fitted transforms in the order the job applied them; each a dict
            with ``op`` = ``fill`` (``columns``, ``values``), ``scale``
            (``columns``, ``center``, ``scale``), ``onehot`` (``categories``:
            column -> labels, ``null`` for missing) or ``binning`` (``edges``:
            column -> inner edges).
        features: the columns the model was fitted on, in its order.
        label: the party's label column at training (ignored in new rows), if any.
    """

    schema: dict[str, str]
    ops: list[dict[str, Any]] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "ops": self.ops, "features": self.features,
                "label": self.label}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FeaturePipeline:
        ops = list(doc.get("ops", []))
        unknown = [o.get("op") for o in ops if o.get("op") not in _APPLY]
        if unknown:
            raise DataError(f"the model part's pipeline holds unknown operations {unknown}",
                            remedy="load it with the sharedml release that trained it")
        return cls(dict(doc["schema"]), ops, list(doc["features"]), doc.get("label"))

    def check(self, frame: pd.DataFrame, id_columns: Iterable[str], *, party: str,
              step: str | None = None) -> None:
        """Refuse rows whose columns or kinds differ from the schema, naming them."""
        got = schema_of(frame, {*id_columns, *([self.label] if self.label else [])})
        missing = [c for c in self.schema if c not in got]
        extra = [c for c in got if c not in self.schema]
        wrong = [f"{c} ({got[c]}, the model expects {k})" for c, k in self.schema.items()
                 if c in got and got[c] != k]
        problems = [f"missing column(s) {missing}" if missing else "",
                    f"column(s) the model does not know {extra}" if extra else "",
                    f"column(s) of another type: {', '.join(wrong)}" if wrong else ""]
        said = "; ".join(p for p in problems if p)
        if said:
            raise DataError(f"the new data does not match the model's schema: {said}",
                            party=party, step=step,
                            remedy="give the columns the model was trained on, with their types "
                                   f"({', '.join(f'{c}: {k}' for c, k in self.schema.items())})")

    def features_of(self, frame: pd.DataFrame, id_columns: Iterable[str], *, party: str,
                    step: str | None = None) -> pd.DataFrame:
        """The model's feature frame for new rows: schema checked, transforms replayed."""
        ids = list(id_columns)
        self.check(frame, ids, party=party, step=step)
        out = frame[list(self.schema)]  # a new frame (a list selection copies)
        for op in self.ops:
            out = _APPLY[op["op"]](out, op)
        lost = [c for c in self.features if c not in out.columns]
        if lost:
            raise DataError(f"the pipeline did not produce the model's features {lost[:5]}",
                            party=party, step=step,
                            remedy="the model part is inconsistent; retrain or re-import it")
        return out[self.features]


def _fill(frame: pd.DataFrame, op: dict[str, Any]) -> pd.DataFrame:
    from sharedml.learn.preprocessing.impute import Filler

    filler = Filler("constant")
    filler.fill_ = np.asarray(op["values"], dtype=np.float64)
    cols = op["columns"]
    return _put(frame, cols, filler.transform(frame[cols].to_numpy(dtype=np.float64)))


def _scale(frame: pd.DataFrame, op: dict[str, Any]) -> pd.DataFrame:
    from sharedml.learn.preprocessing.scaling import Scaler

    scaler = Scaler(op.get("method", "standard"))
    scaler.center_ = np.asarray(op["center"], dtype=np.float64)
    scaler.scale_ = np.asarray(op["scale"], dtype=np.float64)
    cols = op["columns"]
    return _put(frame, cols, scaler.transform(frame[cols].to_numpy(dtype=np.float64)))


def _put(frame: pd.DataFrame, cols: list[str], values: np.ndarray) -> pd.DataFrame:
    """``frame`` with ``cols`` replaced by ``values``; a new one-block frame when they are
    all its columns (assigning a million rows column by column into the old blocks
    cost seconds)."""
    if list(frame.columns) == list(cols):
        return pd.DataFrame(values, columns=frame.columns, index=frame.index)
    frame[cols] = values
    return frame


def _onehot(frame: pd.DataFrame, op: dict[str, Any]) -> pd.DataFrame:
    from sharedml.components.onehot import encode_categories

    encoded, _ = encode_categories(frame, {c: list(v) for c, v in op["categories"].items()})
    return encoded


def _binning(frame: pd.DataFrame, op: dict[str, Any]) -> pd.DataFrame:
    from sharedml.learn.preprocessing.binning import apply_bins

    for col, edges in op["edges"].items():
        frame[col] = apply_bins(frame[col], np.asarray(edges, dtype=np.float64)).astype(np.float64)
    return frame


_APPLY = {"fill": _fill, "scale": _scale, "onehot": _onehot, "binning": _binning}
