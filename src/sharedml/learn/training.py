"""Training-loop pieces any learner may use (pure numpy): the logistic link,
learning-rate schedules and early stopping on a validation metric.

A public seam: the vertical learners (:mod:`sharedml.learn.linear`,
:mod:`sharedml.learn.nn`), the enclave's SGD and the federated learners
(:mod:`sharedml.fl`) all take these from here, so none reaches into another
package's private modules. No transport, config or logging (ARCHITECTURE
layering rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import ConfigError

SCHEDULES = ("constant", "invscaling", "cosine")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, written through ``tanh`` so it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def learning_rate(schedule: str, eta0: float, step: int, total: int, decay: float = 10.0) -> float:
    """The learning rate at ``step`` of ``total`` optimisation steps."""
    frac = step / max(total, 1)
    if schedule == "constant":
        return eta0
    if schedule == "invscaling":
        return eta0 / (1.0 + decay * frac)
    if schedule == "cosine":
        return eta0 * 0.5 * (1.0 + np.cos(np.pi * frac))
    raise ConfigError(
        f"unknown learning-rate schedule {schedule!r}", remedy=f"use one of {SCHEDULES}"
    )


@dataclass
class EarlyStopping:
    """Tracks a validation metric; ``update`` says whether to stop."""

    patience: int
    higher_is_better: bool
    tol: float = 1e-4
    best: float | None = None
    best_epoch: int = -1
    history: list[float] = field(default_factory=list)

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Record ``value``; return (improved, stop)."""
        self.history.append(value)
        sign = 1.0 if self.higher_is_better else -1.0
        improved = self.best is None or sign * (value - self.best) > self.tol
        if improved:
            self.best, self.best_epoch = value, epoch
        stop = self.patience > 0 and epoch - self.best_epoch >= self.patience
        return improved, stop
