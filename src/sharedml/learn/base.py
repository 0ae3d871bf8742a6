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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from sharedml.errors import DataError
from sharedml.learn.params import Declared
from sharedml.session import Session


@contextmanager
def model_file(path: Path | str, kind: str) -> Iterator[None]:
    """Reading a model part file: a field missing or of the wrong type is a
    :class:`~sharedml.errors.DataError` naming the file, never a raw KeyError (the
    file may be damaged, truncated or another program's; issue 14, fuzzing)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise DataError(
            f"{kind} model file {Path(path).name} is malformed ({type(exc).__name__}: "
            f"{str(exc)[:80]})", remedy="use the file as the train step wrote it, or retrain",
        ) from None


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

    def to_dict(self) -> dict[str, Any]:
        """This party's part as JSON-ready values (what :meth:`save` writes), so a
        caller can seal it without a plaintext file (:mod:`sharedml.modelpart`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be written as a document")

    @classmethod
    def from_dict(cls, doc: Any, where: str = "model document") -> Self:
        """The part :meth:`to_dict` wrote; ``where`` names its source in errors."""
        raise NotImplementedError(f"{cls.__name__} cannot be read from a document")
