"""Mini-batch logistic regression over a stream of blocks (pure numpy; no I/O, no keys).

For data that never fits in memory at once: ``blocks()`` is called once per
pass and yields ``(X, y)`` blocks in the same order every time.

1. Pass 0: column sums and sums of squares give each column's mean and
   (population) standard deviation; constant columns get scale 1.
2. Epochs 1..E: for each block in order, standardise it, ``p = sigmoid(Xw + b)``
   and take one gradient step with L2 on ``w``:
   ``w -= lr_t (X^T (p - y) / n_b + l2 w)``, ``b -= lr_t mean(p - y)``, with the
   learning rate of :func:`sharedml.learn.linear._core.learning_rate`.

Blocks are visited in id order every epoch (a shuffle would need random
access to data that is not in memory). The same updates on the same blocks
in memory give the same model up to float summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from sharedml.errors import DataError
from sharedml.learn.linear._core import learning_rate, sigmoid

Blocks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class StreamedLinearModel:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    rows: int
    steps: int

    def decision(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return out


def moments(blocks: Blocks) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(rows, blocks, mean, std) in one pass."""
    n = count = 0
    total = squares = None
    for x, _y in blocks():
        total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
        squares = (x * x).sum(axis=0) if squares is None else squares + (x * x).sum(axis=0)
        n += len(x)
        count += 1
    if n == 0 or total is None or squares is None:
        raise DataError("no rows to train on after the join", step="train")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return n, count, mean, np.where(std > 0, std, 1.0)


def fit_logistic(blocks: Blocks, *, epochs: int, eta0: float, schedule: str, l2: float) -> StreamedLinearModel:
    """Steps 1-2 above."""
    n, count, mean, scale = moments(blocks)
    w, b = np.zeros(len(mean)), 0.0
    steps, t = epochs * count, 0
    for _ in range(epochs):
        for x, y in blocks():
            z = (x - mean) / scale
            resid = sigmoid(z @ w + b) - y
            lr = learning_rate(schedule, eta0, t, steps)
            w -= lr * (z.T @ resid / len(y) + l2 * w)
            b -= lr * float(resid.mean())
            t += 1
    return StreamedLinearModel(mean, scale, w, b, n, steps)
