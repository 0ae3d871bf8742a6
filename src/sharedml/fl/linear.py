"""Logistic and linear regression as local learners for federated averaging (numpy only).

Parameters are one flat float64 vector ``[w_1 .. w_d, b]``. A local round is
mini-batch SGD on the party's own rows with an optional FedProx proximal
term (Li et al., MLSys 2020): the gradient of ``f(w) + μ/2 ‖w − w_global‖²``.
This module must not import torch (the linear path runs without the extra).
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ConfigError
from sharedml.fl.learner import LocalPlan
from sharedml.learn.training import sigmoid

TASKS = ("classification", "regression")


class LinearLearner:
    """Logistic (``classification``) or least-squares (``regression``) model with L2 ``l2``."""

    def __init__(self, task: str = "classification", l2: float = 0.0) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}", remedy=f"use one of {TASKS}")
        if l2 < 0:
            raise ConfigError(f"l2 must be non-negative, got {l2}")
        self.task = task
        self.l2 = l2

    def init_params(self, n_features: int, seed: int) -> np.ndarray:
        """Zeros: the objective is convex, a random start buys nothing."""
        del seed
        return np.zeros(n_features + 1)

    def predict(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values (regression)."""
        z = np.asarray(X, dtype=np.float64) @ params[:-1] + params[-1]
        return sigmoid(z) if self.task == "classification" else z

    def train(
        self, params: np.ndarray, X: np.ndarray, y: np.ndarray, plan: LocalPlan
    ) -> np.ndarray:
        """``plan.epochs`` passes of mini-batch SGD from ``params``; returns the new parameters."""
        anchor = params.copy()
        w = params.copy()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        for _ in range(plan.epochs):
            order = plan.rng.permutation(len(y))
            for start in range(0, len(y), plan.batch_size):
                rows = order[start : start + plan.batch_size]
                resid = self.predict(w, X[rows]) - y[rows]
                grad = np.empty_like(w)
                grad[:-1] = X[rows].T @ resid / len(rows) + self.l2 * w[:-1]
                grad[-1] = resid.mean()
                if plan.prox_mu:
                    grad += plan.prox_mu * (w - anchor)
                w -= plan.lr * grad
        return w
