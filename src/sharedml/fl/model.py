"""A horizontally trained model: every party holds all of it and scores its own rows.

FedAvg's models are one flat parameter vector (:class:`~sharedml.fl.linear.LinearLearner`,
:class:`~sharedml.fl.mlp.MlpLearner`); the federated trees are a
:class:`~sharedml.fl.gbdt_model.GbdtModel`. :class:`HorizontalModel` wraps
either with the feature columns it was trained on, and is saved as
``format: sharedml.horizontal`` (version 1), a JSON file every party of the job
writes alike. Scoring is local: nothing is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharedml.errors import DataError
from sharedml.fl.gbdt_model import GbdtModel
from sharedml.fl.learner import LocalLearner

FORMAT = "sharedml.horizontal"
VERSION = 1


@dataclass
class HorizontalModel:
    """``model`` (the job's name for it), ``task``, the training columns and the fit.

    ``fit`` is a :class:`GbdtModel` for ``gbdt``, else FedAvg's parameter vector
    for ``learner``; ``hyper`` holds the parameters the job gave (the MLP's
    layers among them, so the file rebuilds the same network).
    """

    model: str
    task: str
    columns: tuple[str, ...]
    fit: GbdtModel | np.ndarray
    learner: LocalLearner | None = None
    hyper: dict[str, Any] | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values (regression) of this party's rows."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.columns):
            raise DataError(f"the model takes {len(self.columns)} feature columns, the rows "
                            f"have {X.shape[1] if X.ndim == 2 else X.shape}")
        if isinstance(self.fit, GbdtModel):
            return self.fit.predict(X)
        if self.learner is None:
            raise DataError("a FedAvg model without its learner cannot score rows")
        return np.asarray(self.learner.predict(self.fit, X), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        body = self.fit.to_dict() if isinstance(self.fit, GbdtModel) else self.fit.tolist()
        return {"format": FORMAT, "version": VERSION, "model": self.model, "task": self.task,
                "columns": list(self.columns), "hyper": self.hyper or {}, "fit": body}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> HorizontalModel:
        """Read a model file; the learner is rebuilt from the hyper-parameters it names."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model document") -> HorizontalModel:
        """The model :meth:`to_dict` wrote (``where`` names its source in errors)."""
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise DataError(f"{where} is not a {FORMAT} version {VERSION} model file")
        columns = tuple(str(c) for c in d["columns"])
        if d["model"] == "gbdt":
            return cls("gbdt", d["task"], columns, GbdtModel.from_dict(d["fit"]), None, d["hyper"])
        from sharedml.fl.declared import local_learner

        learner = local_learner(d["model"], d["task"], d["hyper"])
        return cls(d["model"], d["task"], columns, np.asarray(d["fit"], dtype=np.float64),
                   learner, d["hyper"])
