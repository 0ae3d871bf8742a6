"""K-fold cross-validation of a vertical model (8.1.2-3): every fold a full
shared training on the same aligned rows.

Protocol (label holder ``L``, data parties ``P``; rows aligned by PSI; the
model's own protocol does the training):

1. ``L`` gives every row a fold with scikit-learn's splitter —
   ``StratifiedKFold`` for a classifier with ``stratify``, ``KFold``
   otherwise; without ``shuffle`` this is ``cross_val_score(cv=k)``'s
   assignment — and sends the fold ids to every party (:func:`share_folds`).
2. For each fold ``k`` every party fits a fresh model on its rows outside
   fold ``k`` and predicts its rows in fold ``k`` (scores at ``L`` only);
   ``L`` computes the metric and sends every party the fold's value and
   whether to go on (a caller at ``L`` may stop early: a pruned trial).

Reveals: the fold ids to every party. With stratification they depend on
the labels: without shuffling each class fills the folds in row order, so
the rows near a fold boundary whose class switched folds at a different row
tell their label (a few per boundary, O(√n)); with ``shuffle`` the ids show
each fold's class counts only. The per-fold metric values reach every party
(public by design: the party that did not ask learns how good the model is,
never a row's score). Beyond that, what each training reveals (see the
model). Security model: that of the model; semi-honest.

Reference: scikit-learn's ``model_selection`` (the splitters are called, not
re-implemented, so the folds are theirs).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.learn import metrics
from sharedml.learn.base import VerticalModel
from sharedml.learn.linear._base import send_all
from sharedml.session import Session


@dataclass
class CVResult:
    """Per-fold values of one metric (the same at every party)."""

    metric: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    stopped: bool = False

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.pstdev(self.values) if len(self.values) > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "folds": self.values,
            "fold_rows": self.sizes,
            "mean": self.mean,
            "std": self.std,
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class Splitting:
    """How rows are cut into folds (see :func:`fold_ids`)."""

    folds: int = 5
    stratify: bool = True
    shuffle: bool = False
    seed: int | None = None


def fold_ids(
    y: np.ndarray, folds: int, *, classify: bool, stratify: bool, shuffle: bool, seed: int | None
) -> np.ndarray:
    """The fold of every row, from scikit-learn's splitter (at the label holder)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if stratify and classify:
        splitter: Any = StratifiedKFold(
            folds, shuffle=shuffle, random_state=seed if shuffle else None
        )
    else:
        splitter = KFold(folds, shuffle=shuffle, random_state=seed if shuffle else None)
    ids = np.empty(len(y), dtype=np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
        ids[test] = k
    return ids


def resolve_metric(name: str, task: str) -> tuple[str, Callable[..., float], bool]:
    """``(name, function, higher_is_better)``; ``auto`` is AUC or RMSE."""
    if name == "auto":
        name = "auc" if task == "classification" else "rmse"
    score, higher = metrics.metric(name, task)
    return name, score, higher


def _send(session: Session, parties: Sequence[str], tag: str, doc: dict[str, Any]) -> None:
    send_all(session, tuple(parties), tag, json.dumps(doc).encode())


def _recv(session: Session, frm: str, tag: str) -> dict[str, Any]:
    raw = session.channel.recv(frm, tag)
    try:
        doc = json.loads(raw) if isinstance(raw, bytes) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProtocolAbort(f"malformed {tag} message", party=frm, step=tag)
    return doc


def share_folds(
    session: Session,
    parties: Sequence[str],
    label_holder: str,
    n_rows: int,
    y: np.ndarray | None,
    split: Splitting,
    *,
    classify: bool,
    tag: str = "cv",
) -> np.ndarray:
    """Step 1: every party's copy of the fold ids (``y`` at ``L`` only)."""
    folds = split.folds
    if not 2 <= folds <= n_rows:
        raise ConfigError(f"folds must lie in [2, {n_rows}], got {folds}", step=tag)
    if session.party == label_holder:
        if y is None:
            raise ConfigError("the label holder must pass y", party=label_holder, step=tag)
        try:
            ids = fold_ids(
                y,
                folds,
                classify=classify,
                stratify=split.stratify,
                shuffle=split.shuffle,
                seed=split.seed,
            )
        except ValueError as exc:  # e.g. fewer rows of a class than folds
            _send(session, parties, f"{tag}/folds", {"error": str(exc)})
            raise DataError(str(exc), party=label_holder, step=f"{tag}: folds") from None
        _send(session, parties, f"{tag}/folds", {"ids": ids.tolist()})
        return ids
    doc = _recv(session, label_holder, f"{tag}/folds")
    if "error" in doc:
        raise DataError(str(doc["error"]), party=label_holder, step=f"{tag}: folds")
    ids = np.asarray(doc.get("ids", []), dtype=np.int64)
    if ids.shape != (n_rows,) or ids.min(initial=0) < 0 or ids.max(initial=0) >= folds:
        raise ProtocolAbort(
            f"fold ids for {ids.size} rows, this party holds {n_rows}",
            party=label_holder,
            step=f"{tag}: folds",
            remedy="run psi first so every party holds the same rows",
        )
    return ids


def _rows(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def run_folds(
    session: Session,
    parties: Sequence[str],
    label_holder: str,
    make_model: Callable[[], VerticalModel],
    X: Any,
    y: np.ndarray | None,
    ids: np.ndarray,
    *,
    metric: str = "auto",
    tag: str = "cv",
    stop_after: Callable[[int, CVResult], bool] | None = None,
) -> CVResult:
    """Step 2: train and score every fold; ``stop_after(k, result)`` (at ``L``)
    may end the loop after fold ``k``."""
    name, score, higher = resolve_metric(metric, make_model().task)
    result = CVResult(name, higher)
    for k in range(int(ids.max()) + 1):
        train, test = np.flatnonzero(ids != k), np.flatnonzero(ids == k)
        model = make_model()
        is_label = session.party == label_holder
        model.fit(session, _rows(X, train), None if y is None or not is_label else y[train])
        out = model.predict(session, _rows(X, test))
        if is_label:
            if out is None or y is None:
                raise ProtocolAbort("the label holder got no scores", party=label_holder, step=tag)
            value = float(score(y[test], out))
            stop = False
            result.values.append(value)
            result.sizes.append(len(test))
            if stop_after is not None:
                stop = bool(stop_after(k, result))
            _send(
                session,
                parties,
                f"{tag}/fold{k}",
                {"value": value, "rows": len(test), "stop": stop},
            )
        else:
            doc = _recv(session, label_holder, f"{tag}/fold{k}")
            result.values.append(float(doc["value"]))
            result.sizes.append(int(doc["rows"]))
            stop = bool(doc.get("stop"))
        if stop:
            result.stopped = True
            break
    return result


def cross_validate(
    session: Session,
    parties: Sequence[str],
    label_holder: str,
    make_model: Callable[[], VerticalModel],
    X: Any,
    y: np.ndarray | None = None,
    *,
    folds: int = 5,
    stratify: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    metric: str = "auto",
    tag: str = "cv",
) -> CVResult:
    """Steps 1 and 2 (see the module docstring); the same result at every party."""
    split = Splitting(folds, stratify, shuffle, seed)
    classify = make_model().task == "classification"
    ids = share_folds(session, parties, label_holder, len(X), y, split, classify=classify, tag=tag)
    return run_folds(session, parties, label_holder, make_model, X, y, ids, metric=metric, tag=tag)
