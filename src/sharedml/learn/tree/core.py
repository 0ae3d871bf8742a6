"""The math of gradient-boosted trees on histograms (pure numpy, no I/O).

Losses give per-row gradients and hessians; a party's histogram is the
per-(feature, bin) sum of them; the split gain and leaf weight follow
XGBoost (Chen & Guestrin, KDD 2016, eqs. 5-7)::

    w*   = -G / (H + lambda)
    gain = 1/2 [G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda)] - gamma
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logistic_grad_hess(y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian of the log-loss with respect to the margin."""
    p = sigmoid(margin)
    return p - y, np.maximum(p * (1.0 - p), 1e-16)


def squared_grad_hess(y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian of ``(margin - y)^2 / 2``."""
    return margin - y, np.ones_like(margin)


def bin_offsets(n_bins: np.ndarray) -> np.ndarray:
    """Start of each feature's bins in a flat histogram."""
    return np.concatenate([[0], np.cumsum(n_bins)[:-1]]).astype(np.int64)


def histogram(
    bins: np.ndarray, offsets: np.ndarray, total: int, g: np.ndarray, h: np.ndarray
) -> np.ndarray:
    """Flat histogram of shape ``(total, 2)``: per (feature, bin), sums of g and h.

    ``bins`` holds the node's rows only, shape ``(m, F)``; ``g``/``h`` shape ``(m,)``.
    """
    flat = (bins + offsets[None, :]).ravel()
    F = bins.shape[1]
    out = np.empty((total, 2))
    out[:, 0] = np.bincount(flat, weights=np.repeat(g, F), minlength=total)
    out[:, 1] = np.bincount(flat, weights=np.repeat(h, F), minlength=total)
    return out


@dataclass(frozen=True)
class SplitParams:
    reg_lambda: float
    gamma: float
    min_child_weight: float


@dataclass(frozen=True)
class SplitCandidate:
    """The best split of one node within one party's features."""

    gain: float
    feature: int
    bin: int


def leaf_weight(G: float, H: float, reg_lambda: float) -> float:
    return -G / (H + reg_lambda)


def best_split(
    hist: np.ndarray,
    n_bins: np.ndarray,
    params: SplitParams,
    feature_mask: np.ndarray | None = None,
) -> SplitCandidate | None:
    """Best "left if bin <= b" split over a party's flat histogram, or ``None``.

    ``hist`` has shape ``(sum(n_bins), 2)``; the node's totals are the sums of
    any one feature's bins. Splits leaving either child with hessian below
    ``min_child_weight`` or with gain <= 0 are rejected.
    """
    if len(n_bins) == 0:
        return None
    offsets = bin_offsets(n_bins)
    prefix = np.vstack([np.zeros((1, 2)), np.cumsum(hist, axis=0)])
    left = prefix[1:] - np.repeat(prefix[offsets], n_bins, axis=0)
    feat = np.repeat(np.arange(len(n_bins)), n_bins)
    G, H = hist[: n_bins[0], 0].sum(), hist[: n_bins[0], 1].sum()
    GL, HL = left[:, 0], left[:, 1]
    GR, HR = G - GL, H - HL
    lam = params.reg_lambda
    gain = 0.5 * (GL**2 / (HL + lam) + GR**2 / (HR + lam) - G**2 / (H + lam)) - params.gamma
    last_bin = np.concatenate([offsets[1:], [len(hist)]]) - 1
    valid = (params.min_child_weight <= HL) & (params.min_child_weight <= HR)
    valid[last_bin] = False
    if feature_mask is not None:
        valid &= feature_mask[feat]
    gain = np.where(valid, gain, -np.inf)
    k = int(np.argmax(gain))
    if not gain[k] > 0:
        return None
    f = int(feat[k])
    return SplitCandidate(float(gain[k]), f, int(k - offsets[f]))
