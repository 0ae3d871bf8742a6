"""A released model in a typed, pickle-free format, and how a recipient uses it.

Wire form: a JSON header ``{"kind", "features", "params"}`` and a body.

* ``logistic_regression`` / ``linear_regression``: the column centres and
  scales and the coefficients in the header (the body is empty); the score is
  ``sigmoid(((x - mean) / scale) · coef + intercept)`` or the bare affine value;
* ``mlp``: the centres and scales, the activation, ``task`` and every layer's
  ``W``/``b`` in the header; a float64 forward pass in numpy, so a recipient
  needs no torch;
* ``xgboost``: the booster's own JSON model as the body, ``task`` in the header.

The enclave scores its own evaluation rows with these same functions, so a
recipient who scores the same rows gets the same numbers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import DataError, ProtocolAbort

KINDS = ("logistic_regression", "linear_regression", "xgboost", "mlp")


@dataclass
class ReleasedModel:
    kind: str
    features: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    @property
    def task(self) -> str:
        if self.kind == "linear_regression":
            return "regression"
        return str(self.params.get("task", "classification"))

    def to_bytes(self) -> bytes:
        header = json.dumps({"kind": self.kind, "features": self.features, "params": self.params}).encode()
        return struct.pack(">I", len(header)) + header + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleasedModel:
        try:
            (n,) = struct.unpack(">I", data[:4])
            header = json.loads(data[4 : 4 + n])
            model = cls(str(header["kind"]), list(header["features"]), dict(header["params"]), data[4 + n :])
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise ProtocolAbort(f"malformed released model: {exc}", step="result") from None
        if model.kind not in KINDS:
            raise ProtocolAbort(f"unknown model kind {model.kind!r}", step="result")
        return model

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise DataError(f"columns missing for prediction: {missing[:5]}", step="predict")
        return frame[self.features].to_numpy(dtype=np.float64)

    def _standardised(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (x - np.asarray(self.params["mean"])) / np.asarray(self.params["scale"])
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The score of each row: P(y = 1) for classification, the prediction for regression."""
        return self.predict_rows(self._matrix(frame))

    def predict_rows(self, x: np.ndarray) -> np.ndarray:
        """:meth:`predict` of float64 rows whose columns are :attr:`features`, in that order."""
        if self.kind in ("logistic_regression", "linear_regression"):
            z = self._standardised(x) @ np.asarray(self.params["coef"]) + float(self.params["intercept"])
            return _sigmoid(z) if self.task == "classification" else z
        if self.kind == "mlp":
            return self._forward(self._standardised(x))
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.body))
        out = np.asarray(booster.predict(xgb.DMatrix(x, feature_names=self.features)), dtype=np.float64)
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(y = 1) for each row (binary classification)."""
        if self.task != "classification":
            raise DataError(f"a {self.kind} regression model has no probabilities", step="predict",
                            remedy="use predict()")
        return self.predict(frame)

    def _forward(self, z: np.ndarray) -> np.ndarray:
        layers = self.params["layers"]
        act = _ACTIVATIONS[str(self.params["activation"])]
        for i, (w, b) in enumerate(layers):
            z = z @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
            if i < len(layers) - 1:
                z = act(z)
        out = z[:, 0]
        return _sigmoid(out) if self.task == "classification" else out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "logistic": _sigmoid,
    "identity": lambda z: z,
}
