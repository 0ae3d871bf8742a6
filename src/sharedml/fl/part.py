"""A horizontal model as a registered model part (:mod:`sharedml.modelpart`).

After a horizontal ``train`` every data party seals the whole model (it holds
all of it) as its part of a new registered version, exactly as a vertical
party seals its own part: same file format, node key, fingerprint in the
registry. :class:`HorizontalPart` is the part kind the store loads
(:func:`~sharedml.modelpart.register_kind`); a later ``predict {layout:
horizontal, model: NAME@ALIAS}`` opens this party's part and scores this
party's rows with it. Nothing is sent to score: ``predict`` is local.

Reveals: nothing beyond the vertical parts' registry entries (the version
uid, each party's fingerprint, the public metrics of the train step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from sharedml.errors import ConfigError, DataError, NotFittedError
from sharedml.fl.model import HorizontalModel
from sharedml.learn.base import VerticalModel, model_file
from sharedml.learn.params import Param
from sharedml.session import Session


class HorizontalPart(VerticalModel):
    """One party's copy of a horizontal model, as a model-part kind.

    ``model_`` is the :class:`~sharedml.fl.model.HorizontalModel`; ``parties_``
    the data parties that trained it. Every party holds the whole model, so
    ``label_holder_`` (which the part header records) is the first of them only
    by convention: each party scores its own rows.
    """

    params: ClassVar[dict[str, Param]] = {}
    model_: HorizontalModel
    parties_: tuple[str, ...]
    label_holder_: str
    feature_holders_: list[str]

    @classmethod
    def of(cls, model: HorizontalModel, parties: tuple[str, ...]) -> Self:
        """The part of ``model``, trained by the data parties ``parties``."""
        part = cls()
        part.model_, part.parties_ = model, tuple(parties)
        part.label_holder_, part.feature_holders_ = parties[0], list(parties[1:])
        part.task = model.task
        return part

    def fit(self, session: Session, X: np.ndarray, y: np.ndarray | None = None, *,
            X_val: np.ndarray | None = None, y_val: np.ndarray | None = None) -> Self:
        raise ConfigError("a horizontal model part is trained by train {layout: horizontal}",
                          party=session.party)

    def predict(self, session: Session, X: np.ndarray) -> np.ndarray:
        """This party's scores of its own rows (nothing is sent)."""
        return self.horizontal.predict(np.asarray(X, dtype=np.float64))

    @property
    def horizontal(self) -> HorizontalModel:
        model = getattr(self, "model_", None)
        if not isinstance(model, HorizontalModel):
            raise NotFittedError("this horizontal part holds no model")
        return model

    def to_dict(self) -> dict[str, Any]:
        return {"parties": list(self.parties_), "model": self.horizontal.to_dict()}

    @classmethod
    def from_dict(cls, doc: Any, where: str = "model document") -> Self:
        with model_file(where, "horizontal"):
            model = HorizontalModel.from_dict(doc["model"], where)
            parties = tuple(str(p) for p in doc["parties"])
            if not parties:
                raise DataError(f"{where} names no parties")
        return cls.of(model, parties)

    def save(self, path: Path) -> None:
        self.horizontal.save(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        raise ConfigError(f"{path.name}: a horizontal part opens from the part store, "
                          "not from a plain file", remedy="name it as model: NAME@ALIAS")
