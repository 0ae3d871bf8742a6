"""SecureBoost: vertical gradient-boosted trees (Cheng et al., 2019/2021).

One party holds the labels (the *label holder*) and possibly features; the
others (*feature holders*) hold features of the same, already aligned rows.
Every party creates the same estimator and calls ``fit``/``predict`` together.

Training, per tree (details of the histogram step in
:mod:`~sharedml.learn.tree.he_histograms` and
:mod:`~sharedml.learn.tree.ss_histograms`):

1. Each party checks its input; the parties exchange only the verdict, row
   counts and settings, so bad input stops every party before training.
2. Each party bins its own columns by quantiles; edges never leave it. Each
   feature holder tells the label holder its number of bins per feature.
3. The label holder computes gradients and hessians of the loss at the
   current margin and delivers them, protected (``he``: Paillier-encrypted;
   ``ss``: secret-shared), to the feature holders, who return per-bin sums
   for the nodes asked — revealed to the label holder only.
4. The label holder picks each node's best split over all parties' features
   (XGBoost's gain) and asks the split's owner to record it: the owner keeps
   ``(feature, threshold)`` under an opaque record id and returns the id and
   the side each of the node's rows goes to.
5. Leaf weights ``-lr * G / (H + lambda)`` stay with the label holder.

Prediction: each feature holder evaluates all its recorded splits on its own
columns and sends the bit-packed sides to the label holder, which walks the
trees and keeps the scores.

Reveals: to the label holder, per-bin gradient/hessian sums of every feature
of every feature holder at every node it asks for, the feature index and bin
index (never the threshold) of each chosen split, and the side each sample
goes at every split — in training for the node's rows, in prediction for every
row at every split of the owner; the feature holders' row and bin counts. To
each feature holder: which rows were sampled and the rows of each node it
builds histograms for (``he``) or splits (both protocols); never labels,
gradients or predictions.

Security: semi-honest parties; ``ss`` also assumes the dealer does not collude
with either party. Reference: K. Cheng, T. Fan, Y. Jin, Y. Liu, T. Chen,
D. Papadopoulos, Q. Yang, "SecureBoost: A Lossless Federated Learning
Framework", IEEE Intelligent Systems 36(6), 2021 (arXiv:1901.08755).
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from sharedml.errors import DataError, NotFittedError
from sharedml.learn.base import VerticalModel, model_file
from sharedml.learn.params import MAX_KEY_BITS, MAX_TREES, PROVIDER, Param
from sharedml.learn.tree.core import (
    SplitParams,
    logistic_grad_hess,
    sigmoid,
    squared_grad_hess,
)
from sharedml.learn.tree.feature_holder import serve_prediction, serve_training
from sharedml.learn.tree.histograms import HistogramClient, HistogramServer
from sharedml.learn.tree.label_holder import BoostConfig, LabelHolderTrainer
from sharedml.learn.tree.model import SplitTable, Tree
from sharedml.learn.tree.wire import agree, check_header, check_input, model_header, unpack_bits
from sharedml.session import Provider, Session

PROTOCOLS = ("he", "ss")


class _SecureBoost(VerticalModel):
    """Shared machinery of the classifier and the regressor."""

    params: ClassVar[dict[str, Param]] = {
        "protocol": Param(str, "he", "how the label holder's gradients are protected",
                          choices=PROTOCOLS, job=False),
        "n_estimators": Param(int, 30, "number of trees", low=1, high=MAX_TREES),
        "max_depth": Param(int, 3, "depth of each tree", low=1, high=16),
        "learning_rate": Param(float, 0.3, "shrinkage of each tree's leaf weights", low=0,
                               high=1, open_low=True),
        "min_child_weight": Param(float, 1.0, "least hessian sum of a child", low=0, high=1e6),
        "reg_lambda": Param(float, 1.0, "L2 penalty on leaf weights", low=0, high=1e6),
        "gamma": Param(float, 0.0, "least gain of a split", low=0, job=False),
        "n_bins": Param(int, 32, "quantile bins per feature", low=2, high=256),
        "subsample": Param(float, 1.0, "share of rows each tree samples", low=0, high=1,
                           open_low=True),
        "colsample_bytree": Param(float, 1.0, "share of features each tree samples", low=0,
                                  high=1, open_low=True),
        "early_stopping_rounds": Param(
            int, None, "stop after this many trees without a better validation score (None or "
            "0: off; needs validation rows)", low=0, optional=True),
        "key_bits": Param(int, 2048, "Paillier modulus bits", low=1024, high=MAX_KEY_BITS),
        "n_jobs": Param(int, -1, "worker processes for encryption (-1: one per core)",
                        job=False),
        "provider": PROVIDER,
        "random_state": Param(int, None, "seeds row and column sampling", optional=True,
                              job=False),
    }

    protocol: str
    n_estimators: int
    max_depth: int
    learning_rate: float
    min_child_weight: float
    reg_lambda: float
    gamma: float
    n_bins: int
    subsample: float
    colsample_bytree: float
    early_stopping_rounds: int | None
    key_bits: int
    n_jobs: int
    provider: Provider | None
    random_state: int | None

    def _fingerprint(self) -> str:
        params = {k: v for k, v in self.get_params().items() if k not in ("n_jobs",)}
        digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    # -- task-specific hooks ---------------------------------------------------------
    def _base_score(self, y: np.ndarray) -> float:
        raise NotImplementedError

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _val_metric(self, y: np.ndarray, margin: np.ndarray) -> float:
        raise NotImplementedError

    def _link(self, margin: np.ndarray) -> np.ndarray:
        return margin

    # -- training ------------------------------------------------------------------
    def fit(
        self,
        session: Session,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> Self:
        self._check_params()
        ch = session.channel.scope("secureboost/fit")
        X, error = check_input(session.party, X, y, self.task, "training")
        Xv = None
        if error is None and X_val is not None:
            Xv, error = check_input(session.party, X_val, y_val, self.task, "validation")
            if error is None and Xv.shape[1] != X.shape[1]:
                error = f"validation rows have {Xv.shape[1]} columns, training rows {X.shape[1]}"
        if error is None and (y_val is not None) != (y is not None and X_val is not None):
            error = "validation labels must come with validation rows at the label holder"
        status = {
            "error": error,
            "n": len(X) if X.ndim == 2 else -1,
            "n_val": None if X_val is None else (len(Xv) if Xv is not None else -1),
            "label": y is not None,
            "protocol": self.protocol,
            "task": self.task,
            "fingerprint": self._fingerprint(),
        }
        parties = list(session.data_parties)
        everyone = agree(session, ch, parties, status, "secureboost/fit")
        holders = [p for p, st in everyone.items() if st["label"]]
        if len(holders) != 1:
            raise DataError(
                f"exactly one party must pass labels, got {holders or 'none'}",
                party=session.party,
                step="secureboost/fit",
                remedy="pass y at the label holder only",
            )
        self.label_holder_ = holders[0]
        self.party_ = session.party
        self.n_features_in_ = X.shape[1]
        self.feature_holders_ = [p for p in parties if p != self.label_holder_]
        if session.party == self.label_holder_:
            self._fit_label_holder(session, ch, parties, X, y, Xv, y_val)
        else:
            self.trees_: list[Tree] = []
            self.table_ = serve_training(
                ch, self.label_holder_, self._server(session, parties), X, Xv, int(self.n_bins)
            )
        return self

    def _fit_label_holder(
        self,
        session: Session,
        ch: Any,
        parties: list[str],
        X: np.ndarray,
        y: Any,
        Xv: np.ndarray | None,
        y_val: Any,
    ) -> None:
        y = np.asarray(y, dtype=np.float64)
        self.base_score_ = self._base_score(y)
        config = BoostConfig(
            n_estimators=int(self.n_estimators),
            max_depth=int(self.max_depth),
            learning_rate=float(self.learning_rate),
            split=SplitParams(self.reg_lambda, self.gamma, self.min_child_weight),
            n_bins=int(self.n_bins),
            subsample=float(self.subsample),
            colsample_bytree=float(self.colsample_bytree),
            early_stopping_rounds=int(self.early_stopping_rounds)
            if self.early_stopping_rounds
            else None,
        )
        rng = (
            np.random.default_rng(self.random_state)
            if self.random_state is not None
            else session.rng("secureboost/sampling")
        )
        trainer = LabelHolderTrainer(
            ch,
            session.party,
            self.feature_holders_,
            self._client(session, parties),
            config,
            self._loss,
            rng,
        )
        val = None
        if Xv is not None and y_val is not None:
            val = (Xv, np.asarray(y_val, dtype=np.float64), self._val_metric)
        result = trainer.fit(X, y, self.base_score_, val)
        self.trees_ = result.trees
        self.table_ = result.table
        self.best_iteration_ = result.best_iteration
        self.validation_scores_ = result.val_scores

    def split_counts(self, names: list[str]) -> dict[str, int]:
        """How many splits of training used each of *this party's* features (its own split
        table: no other party's feature, no threshold), most used first.

        Reveals (as a train step metric, to the platform): this party's count per own
        feature — a feature importance by use. Counted over every tree grown, early
        stopping's discarded ones included."""
        counts: dict[str, int] = {}
        for f in self.table_.features:
            name = names[f] if 0 <= f < len(names) else f"#{f}"
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def _client(self, session: Session, parties: list[str]) -> HistogramClient:
        if self.protocol == "he":
            from sharedml.learn.tree.he_histograms import HEHistogramClient

            return HEHistogramClient(int(self.key_bits), int(self.n_jobs), session.compute)
        from sharedml.learn.tree.ss_histograms import SSHistogramClient

        return SSHistogramClient(session, parties, session.party, self.provider)

    def _server(self, session: Session, parties: list[str]) -> HistogramServer:
        if self.protocol == "he":
            from sharedml.learn.tree.he_histograms import HEHistogramServer

            return HEHistogramServer(session.compute)
        from sharedml.learn.tree.ss_histograms import SSHistogramServer

        return SSHistogramServer(session, parties, self.label_holder_, self.provider)

    # -- prediction ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "table_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted", remedy="call fit (or load) first"
            )

    def decision_function(self, session: Session, X: np.ndarray) -> np.ndarray | None:
        """The margin (sum of leaf weights plus base score) at the label holder."""
        self._check_fitted()
        ch = session.channel.scope("secureboost/predict")
        X, error = check_input(session.party, X, None, self.task, "prediction")
        if error is None and X.shape[1] != self.n_features_in_:
            error = f"prediction rows have {X.shape[1]} columns, the model was fitted on {self.n_features_in_}"
        status = {"error": error, "n": len(X) if X.ndim == 2 else -1, "task": self.task}
        agree(
            session, ch, [self.label_holder_, *self.feature_holders_], status, "secureboost/predict"
        )
        # this party's side of every row at each of its splits: the local part of the
        # score, on the party's Ray workers when it has them (Session.local_rows)
        sides = partial(self.table_.directions, ids=np.arange(len(self.table_)))
        own = session.local_rows(sides, X, axis=1)
        if session.party != self.label_holder_:
            serve_prediction(ch, self.label_holder_, own)
            return None
        n = len(X)
        dirs: dict[tuple[str, int], np.ndarray] = {}
        for rid, m in enumerate(own):
            dirs[(session.party, rid)] = m
        for p in self.feature_holders_:
            masks = unpack_bits(ch.recv(p, "dirs"), n, p, "dirs")
            for rid, m in enumerate(masks):
                dirs[(p, rid)] = m
        margin = np.full(n, self.base_score_)
        for tree in self.trees_:
            missing = [
                (tree.owner[i], tree.record[i])
                for i in tree.splits()
                if (tree.owner[i], tree.record[i]) not in dirs
            ]
            if missing:
                raise DataError(
                    f"split records {missing[:3]} are missing from their owners' answers",
                    party=session.party,
                    step="secureboost/predict",
                    remedy="load the model files of the same training run at every party",
                )
            margin += tree.predict(n, dirs)
        return margin

    def predict(self, session: Session, X: np.ndarray) -> np.ndarray | None:
        margin = self.decision_function(session, X)
        return None if margin is None else self._link(margin)

    def predict_one(self, session: Session, x: np.ndarray) -> float | None:
        """Online serving: the score of one record (features of this party)."""
        out = self.predict(session, np.asarray(x, dtype=np.float64).reshape(1, -1))
        return None if out is None else float(out[0])

    # -- model files -----------------------------------------------------------------
    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """This party's part as JSON-ready values: its split table; the trees
        (leaf weights, and who owns each split) and base score at the label holder only."""
        self._check_fitted()
        is_label = self.party_ == self.label_holder_
        doc: dict[str, Any] = {
            **model_header(type(self).__name__, self.task, "label" if is_label else "feature"),
            "party": self.party_,
            "label_holder": self.label_holder_,
            "params": self.get_params(),
            "n_features_in": self.n_features_in_,
            "split_table": self.table_.to_dict(),
        }
        doc["feature_holders"] = self.feature_holders_
        if is_label:
            doc["base_score"] = self.base_score_
            doc["trees"] = [t.to_dict() for t in self.trees_]
        return doc

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read SecureBoost model file {path}: {exc}") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any, where: str = "model document") -> Self:
        """The part :meth:`to_dict` wrote; ``where`` names its source in errors."""
        if not isinstance(doc, dict):
            raise DataError(f"{where} is not a SecureBoost model")
        with model_file(where, "SecureBoost"):
            check_header(doc, cls.__name__)
            model = cls(**cls.known_params(doc["params"]))
            model.party_ = doc["party"]
            model.label_holder_ = doc["label_holder"]
            model.n_features_in_ = int(doc["n_features_in"])
            model.table_ = SplitTable.from_dict(doc["split_table"])
            model.trees_ = []
            model.feature_holders_ = [str(p) for p in doc["feature_holders"]]
            if doc["role"] == "label":
                model.base_score_ = float(doc["base_score"])
                model.trees_ = [Tree.from_dict(t) for t in doc["trees"]]
        return model


class SecureBoostClassifier(_SecureBoost):
    """Binary classification (log-loss); ``predict`` gives P(y = 1) at the label holder."""

    task = "classification"

    def _base_score(self, y: np.ndarray) -> float:
        p = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return float(np.log(p / (1 - p)))

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return logistic_grad_hess(y, margin)

    def _val_metric(self, y: np.ndarray, margin: np.ndarray) -> float:
        p = np.clip(sigmoid(margin), 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def _link(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid(margin)


class SecureBoostRegressor(_SecureBoost):
    """Regression (squared error); ``predict`` gives the value at the label holder."""

    task = "regression"

    def _base_score(self, y: np.ndarray) -> float:
        return float(y.mean())

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return squared_grad_hess(y, margin)

    def _val_metric(self, y: np.ndarray, margin: np.ndarray) -> float:
        return float(np.sqrt(np.mean((y - margin) ** 2)))
