"""What the vertical linear learners share: the pre-flight check, the party
layout, fixed-point helpers, the masked sum of partial scores, and model files.

Pre-flight (every party, before any training message): each party checks its
own block locally (finite values, no constant column, labels 0/1 for
classification, label length) and all parties exchange one small public
record — row counts, column count, whether it holds the label, and the text
of its local error if any. Every party then raises the same
:class:`~sharedml.errors.DataError` naming the party at fault, so bad input
stops the job before training starts (8.3-2) and never as a hang.

Reveals (pre-flight): every computing party's row and column counts, which
party holds the labels, and the text of a local input error (it names columns,
never values) — to the computing parties only (a dealer is not asked).
Semi-honest; nothing here needs non-collusion.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from sharedml.errors import ConfigError, DataError, NotFittedError, ProtocolAbort
from sharedml.learn.base import VerticalModel, model_file
from sharedml.session import Session

FORMAT = "sharedml.linear"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Layout:
    """Who holds the label and how many columns each party has (public)."""

    label_holder: str
    feature_holders: tuple[str, ...]
    n_features: dict[str, int]
    n_rows: int
    n_val_rows: int


def as_matrix(X: Any) -> tuple[np.ndarray, list[str] | None]:
    """A float64 matrix and the column names, if ``X`` is a DataFrame."""
    names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return arr, names


def _local_problem(
    X: np.ndarray,
    names: list[str] | None,
    y: np.ndarray | None,
    task: str,
    what: str,
    check_constant: bool,
    classes: int = 2,
) -> str | None:
    def col(j: int) -> str:
        return repr(names[j]) if names else f"#{j}"

    if X.ndim != 2 or X.shape[0] == 0:
        return f"{what} features must be a non-empty 2-D table, got shape {X.shape}"
    bad = np.flatnonzero(~np.isfinite(X).all(axis=0))
    if bad.size:
        cols = ", ".join(col(j) for j in bad[:5])
        return f"{what} feature column(s) {cols} hold NaN or infinite values; impute or drop them first"
    if check_constant and X.shape[0] > 1:
        const = np.flatnonzero(np.ptp(X, axis=0) == 0)
        if const.size:
            cols = ", ".join(col(j) for j in const[:5])
            return f"{what} feature column(s) {cols} are constant; drop them (they carry no signal)"
    if y is None:
        return None
    if y.shape[0] != X.shape[0]:
        return f"{what} labels ({y.shape[0]}) and feature rows ({X.shape[0]}) differ in number"
    if not np.isfinite(y).all():
        return f"{what} labels hold NaN or infinite values"
    if task == "classification" and classes > 2:
        return _classes_problem(y, classes, what)
    if task == "classification":
        values = np.unique(y)
        if not np.isin(values, (0, 1)).all():
            shown = ", ".join(f"{v:g}" for v in values[:5])
            return f"{what} labels must be 0/1 for classification, found values {shown}; encode the label as 0/1"
        if values.size < 2:
            return f"{what} labels hold one class only; both 0 and 1 are needed"
    return None


def _classes_problem(y: np.ndarray, classes: int, what: str) -> str | None:
    """Labels of a ``classes``-class model: integers 0 .. classes - 1."""
    values = np.unique(y)
    if not np.isin(values, np.arange(classes)).all():
        shown = ", ".join(f"{v:g}" for v in values[:5])
        return (
            f"{what} labels must be the integers 0 to {classes - 1} for n_classes={classes}, "
            f"found values {shown}; encode each class as its index"
        )
    if values.size < 2:
        return f"{what} labels hold one class only; at least two are needed"
    return None


def exchange_all(
    session: Session, parties: tuple[str, ...], tag: str, value: bytes
) -> dict[str, bytes]:
    """Every computing party's ``value`` at every computing party (helpers such as a
    dealer are not asked)."""
    for p in parties:
        if p != session.party:
            session.channel.send(p, tag, value)
    return {
        p: value if p == session.party else bytes(session.channel.recv(p, tag)) for p in parties
    }


def send_all(
    session: Session, parties: tuple[str, ...], tag: str, value: bytes | np.ndarray
) -> None:
    for p in parties:
        if p != session.party:
            session.channel.send(p, tag, value)


def preflight(
    session: Session,
    parties: tuple[str, ...],
    task: str,
    X: np.ndarray,
    names: list[str] | None,
    y: np.ndarray | None,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    classes: int = 2,
) -> Layout:
    """Check every party's input and agree on the :class:`Layout` (see module doc);
    ``classes`` (public, a hyper-parameter) is the label holder's number of classes."""
    problem = _local_problem(X, names, y, task, "training", True, classes)
    if problem is None and X_val is not None:
        problem = _local_problem(X_val, names, y_val, task, "validation", False, classes)
        if problem is None and X_val.shape[1] != X.shape[1]:
            problem = f"validation has {X_val.shape[1]} columns, training {X.shape[1]}"
    if problem is None and y is None and y_val is not None:
        problem = "validation labels given without training labels"
    record = {
        "rows": int(X.shape[0]) if X.ndim == 2 else 0,
        "val_rows": None if X_val is None else int(X_val.shape[0]),
        "features": int(X.shape[1]) if X.ndim == 2 else 0,
        "label": y is not None,
        "val_label": y_val is not None,
        "error": problem,
    }
    got = exchange_all(session, parties, "preflight", json.dumps(record).encode())
    records = {p: json.loads(v) for p, v in got.items()}
    for party in parties:
        if records[party]["error"]:
            raise DataError(records[party]["error"], party=party, step="fit: input check")
    holders = [p for p in parties if records[p]["label"]]
    if len(holders) != 1:
        raise ConfigError(
            f"exactly one party must pass labels, got {holders or 'none'}",
            party=session.party,
            step="fit: input check",
            remedy="pass y at the label holder only",
        )
    rows = {p: records[p]["rows"] for p in parties}
    val_rows = {p: records[p]["val_rows"] for p in parties}
    if len(set(rows.values())) != 1:
        raise DataError(
            f"parties hold different numbers of training rows after alignment: {rows}",
            party=session.party,
            step="fit: input check",
            remedy="run the psi step first so every party holds the same rows in the same order",
        )
    if len(set(val_rows.values())) != 1:
        raise DataError(
            f"parties hold different validation rows: {val_rows}",
            party=session.party,
            step="fit: input check",
            remedy="pass X_val at every party (aligned) or at none",
        )
    label = holders[0]
    n_val = val_rows[label] or 0
    if n_val and not records[label]["val_label"]:
        raise DataError(
            "validation features given but no validation labels",
            party=label,
            step="fit: input check",
        )
    return Layout(
        label_holder=label,
        feature_holders=tuple(p for p in parties if p != label),
        n_features={p: records[p]["features"] for p in parties},
        n_rows=rows[label],
        n_val_rows=n_val,
    )


def check_predict_rows(
    session: Session, parties: tuple[str, ...], X: np.ndarray, n_features: int
) -> int:
    """Every party must predict on the same number of rows, with its fitted columns."""
    problem = None
    if X.ndim != 2 or X.shape[1] != n_features:
        problem = f"prediction features have shape {X.shape}, the model was fitted on {n_features} columns"
    elif not np.isfinite(X).all():
        problem = "prediction features hold NaN or infinite values"
    record = {"rows": int(X.shape[0]), "error": problem}
    got = exchange_all(session, parties, "predict-check", json.dumps(record).encode())
    records = {p: json.loads(v) for p, v in got.items()}
    for party in parties:
        if records[party]["error"]:
            raise DataError(records[party]["error"], party=party, step="predict: input check")
    rows = {p: r["rows"] for p, r in records.items()}
    if len(set(rows.values())) != 1:
        raise DataError(
            f"parties predict on different numbers of rows: {rows}",
            party=session.party,
            step="predict: input check",
            remedy="align the prediction rows with psi first",
        )
    return int(X.shape[0])


# -- fixed point on Z_2^64 ---------------------------------------------------------------


def encode_fixed(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Reals as two's-complement fixed point on the ring Z_2^64."""
    return (
        np.round(np.asarray(x, dtype=np.float64) * (1 << frac_bits))
        .astype(np.int64)
        .view(np.uint64)
    )


def decode_fixed(x: np.ndarray, frac_bits: int) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64).view(np.int64).astype(np.float64) / (1 << frac_bits)


def random_ring(shape: int | tuple[int, ...]) -> np.ndarray:
    """Uniform ring elements from :mod:`secrets` (masks, never numpy's generator)."""
    count = int(np.prod(shape))
    return np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64).reshape(shape).copy()


def masked_sum_to_label(
    session: Session, layout: Layout, part: np.ndarray | None, tag: str
) -> np.ndarray | None:
    """Sum of the feature holders' ``part`` vectors, revealed to the label holder only.

    1. Feature holder ``F_k`` (in ring order) draws a uniform mask ``r_k`` and
       sends it to ``F_{k+1}`` (the last to the first); with one feature holder
       there is no mask.
    2. ``F_k`` sends ``enc(part_k) + r_k - r_{k-1}`` (mod 2^64) to the label holder.
    3. The label holder adds what it received: the masks cancel.

    Reveals: the sum of the parts to the label holder; a feature holder sees
    one uniform mask. Semi-honest; the label holder must not collude with the
    feature holders' ring neighbours (with two or more feature holders).
    """
    frac = session.frac_bits
    fh = layout.feature_holders
    if session.party == layout.label_holder:
        total: np.ndarray | None = None
        for p in fh:
            got = np.asarray(session.channel.recv(p, f"{tag}/sum"), dtype=np.uint64)
            total = got if total is None else total + got
        return decode_fixed(total, frac) if total is not None else None
    if part is None:
        raise ProtocolAbort("a feature holder must contribute a part", party=session.party)
    enc = encode_fixed(part, frac)
    if len(fh) > 1:
        k = fh.index(session.party)
        mine = random_ring(enc.shape)
        session.channel.send(fh[(k + 1) % len(fh)], f"{tag}/mask", mine)
        theirs = np.asarray(session.channel.recv(fh[k - 1], f"{tag}/mask"), dtype=np.uint64)
        enc = enc + mine - theirs
    session.channel.send(layout.label_holder, f"{tag}/sum", enc)
    return None


# -- the estimator shell -----------------------------------------------------------------


class LinearPart(VerticalModel):
    """State and files common to the linear learners; subclasses add the protocol."""

    #: model type written to files; subclasses override
    model_type: ClassVar[str] = ""

    coef_: np.ndarray | None
    intercept_: float | None
    layout_: Layout
    party_: str
    parties_: tuple[str, ...]

    def _check_fitted(self) -> None:
        if not hasattr(self, "layout_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")

    def _part(self) -> dict[str, Any]:
        """This party's learned state as JSON-ready values (subclasses extend)."""
        raise NotImplementedError

    def _set_part(self, part: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        """Write :meth:`to_dict` as JSON: this party's part only."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    def to_dict(self) -> dict[str, Any]:
        """``{format, format_version, model_type, params, party, layout, part}``:
        this party's part only (its own coefficients or its shares, its own
        scaler; the label holder's intercept and target scaling at the label holder)."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "params": self.get_params(),
            "party": self.party_,
            "layout": {
                "label_holder": self.layout_.label_holder,
                "feature_holders": list(self.layout_.feature_holders),
                "n_features": self.layout_.n_features,
                "parties": list(self.parties_),
            },
            "part": self._part(),
        }

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read model file {path}: {exc}") from None
        return cls.from_dict(doc, where=str(path))

    @classmethod
    def from_dict(cls, doc: Any, where: str = "model document") -> Self:
        """The part :meth:`to_dict` wrote; ``where`` names its source in errors."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"{where} is not a sharedml linear model")
        if doc.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{where} has model format version {doc.get('format_version')}, this sharedml reads {FORMAT_VERSION}",
                remedy="retrain the model or use the sharedml version that wrote it",
            )
        if doc.get("model_type") != cls.model_type:
            raise DataError(f"{where} holds a {doc.get('model_type')}, not a {cls.model_type}")
        with model_file(where, "linear"):
            model = cls(**cls.known_params(doc["params"]))
            lay = doc["layout"]
            model.layout_ = Layout(
                lay["label_holder"], tuple(lay["feature_holders"]), dict(lay["n_features"]), 0, 0
            )
            model.party_ = doc["party"]
            model.parties_ = tuple(lay["parties"])
            model._set_part(doc["part"])
        return model


def array_or_none(v: Any) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=np.float64)


def list_or_none(v: np.ndarray | None) -> list[float] | None:
    return None if v is None else [float(x) for x in np.ravel(v)]
