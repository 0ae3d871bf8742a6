"""Pure numpy pieces of the neural networks (STYLE.md 5): no transport, no MPC.

* :func:`init_layers` — Glorot-uniform weights drawn from an AES-CTR stream
  (a public seed for the secret-shared network, whose start carries no data;
  a party's own secret seed for the parts of a split network it keeps);
* :class:`Dense` — a stack of dense layers (forward, backward) for the
  parties' own nets in split learning and for the plaintext oracle;
* :class:`SGD` and :class:`Adam` — the update rules exactly as the MPC
  versions compute them (see the constants below for Adam's bounds);
* :func:`plaintext_mlp` — the same mini-batch training on joined plaintext
  data: the reference the tests and ``bench/nn.py`` compare with.

Gradients are handed to the optimisers as *batch sums* (the MPC products sum
over the batch; the division by the batch size is folded into the update).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sharedml.crypto.prg import Prg, derive_key
from sharedml.errors import ConfigError
from sharedml.learn.linear._core import batch_plan, learning_rate, sigmoid, softmax

#: hidden activations of the parties' own (plaintext) nets; the secret-shared
#: network computes ``relu`` only (one comparison per element)
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
OPTIMIZERS = ("sgd", "adam")
#: Adam in MPC: the mean gradient is clipped to ±GRAD_CLIP per element, and the
#: denominator is ε·√u with u = 1 + v̂/ε² capped at U_MAX (so √v̂ is exact up to
#: 1024·ε; beyond, the step shrinks no further, like SGD with lr / (1024 ε)).
GRAD_CLIP = 4.0
U_MAX = float(4**10)


def unit_uniform(words: np.ndarray) -> np.ndarray:
    """Floats uniform in [0, 1) from uniform 64-bit words (53 bits each)."""
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def init_layers(seed: bytes, label: str, sizes: Sequence[int]) -> list[list[np.ndarray]]:
    """``[W, b]`` per layer for widths ``sizes`` (inputs first), uniform in
    ±√(6 / (fan_in + fan_out)) as scikit-learn's MLP, from the AES-CTR stream
    keyed by ``seed`` (≥ 128 bits) and ``label``."""
    prg = Prg(derive_key(seed, f"sharedml.nn/init/{label}"))
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        u = unit_uniform(prg.uint64(i, (fan_in + 1, fan_out)))
        wb = (2.0 * u - 1.0) * bound
        layers.append([wb[:-1].copy(), wb[-1].copy()])
    return layers


def activate(name: str, a: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "tanh":
        return np.tanh(a)
    if name == "logistic":
        return sigmoid(a)
    if name == "identity":
        return a
    raise ConfigError(f"unknown activation {name!r}", remedy=f"use one of {ACTIVATIONS}")


def activation_grad(name: str, a: np.ndarray, h: np.ndarray) -> np.ndarray:
    """d activation / d a, from the pre-activation ``a`` and the output ``h``."""
    if name == "relu":
        return (a > 0).astype(np.float64)
    if name == "tanh":
        return 1.0 - h * h
    if name == "logistic":
        return h * (1.0 - h)
    return np.ones_like(a)


@dataclass
class Dense:
    """Dense layers ``[W, b]`` with ``activation`` after each, except after the
    last one when ``linear_out`` (plaintext; one party's own net)."""

    layers: list[list[np.ndarray]]
    activation: str = "relu"
    linear_out: bool = False
    _cache: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list, repr=False
    )

    @property
    def params(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer]

    @property
    def decay_mask(self) -> list[np.ndarray]:
        """1 where weight decay applies (weights), 0 where not (biases)."""
        return [np.full(p.shape, float(i % 2 == 0)) for i, p in enumerate(self.params)]

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._cache = []
        h = X
        for i, (W, b) in enumerate(self.layers):
            a = h @ W + b
            last = i == len(self.layers) - 1
            out = a if (last and self.linear_out) else activate(self.activation, a)
            self._cache.append((h, a, out))
            h = out
        return h

    def backward(self, grad_out: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Batch-summed gradients of every parameter (order of :attr:`params`)
        and the gradient at the input, for ``grad_out`` at the output of the
        last :meth:`forward`."""
        grads: list[np.ndarray] = []
        d = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            h, a, out = self._cache[i]
            last = i == len(self.layers) - 1
            if not (last and self.linear_out):
                d = d * activation_grad(self.activation, a, out)
            grads[:0] = [h.T @ d, d.sum(axis=0)]
            d = d @ self.layers[i][0].T
        return grads, d


class SGD:
    """``w ← w (1 - lr·l2·mask) - (lr / n) g`` (``g`` a batch sum)."""

    def step(
        self,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        masks: list[np.ndarray],
        lr: float,
        n: int,
        l2: float,
    ) -> None:
        for p, g, m in zip(params, grads, masks, strict=True):
            p *= 1.0 - lr * l2 * m
            p -= (lr / n) * g


class Adam:
    """Adam with decoupled weight decay (AdamW) and the MPC version's bounds:
    ``g = clip(sum / n, ±GRAD_CLIP)``; ``m, v`` as Kingma & Ba;
    ``w ← w (1 - lr·l2·mask) - lr · m̂ / (ε √u)``, ``u = min(1 + v̂/ε², U_MAX)``."""

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-3) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def step(
        self,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        masks: list[np.ndarray],
        lr: float,
        n: int,
        l2: float,
    ) -> None:
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        b1, b2, eps = self.beta1, self.beta2, self.eps
        for p, g_sum, mask, m, v in zip(params, grads, masks, self.m, self.v, strict=True):
            g = np.clip(g_sum / n, -GRAD_CLIP, GRAD_CLIP)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            u = np.minimum(1.0 + v / (eps * eps * (1 - b2**self.t)), U_MAX)
            p *= 1.0 - lr * l2 * mask
            p -= lr / (1 - b1**self.t) * m / (eps * np.sqrt(u))


def make_optimizer(name: str, beta1: float, beta2: float, eps: float) -> SGD | Adam:
    if name == "sgd":
        return SGD()
    if name == "adam":
        return Adam(beta1, beta2, eps)
    raise ConfigError(f"unknown optimizer {name!r}", remedy=f"use one of {OPTIMIZERS}")


def check_adam(beta1: float, beta2: float, eps: float) -> str | None:
    """Why these Adam settings fall outside the MPC version's bounds, or None."""
    if not (0 <= beta1 < 1 and 0 <= beta2 <= 0.999):
        return (
            "adam betas must lie in [0, 1), beta2 at most 0.999 (the second moment's range in MPC)"
        )
    if not 2.0**-13 <= eps <= 1.0:
        return "adam_epsilon must lie in [1.25e-4, 1] (GRAD_CLIP / ε must stay below 2^15 in MPC)"
    return None


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """Rows of ``classes`` zeros with a one at each label's index."""
    return (np.asarray(y).reshape(-1, 1) == np.arange(classes)).astype(np.float64)


def output_error(z: np.ndarray, y: np.ndarray, task: str, approx: str) -> np.ndarray:
    """d loss / d z for a batch: ``softmax(z) - onehot(y)`` (cross-entropy, one
    logit per class, when ``z`` has several columns), ``sigmoid~(z) - y``
    (cross-entropy on the approximated sigmoid) or ``z - y`` (squared error)."""
    if task == "classification" and z.ndim == 2 and z.shape[1] > 1:
        return softmax(z) - one_hot(y, z.shape[1])
    p = sigmoid(z, approx) if task == "classification" else z
    return p - y.reshape(p.shape)


def out_units(task: str, classes: int) -> int:
    """Units of a network's output layer: one logit per class above two classes."""
    return classes if task == "classification" and classes > 2 else 1


@dataclass
class MLPConfig:
    """The training settings :func:`plaintext_mlp` shares with the MPC learners."""

    task: str = "classification"
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 0.1
    lr_schedule: str = "constant"
    l2: float = 0.0
    optimizer: str = "sgd"
    beta1: float = 0.9
    beta2: float = 0.999
    adam_epsilon: float = 1e-3
    sigmoid: str = "pwl"
    seed: bytes = b"\0" * 16


def plaintext_mlp(X: np.ndarray, y: np.ndarray, net: Dense, cfg: MLPConfig) -> Dense:
    """Train ``net`` (its last layer linear: one output, or one per class) on joined plaintext
    ``X, y`` with the batches, schedule and update rules of the MPC learners."""
    opt = make_optimizer(cfg.optimizer, cfg.beta1, cfg.beta2, cfg.adam_epsilon)
    n = X.shape[0]
    total = cfg.epochs * len(batch_plan(n, cfg.batch_size, cfg.seed, 0))
    step = 0
    for epoch in range(cfg.epochs):
        for idx in batch_plan(n, cfg.batch_size, cfg.seed, epoch):
            z = net.forward(X[idx])
            grads, _ = net.backward(output_error(z, y[idx], cfg.task, cfg.sigmoid))
            lr = learning_rate(cfg.lr_schedule, cfg.learning_rate, step, total)
            opt.step(net.params, grads, net.decay_mask, lr, len(idx), cfg.l2)
            step += 1
    return net
