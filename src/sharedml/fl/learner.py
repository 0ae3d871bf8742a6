"""What FedAvg needs of a model: a flat parameter vector, local training, prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class LocalPlan:
    """One round of local training: ``epochs`` of mini-batch SGD at ``lr``, with the
    FedProx term ``prox_mu/2 ‖w − w_global‖²`` when ``prox_mu > 0``; ``rng`` orders
    the batches (a simulation generator, not a secret)."""

    epochs: int
    lr: float
    batch_size: int
    prox_mu: float
    rng: np.random.Generator


class LocalLearner(Protocol):
    """A model whose parameters are one flat float64 vector."""

    task: str

    def init_params(self, n_features: int, seed: int) -> np.ndarray: ...

    def predict(self, params: np.ndarray, X: np.ndarray) -> np.ndarray: ...

    def train(
        self, params: np.ndarray, X: np.ndarray, y: np.ndarray, plan: LocalPlan
    ) -> np.ndarray: ...
