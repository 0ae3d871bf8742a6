"""The mini-batch SGD driver every vertical linear learner shares.

The driver is the same for all protocols: pre-flight, local standardisation,
a public shuffle seed from the label holder, then per epoch one protocol step
per batch, an optional joint validation pass (scores revealed to the label
holder only), and an early-stopping decision the label holder broadcasts as
two public bits (improved, stop). Subclasses implement the protocol hooks:
``_setup``, ``_init_weights``, ``_step``, ``_scores``, ``_snapshot``/``_restore``,
``_finish`` and the model-file ``_part``/``_set_part``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from functools import partial
from typing import Any, Self

import numpy as np

from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.learn import metrics
from sharedml.learn.linear._base import (
    LinearPart,
    array_or_none,
    as_matrix,
    check_predict_rows,
    list_or_none,
    masked_sum_to_label,
    preflight,
    send_all,
)
from sharedml.learn.linear._core import (
    SCALINGS,
    SCHEDULES,
    EarlyStopping,
    Standardizer,
    batch_plan,
    grouped_batches,
    learning_rate,
    sigmoid,
    softmax,
)
from sharedml.learn.params import MAX_BATCH_ROWS, Param
from sharedml.session import Session

#: The parameters of every SGD learner; each learner declares its own defaults.
SGD_PARAMS: dict[str, Param] = {
    "epochs": Param(int, 5, "passes over the training rows", low=1, high=10_000),
    "batch_size": Param(int, 1024, "rows per SGD step", low=16, high=MAX_BATCH_ROWS),
    "learning_rate": Param(float, 2.0, "initial step size", low=0, open_low=True, high=1e3),
    "lr_schedule": Param(str, "cosine", "how the step size decays", choices=SCHEDULES),
    "l2": Param(float, 1e-4, "L2 penalty (none on the intercept)", low=0, high=1e6),
    "early_stopping_rounds": Param(
        int, 0, "stop after this many epochs without a better validation score (0: off; "
        "needs validation rows)", low=0),
    "validation_metric": Param(
        str, "auto", "metric of early stopping (auto: AUC, or RMSE for regression)", job=False),
    "random_state": Param(int, None, "seeds the public shuffle", optional=True, job=False),
    "scaling": Param(str, "standard", "how each party scales its own columns",
                     choices=SCALINGS, job=False),
}


class SGDDriver(LinearPart):
    """Shared ``fit``/``predict`` skeleton (see module docstring)."""

    epochs: int
    batch_size: int
    learning_rate: float
    lr_schedule: str
    l2: float
    early_stopping_rounds: int
    validation_metric: str
    random_state: int | None
    scaling: str

    # -- parameter rules: declared in ``params``; the metric depends on the task ---------
    def _check_params(self) -> None:
        super()._check_params()
        self._metric_name()

    def _metric_name(self) -> str:
        name = self.validation_metric
        if name == "auto":
            if self.task == "classification":
                return "auc" if self._classes() == 2 else "accuracy"
            return "rmse"
        metrics.metric(name, self.task, self._classes())
        return name

    # -- fit -------------------------------------------------------------------------------
    def fit(
        self,
        session: Session,
        X: Any,
        y: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
    ) -> Self:
        self._check_params()
        Xm, names = as_matrix(X)
        ym = None if y is None else np.asarray(y, dtype=np.float64).ravel()
        Xv = None if X_val is None else as_matrix(X_val)[0]
        yv = None if y_val is None else np.asarray(y_val, dtype=np.float64).ravel()
        self.parties_ = session.data_parties
        layout = preflight(
            session, self.parties_, self.task, Xm, names, ym, Xv, yv, classes=self._classes()
        )
        if self.early_stopping_rounds and not layout.n_val_rows:
            raise ConfigError(
                "early stopping needs validation data (X_val at every party, y_val at the label holder)",
                party=session.party,
                step="fit",
            )
        self.layout_, self.party_ = layout, session.party
        self.feature_names_in_ = names
        self.n_features_in_ = Xm.shape[1]
        self.scaler_ = Standardizer.fit(Xm, self.scaling)
        Xs = self.scaler_.transform(Xm)
        Xvs = None if Xv is None else self.scaler_.transform(Xv)
        is_label = session.party == layout.label_holder
        self.y_mean_, self.y_scale_ = 0.0, 1.0
        if is_label and self.task == "regression" and self.scaling != "none" and ym is not None:
            self.y_mean_ = float(ym.mean())
            self.y_scale_ = float(ym.std()) or 1.0
        yt = None if ym is None else (ym - self.y_mean_) / self.y_scale_
        seed = self._shuffle_seed(session)
        self._Xs, self._y, self._Xv = Xs, yt, Xvs
        start = time.perf_counter()
        self._setup(session)
        self.setup_seconds_ = time.perf_counter() - start
        try:
            self._train(session, Xs, yt, Xvs, yv, seed)
            self._finish(session)
        finally:
            self._teardown()
            del self._Xs, self._y, self._Xv
        return self

    def _shuffle_seed(self, session: Session) -> bytes:
        """The label holder picks the public shuffle seed (row order is public after PSI);
        ``random_state`` makes it reproducible."""
        if session.party == self.layout_.label_holder:
            if self.random_state is None:
                seed = secrets.token_bytes(16)
            else:
                seed = hashlib.sha256(f"sharedml.linear/{self.random_state}".encode()).digest()[:16]
            send_all(session, self.parties_, "shuffle-seed", seed)
            return seed
        got = bytes(session.channel.recv(self.layout_.label_holder, "shuffle-seed"))
        if len(got) != 16:
            raise ProtocolAbort("shuffle seed must be 16 bytes", party=session.party)
        return got

    def _train(
        self,
        session: Session,
        Xs: np.ndarray,
        y: np.ndarray | None,
        Xv: np.ndarray | None,
        yv: np.ndarray | None,
        seed: bytes,
    ) -> None:
        n = Xs.shape[0]
        per_epoch = len(batch_plan(n, self.batch_size, seed, 0))
        total = self.epochs * per_epoch
        metric_name = self._metric_name()
        higher = metrics.metric(metric_name, self.task, self._classes())[1]
        stopper = EarlyStopping(self.early_stopping_rounds, higher)
        self._init_weights(session)
        self.history_: list[float] = []
        step = 0
        self.n_epochs_ = 0
        best: Any = None
        self.epoch_seconds_: list[float] = []
        for epoch in range(self.epochs):
            start = time.perf_counter()
            groups = grouped_batches(batch_plan(n, self.batch_size, seed, epoch), self._group())
            for i, members in enumerate(groups):
                # the next group of this epoch (public), so a protocol may prepare it
                self._next_group = groups[i + 1] if i + 1 < len(groups) else None
                lrs = [
                    learning_rate(self.lr_schedule, self.learning_rate, step + j, total)
                    for j in range(len(members))
                ]
                self._step_group(session, members, lrs)
                step += len(members)
            self.epoch_seconds_.append(time.perf_counter() - start)
            self.n_epochs_ = epoch + 1
            if Xv is None:
                continue
            improved, stop = self._validate(session, Xv, yv, metric_name, stopper, epoch)
            if improved:
                best = self._snapshot()
            if stop:
                break
        if best is not None and self.early_stopping_rounds:
            self._restore(best)

    def _validate(
        self,
        session: Session,
        Xv: np.ndarray,
        yv: np.ndarray | None,
        metric_name: str,
        stopper: EarlyStopping,
        epoch: int,
    ) -> tuple[bool, bool]:
        """Joint validation scores at the label holder; it broadcasts (improved, stop)."""
        scores = self._output(self._scores(session, Xv, validation=True))
        if session.party == self.layout_.label_holder:
            if scores is None or yv is None:
                raise ProtocolAbort("label holder got no validation scores", party=session.party)
            value = metrics.metric(metric_name, self.task, self._classes())[0](yv, scores)
            self.history_.append(value)
            improved, stop = stopper.update(value, epoch)
            flags = bytes([int(improved), int(stop)])
            send_all(session, self.parties_, "early-stopping", flags)
        else:
            flags = bytes(session.channel.recv(self.layout_.label_holder, "early-stopping"))
            if len(flags) != 2 or max(flags) > 1:
                raise ProtocolAbort("malformed early-stopping flags", party=session.party)
        return bool(flags[0]), bool(flags[1])

    def _output(self, z: np.ndarray | None) -> np.ndarray | None:
        if z is None:
            return None
        if self.task == "classification" and self._classes() > 2:
            return softmax(z)
        if self.task == "classification":
            return sigmoid(z)
        return z * self.y_scale_ + self.y_mean_

    # -- predict ---------------------------------------------------------------------------
    def predict(self, session: Session, X: Any) -> np.ndarray | None:
        """Joint prediction: probabilities (classification) or values (regression)
        at the label holder, ``None`` elsewhere. Every party passes its own
        columns of the same rows."""
        self._check_fitted()
        Xm, _ = as_matrix(X)
        check_predict_rows(session, self.parties_, Xm, self.layout_.n_features[self.party_])
        return self._output(self._scores(session, self.scaler_.transform(Xm), validation=False))

    def predict_one(self, session: Session, x: Any) -> float | None:
        """Per-record joint prediction for online serving (one row per party).

        With released coefficients this is one masked sum (one message per
        feature holder); with shared coefficients (``reveal_weights="none"``)
        each call opens an MPC runtime, so the dealer serves one runtime per
        call — batch records with :meth:`predict` where latency allows."""
        out = self.predict(session, np.asarray(x, dtype=np.float64).reshape(1, -1))
        return None if out is None else float(out[0])

    # -- hooks -----------------------------------------------------------------------------
    def _classes(self) -> int:
        """Number of classes of the label (a softmax output above 2)."""
        return 2

    def _setup(self, session: Session) -> None:
        """Protocol setup before the first batch (keys, masks)."""

    def _teardown(self) -> None:
        """Drop secrets that must not outlive ``fit``."""

    def _finish(self, session: Session) -> None:
        """After training: release or keep coefficients."""

    def _init_weights(self, session: Session) -> None:
        raise NotImplementedError

    def _step(self, session: Session, idx: np.ndarray, lr: float) -> None:
        """One SGD step on the rows ``idx`` of ``self._Xs`` (and ``self._y``)."""
        raise NotImplementedError

    def _group(self) -> int:
        """How many batches go in one group (:func:`~sharedml.learn.linear._core.grouped_batches`)."""
        return 1

    def _step_group(self, session: Session, members: list[np.ndarray], lrs: list[float]) -> None:
        """One group of batches; a protocol without groups takes one step per batch."""
        for idx, lr in zip(members, lrs, strict=True):
            self._step(session, idx, lr)

    def _scores(self, session: Session, Xs: np.ndarray, *, validation: bool) -> np.ndarray | None:
        """Joint linear scores of ``Xs`` at the label holder (``None`` elsewhere)."""
        raise NotImplementedError

    def _snapshot(self) -> Any:
        raise NotImplementedError

    def _restore(self, snap: Any) -> None:
        raise NotImplementedError

    def _common_part(self) -> dict[str, Any]:
        return {
            "mean": list_or_none(self.scaler_.mean),
            "transform": self.scaler_.matrix.tolist(),
            "y_mean": self.y_mean_,
            "y_scale": self.y_scale_,
            "feature_names": self.feature_names_in_,
            "n_epochs": self.n_epochs_,
        }

    def _set_common_part(self, part: dict[str, Any]) -> None:
        mean, matrix = array_or_none(part["mean"]), array_or_none(part["transform"])
        if mean is None or matrix is None or matrix.shape != (len(mean), len(mean)):
            raise DataError("model file lacks a valid scaler")
        self.scaler_ = Standardizer(mean, matrix)
        self.y_mean_, self.y_scale_ = float(part["y_mean"]), float(part["y_scale"])
        self.feature_names_in_ = part.get("feature_names")
        self.n_features_in_ = len(mean)
        self.n_epochs_ = int(part.get("n_epochs", 0))


class PlaintextWeightsSGD(SGDDriver):
    """Protocols in which each party keeps its own coefficients in plaintext
    (HE-LR). Subclasses provide the gradient exchange for the feature holders."""

    def _init_weights(self, session: Session) -> None:
        d = self.layout_.n_features[session.party]
        self.coef_ = np.zeros(d)
        self.intercept_ = 0.0 if session.party == self.layout_.label_holder else None

    def _step(self, session: Session, idx: np.ndarray, lr: float) -> None:
        Xb = self._Xs[idx]
        yb = None if self._y is None else self._y[idx]
        w = self.coef_
        if w is None:
            raise ProtocolAbort("weights not initialised", party=session.party)
        if session.party == self.layout_.label_holder:
            if yb is None or self.intercept_ is None:
                raise ProtocolAbort("label holder without labels", party=session.party)
            others = masked_sum_to_label(session, self.layout_, None, "partial-score")
            z = Xb @ w + self.intercept_ + (0.0 if others is None else others)
            resid = sigmoid(z) - yb if self.task == "classification" else z - yb
            self._label_gradient_exchange(session, Xb, resid)
            self.coef_ = w - lr * (Xb.T @ resid / len(yb) + self.l2 * w)
            self.intercept_ = self.intercept_ - lr * float(resid.mean())
        else:
            masked_sum_to_label(session, self.layout_, Xb @ w, "partial-score")
            grad = self._feature_gradient(session, Xb) / Xb.shape[0]
            self.coef_ = w - lr * (grad + self.l2 * w)

    def _scores(self, session: Session, Xs: np.ndarray, *, validation: bool) -> np.ndarray | None:
        if self.coef_ is None:
            raise ProtocolAbort("weights not initialised", party=session.party)
        own = session.local_rows(partial(np.dot, b=self.coef_), Xs)  # 8.5-2
        if session.party == self.layout_.label_holder:
            others = masked_sum_to_label(session, self.layout_, None, "score")
            return own + (self.intercept_ or 0.0) + (0.0 if others is None else others)
        masked_sum_to_label(session, self.layout_, own, "score")
        return None

    def _snapshot(self) -> Any:
        return (None if self.coef_ is None else self.coef_.copy(), self.intercept_)

    def _restore(self, snap: Any) -> None:
        self.coef_, self.intercept_ = snap

    def _label_gradient_exchange(self, session: Session, Xb: np.ndarray, resid: np.ndarray) -> None:
        raise NotImplementedError

    def _feature_gradient(self, session: Session, Xb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _part(self) -> dict[str, Any]:
        return {
            **self._common_part(),
            "coef": list_or_none(self.coef_),
            "intercept": self.intercept_,
        }

    def _set_part(self, part: dict[str, Any]) -> None:
        self._set_common_part(part)
        self.coef_ = array_or_none(part["coef"])
        self.intercept_ = None if part.get("intercept") is None else float(part["intercept"])
