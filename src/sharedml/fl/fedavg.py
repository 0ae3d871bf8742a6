"""Federated averaging (FedAvg) and FedProx over secure aggregation.

Roles: one server (the aggregator named in the job) and the clients, each
holding the same columns for its own rows. Written once against the
Channel; the model is any :class:`~sharedml.fl.learner.LocalLearner` (numpy linear models in
:mod:`sharedml.fl.linear`, the torch MLP in :mod:`sharedml.fl.mlp`).

Protocol (round ``r`` of at most ``rounds``):

1. The server draws the round's participants (``client_fraction`` of the
   clients, at least the secure-aggregation threshold; a public, seeded
   draw) and sends every client the round, the learning rate of the
   schedule and the global parameters ``w``.
2. Each participant ``i`` trains ``local_epochs`` of mini-batch SGD from
   ``w`` on its own rows (FedProx adds ``μ/2 ‖w_i − w‖²``) and submits, by
   secure aggregation, ``[n_i (w_i − w), n_i]`` (sample-count weighting) —
   or, with DP, its clipped ``w_i − w`` (uniform weighting, see
   :mod:`sharedml.fl.dp`; on Z_2^32 when the job's bound, by default the
   clip, allows: :meth:`~sharedml.fl.quantize.Quantizer.for_sum`).
3. The server sets ``w ← w + Σ n_i Δ_i / Σ n_i`` over the survivors (with
   DP: ``w + (Σ clip(Δ_i) + noise) / m``).
4. Every client evaluates the new ``w`` on its own held-out rows; the
   metric sums (:mod:`sharedml.fl.metrics`) are added by secure
   aggregation (encoded for at least :data:`METRIC_BOUND`: they hold row
   counts); the server reads the round's metric and, with ``patience``,
   stops when it has not improved for that many rounds and keeps the best
   ``w`` (without, it keeps the last).
5. At the end the server sends every client the final parameters.

Reveals:
    server: the sum of the survivors' weighted updates and their total row
    count each round (so the global model), the pooled validation sums of
    step 4, who took part and who was excluded and why — never one client's
    update or rows.
    clients: the global model after every round and the final model.
Security model: that of :mod:`sharedml.fl.secagg` (semi-honest server,
fewer than ``threshold`` colluding clients). A client that sends a wrong
but well-formed update is not detected (no robust aggregation). References:
McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017; Li et al., "Federated Optimization in
Heterogeneous Networks" (FedProx), MLSys 2020.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharedml.errors import ChannelError, ConfigError, DataError, ProtocolAbort
from sharedml.fl import metrics as M
from sharedml.fl.dp import CentralGaussianNoise, ClipUpdates, DpConfig
from sharedml.fl.learner import LocalLearner, LocalPlan
from sharedml.fl.quantize import Quantizer
from sharedml.fl.secagg import RoundResult, SecAggClient, SecAggConfig, SecAggServer
from sharedml.fl.sketch import check_features
from sharedml.learn.training import EarlyStopping, learning_rate
from sharedml.session import Session

log = logging.getLogger("sharedml.fl.fedavg")
CTRL, MODEL = "fedavg/ctrl", "fedavg/model"
TRAIN, SIT_OUT, EVALUATE, STOP = 1.0, 0.0, 2.0, -1.0
#: Least bound of the validation sums' encoding (the job's update bound's default).
METRIC_BOUND = float(2**20)
#: metric name -> whether higher is better
METRICS = {"auc": True, "logloss": False, "accuracy": True, "rmse": False, "mae": False, "r2": True}


@dataclass(frozen=True)
class FedAvgParams:
    """Hyper-parameters every role of one federated training agrees on."""

    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    schedule: str = "constant"
    prox_mu: float = 0.0
    client_fraction: float = 1.0
    patience: int = 0
    metric: str = "auc"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1:
            raise ConfigError("rounds, local_epochs and batch_size must be at least 1")
        if not 0 < self.client_fraction <= 1:
            raise ConfigError(f"client_fraction must lie in (0, 1], got {self.client_fraction}")
        if self.prox_mu < 0 or self.learning_rate <= 0:
            raise ConfigError("prox_mu must be >= 0 and learning_rate > 0")
        if self.metric not in METRICS:
            raise ConfigError(
                f"unknown metric {self.metric!r}", remedy=f"use one of {list(METRICS)}"
            )


@dataclass
class FedAvgResult:
    """What the server keeps: the model, the per-round record, the DP account."""

    params: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    best_round: int = -1
    dp: dict[str, float] | None = None


@dataclass(frozen=True)
class FedAvgSetup:
    """What both roles are built from: the model, the hyper-parameters, the secure
    aggregation and, optionally, differential privacy."""

    learner: LocalLearner
    params: FedAvgParams
    secagg: SecAggConfig
    dp: DpConfig | None = None

    @property
    def metric_quantizer(self) -> Quantizer:
        """The encoding of the validation sums (row counts, log-loss sums): the updates'
        bound or :data:`METRIC_BOUND`, whichever is larger — a bound as small as a DP
        clip (which the updates may run on, on Z_2^32) would refuse the counts."""
        return Quantizer.for_sum(max(self.secagg.bound, METRIC_BOUND), len(self.secagg.clients))


class FedAvgServer:
    """The aggregator's side of federated averaging."""

    def __init__(self, session: Session, setup: FedAvgSetup) -> None:
        self.s, self.learner, self.p, self.dp = session, setup.learner, setup.params, setup.dp
        self.roster = list(setup.secagg.clients)
        #: the clients still invited to rounds (one that disconnected is not)
        self.clients = list(self.roster)
        self.metric_sums = SecAggServer(session, setup.secagg)  # metrics: exact, outside DP
        self.metric_q = setup.metric_quantizer
        self.updates: SecAggServer | CentralGaussianNoise = (
            CentralGaussianNoise(self.metric_sums, self.dp) if self.dp else self.metric_sums
        )
        self.threshold = setup.secagg.threshold

    def fit(self, n_features: int) -> FedAvgResult:
        w = self.learner.init_params(n_features, self.p.seed)
        result = FedAvgResult(w)
        stopper = EarlyStopping(self.p.patience, METRICS[self.p.metric])
        sampler = np.random.default_rng(self.p.seed)  # a public draw, not a secret
        try:
            for r in range(self.p.rounds):
                start = time.perf_counter()
                chosen = self._choose(sampler)
                lr = learning_rate(self.p.schedule, self.p.learning_rate, r, self.p.rounds)
                self._tell_all(r, lambda c, chosen=chosen: TRAIN if c in chosen else SIT_OUT, lr, w)
                res = self.updates.aggregate(2 * r, chosen, w.size + (0 if self.dp else 1))
                self._forget(res.out)
                w = w + self._step(res, len(chosen))
                self._tell_all(r, lambda c: EVALUATE, 0.0, w)
                scores, evaluated = self._evaluate(r)
                self._forget(evaluated.out)
                record = _record(r, lr, chosen, res, scores, time.perf_counter() - start)
                record["excluded_from_metrics"] = dict(evaluated.out)
                result.history.append(record)
                improved, stop = stopper.update(scores[self.p.metric], r)
                if improved or not self.p.patience:  # without early stopping: the last model
                    result.params, result.best_round = w.copy(), r
                log.info("round %d: %s", r, {k: scores[k] for k in scores if k != "rows"})
                if stop:
                    break
        finally:
            self.clients = self.roster  # everyone hears that training is over
            self._tell_all(-1, lambda c: STOP, 0.0, result.params)
        if isinstance(self.updates, CentralGaussianNoise):
            result.dp = {
                "epsilon": self.updates.epsilon,
                "delta": self.updates.config.delta,
                "clip": self.updates.config.clip,
                "noise_multiplier": self.updates.config.noise_multiplier,
                "rounds": float(len(self.updates.noise_multipliers)),
            }
        return result

    def _forget(self, out: dict[str, str]) -> None:
        """Invite no more the clients whose connection is gone (each later round would
        otherwise wait for them); those that were only late or excluded stay."""
        for client, reason in out.items():
            if client in self.clients and ("disconnected" in reason or "unreachable" in reason):
                log.warning("client %s is gone (%s): not invited any more", client, reason)
                self.clients.remove(client)

    def _choose(self, sampler: np.random.Generator) -> list[str]:
        m = max(self.threshold, int(np.ceil(self.p.client_fraction * len(self.clients))))
        picked = sampler.choice(len(self.clients), size=min(m, len(self.clients)), replace=False)
        return [self.clients[i] for i in sorted(picked)]

    def _step(self, res: RoundResult, chosen: int) -> np.ndarray:
        if self.dp:
            return res.total / chosen  # a fixed denominator: the sensitivity stays C / m
        count = res.total[-1]
        if not count > 0:
            raise ProtocolAbort("the round's clients reported no rows", step="fedavg")
        return res.total[:-1] / count

    def _evaluate(self, r: int) -> tuple[dict[str, float], RoundResult]:
        """The round's metrics on the pooled validation rows (of the clients that answered)."""
        size = (2 * M.DEFAULT_BINS + 4) if self.learner.task == "classification" else 5
        res = self.metric_sums.aggregate(2 * r + 1, self.clients, size, self.metric_q)
        if self.learner.task == "classification":
            return M.classification_metrics(res.total), res
        return M.regression_metrics(res.total), res

    def _tell_all(self, r: int, flag: Any, lr: float, w: np.ndarray) -> None:
        for c in self.clients:
            try:
                self.s.channel.send(c, CTRL, np.array([r, flag(c), lr]))
                self.s.channel.send(c, MODEL, w)
            except ChannelError as exc:  # gone: its aggregation rounds count it out
                log.warning("round %d: cannot reach client %s: %s", r, c, exc.message)


def _record(
    r: int, lr: float, chosen: list[str], res: RoundResult, scores: dict[str, float], secs: float
) -> dict[str, Any]:
    return {
        "round": r,
        "learning_rate": lr,
        "participants": chosen,
        "survivors": list(res.survivors),
        "excluded": dict(res.out),
        "metrics": scores,
        "seconds": secs,
    }


class FedAvgClient:
    """A data owner's side of federated averaging."""

    def __init__(self, session: Session, setup: FedAvgSetup) -> None:
        self.s, self.learner, self.p, self.dp = session, setup.learner, setup.params, setup.dp
        self.server = setup.secagg.server
        self.metric_sums = SecAggClient(session, setup.secagg)
        self.metric_q = setup.metric_quantizer
        self.updates: SecAggClient | ClipUpdates = (
            ClipUpdates(self.metric_sums, self.dp.clip) if self.dp else self.metric_sums
        )
        self.rounds_in: list[int] = []

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> np.ndarray:
        """Train with the others until the server stops; return the final parameters."""
        X, y = check_features(X, self.s.party), np.asarray(y, dtype=np.float64)
        if y.shape != (X.shape[0],) or not np.isfinite(y).all():
            raise DataError(
                f"{X.shape[0]} rows need as many finite labels, got shape {y.shape}",
                party=self.s.party,
                step="fedavg",
            )
        while True:
            r, flag, lr = (float(v) for v in self.s.channel.recv(self.server, CTRL))
            w = np.asarray(self.s.channel.recv(self.server, MODEL), dtype=np.float64)
            if flag == STOP:
                return w
            if flag == TRAIN:
                self._train(int(r), w, lr, X, y)
            elif flag == EVALUATE:
                self.metric_sums.submit(2 * int(r) + 1, self._sums(w, X_val, y_val),
                                        self.metric_q)

    def _train(self, r: int, w: np.ndarray, lr: float, X: np.ndarray, y: np.ndarray) -> None:
        rng = self.s.rng(f"fedavg/round/{r}")
        with np.errstate(all="ignore"):  # a diverging model abstains below, named
            plan = LocalPlan(self.p.local_epochs, lr, self.p.batch_size, self.p.prox_mu, rng)
            new = self.learner.train(w, X, y, plan)
        delta = new - w
        vector = delta if self.dp else np.append(len(y) * delta, float(len(y)))
        if self.updates.submit(2 * r, vector).included:
            self.rounds_in.append(r)

    def _sums(self, w: np.ndarray, X: np.ndarray | None, y: np.ndarray | None) -> np.ndarray:
        if self.learner.task == "classification":
            if X is None or y is None or not len(y):
                return np.zeros(2 * M.DEFAULT_BINS + 4)
            return M.classification_sums(y, self.learner.predict(w, X))
        if X is None or y is None or not len(y):
            return np.zeros(5)
        return M.regression_sums(y, self.learner.predict(w, X))


__all__ = ["FedAvgClient", "FedAvgParams", "FedAvgResult", "FedAvgServer", "FedAvgSetup"]
