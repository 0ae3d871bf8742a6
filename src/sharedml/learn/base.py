"""What every vertical (MPC) learner looks like to the job steps.

Each party holds one instance of a :class:`VerticalModel`: *its part* of the
shared model. All parties call :meth:`fit` together (same hyper-parameters,
rows already aligned by PSI), then :meth:`predict` together; only the label
holder passes ``y`` and only the label holder receives scores. A part saved
with :meth:`save` holds nothing of the other parties (docs/architecture.md §4, §6).

Hyper-parameters are declared once in the class's ``params``
(:mod:`sharedml.learn.params`), given to ``__init__`` and stored as given;
learned state ends in ``_``; ``predict`` before ``fit`` raises
:class:`~sharedml.errors.NotFittedError` (STYLE.md 10).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

import numpy as np

from sharedml.learn.params import Declared
from sharedml.session import Session


class VerticalModel(Declared, ABC):
    """One party's part of a vertically shared model."""

    #: "classification" or "regression"
    task: str = "classification"

    @abstractmethod
    def fit(
        self,
        session: Session,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> Self:
        """Train jointly. ``X`` is this party's feature block (rows aligned with
        every other party's); ``y``/``y_val`` only at the label holder."""

    @abstractmethod
    def predict(self, session: Session, X: np.ndarray) -> np.ndarray | None:
        """Joint prediction: scores (probabilities for classification) at the
        label holder, ``None`` at every other party."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write this party's part (and nothing else) to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read a part written by :meth:`save`."""
