"""Pure numpy pieces of the linear learners (STYLE.md 5): no transport, no config.

* the sigmoid approximations in plaintext (their tables and MPC evaluation live
  in :mod:`sharedml.mpc.nonlinear`; this is their oracle);
* the batch plan (learning-rate schedules and early stopping are in
  :mod:`sharedml.learn.training`, re-exported here);
* per-party standardisation (each party scales only its own columns);
* :func:`plaintext_sgd`, the same mini-batch SGD on joined plaintext data: the
  reference the tests and ``bench/vertical.py`` compare the shared models with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.training import SCHEDULES as SCHEDULES  # re-exported for the learners
from sharedml.learn.training import EarlyStopping as EarlyStopping
from sharedml.learn.training import learning_rate as learning_rate
from sharedml.learn.training import sigmoid as exact_sigmoid
from sharedml.mpc.nonlinear import PIECEWISE, SIGMOID_APPROX, piecewise_terms

SIGMOID_CHOICES = (*SIGMOID_APPROX, *PIECEWISE, "exact")


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a 2-D array of logits (the row maximum subtracted first)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray, approx: str = "exact") -> np.ndarray:
    """``sigmoid(z)`` or the named approximation of it."""
    if approx == "exact":
        return exact_sigmoid(z)
    if approx in PIECEWISE:
        base, t, d = piecewise_terms(PIECEWISE[approx])
        zz = np.asarray(z, dtype=np.float64)
        return base + np.maximum(zz[..., None] - t, 0.0) @ d
    if approx not in SIGMOID_APPROX:
        raise ConfigError(
            f"unknown sigmoid approximation {approx!r}", remedy=f"use one of {SIGMOID_CHOICES}"
        )
    bound, coefs = SIGMOID_APPROX[approx]
    x = z if bound is None else np.clip(z, -bound, bound)
    out = np.full_like(x, 0.5, dtype=np.float64)
    power = x.astype(np.float64)
    sq = power * power
    for c in coefs:
        out = out + c * power
        power = power * sq
    return out


def batch_plan(n_rows: int, batch_size: int, seed: bytes, epoch: int) -> list[np.ndarray]:
    """Row indices of each batch of one epoch: a shuffle every party derives
    from the same public seed, cut into ``n_rows // batch_size`` near-equal
    batches (so none is smaller than ``batch_size`` unless all rows are fewer)."""
    rng = np.random.default_rng(np.frombuffer(seed + epoch.to_bytes(4, "little"), dtype=np.uint32))
    order = rng.permutation(n_rows)
    n_batches = max(1, n_rows // batch_size)
    return np.array_split(order, n_batches)


SCALINGS = ("standard", "whiten", "none")


@dataclass(frozen=True)
class Standardizer:
    """An affine map ``(X - mean) @ matrix`` of one party's own block, fitted on
    its own rows only (nothing leaves the party).

    ``standard`` divides each column by its standard deviation; ``whiten``
    decorrelates the party's columns (PCA whitening; eigenvalues below 1e-9 of
    the largest are floored), which makes SGD converge on collinear blocks
    (e.g. motor currents and torque) in a few epochs; ``none`` only centres
    nothing and scales nothing.
    """

    mean: np.ndarray
    matrix: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, mode: str = "standard") -> Standardizer:
        d = X.shape[1]
        if mode == "none":
            return cls(np.zeros(d), np.eye(d))
        mean = X.mean(axis=0)
        if mode == "standard":
            scale = X.std(axis=0)
            return cls(mean, np.diag(1.0 / np.where(scale > 0, scale, 1.0)))
        if mode == "whiten":
            cov = np.atleast_2d(np.cov(X - mean, rowvar=False, bias=True))
            values, vectors = np.linalg.eigh(cov)
            floor = max(float(values.max()), 1e-300) * 1e-9
            return cls(mean, vectors / np.sqrt(np.maximum(values, floor)))
        raise ConfigError(f"unknown scaling {mode!r}", remedy=f"use one of {SCALINGS}")

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) @ self.matrix


def plaintext_sgd(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    epochs: int,
    batch_size: int,
    eta0: float,
    schedule: str,
    l2: float,
    sigmoid_approx: str = "exact",
    seed: bytes = b"\0" * 16,
    group: int = 1,
) -> tuple[np.ndarray, float]:
    """Mini-batch SGD with L2 on joined, already standardised data: (coef, intercept).

    With ``group`` > 1 the batches of an epoch go in groups of that many:
    every batch of a group is evaluated at the group's starting weights, and
    the group's steps are summed (:func:`grouped_batches`).
    """
    n, d = X.shape
    w, b = np.zeros(d), 0.0
    steps = epochs * len(batch_plan(n, batch_size, seed, 0))
    t = 0
    for epoch in range(epochs):
        for members in grouped_batches(batch_plan(n, batch_size, seed, epoch), group):
            step_w, step_b, decay = np.zeros(d), 0.0, 1.0
            for idx in members:
                z = X[idx] @ w + b
                p = sigmoid(z, sigmoid_approx) if task == "classification" else z
                resid = p - y[idx]
                lr = learning_rate(schedule, eta0, t, steps)
                step_w += lr * X[idx].T @ resid / len(idx)
                step_b += lr * float(resid.mean())
                decay *= 1.0 - lr * l2
                t += 1
            w = w * decay - step_w
            b -= step_b
    return w, b


def grouped_batches(batches: list[np.ndarray], group: int) -> list[list[np.ndarray]]:
    """An epoch's batches in consecutive groups of ``group`` (the last may be smaller).

    A group's batches are evaluated at the same weights and its steps summed:
    ``w <- w · Π(1 - lr_i·l2) - Σ lr_i·g_i``, each ``g_i`` a batch's mean
    gradient at the group's starting ``w``. One group is one plain SGD step
    per batch while ``group`` is 1; with more, the protocol of a group runs
    its batches side by side (SS-LR: the rounds of one).
    """
    return [batches[i : i + group] for i in range(0, len(batches), group)]
