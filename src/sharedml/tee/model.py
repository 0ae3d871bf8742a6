"""A released model in a typed, pickle-free format, and how a recipient uses it.

Wire form: a JSON header ``{"kind", "features", ...}`` and a body. Logistic
regression carries its scaler and coefficients in the header (the body is
empty); XGBoost carries the booster's own JSON model as the body.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import DataError, ProtocolAbort

KINDS = ("logistic_regression", "xgboost")


@dataclass
class ReleasedModel:
    kind: str
    features: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

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

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(y = 1) for each row (binary classification)."""
        x = self._matrix(frame)
        if self.kind == "logistic_regression":
            z = (x - np.asarray(self.params["mean"])) / np.asarray(self.params["scale"])
            logit = z @ np.asarray(self.params["coef"]) + float(self.params["intercept"])
            out: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
            return out
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.body))
        return np.asarray(booster.predict(xgb.DMatrix(x, feature_names=self.features)))
