"""A multilayer perceptron as a local learner for federated averaging (PyTorch, ``torch`` extra).

The job describes the network, never supplies code: ``hidden`` layer widths,
an ``activation`` from a fixed list and a ``dropout`` rate (:class:`MlpSpec`).
Parameters travel as one flat float64 vector (torch's
``parameters_to_vector`` order); training runs in float32 as usual.
torch is imported when a learner is built, so :mod:`sharedml.fl` and the
linear path run without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.errors import ConfigError
from sharedml.fl.learner import LocalPlan

if TYPE_CHECKING:
    import torch

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class MlpSpec:
    """The network: ``hidden`` widths, ``activation`` and ``dropout`` after each hidden layer."""

    hidden: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or any(not 1 <= h <= 4096 for h in self.hidden) or len(self.hidden) > 8:
            raise ConfigError(f"hidden must list 1 to 8 widths in [1, 4096], got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}", remedy=f"use one of {ACTIVATIONS}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")

    def build(self, n_features: int, seed: int) -> torch.nn.Sequential:
        """The network, initialised by torch's default scheme under ``seed``."""
        torch = _torch()
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "gelu": torch.nn.GELU}[self.activation]  # fmt: skip
        layers: list[Any] = []
        width = n_features
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for h in self.hidden:
                layers += [torch.nn.Linear(width, h), act()]
                if self.dropout:
                    layers.append(torch.nn.Dropout(self.dropout))
                width = h
            layers.append(torch.nn.Linear(width, 1))
            return torch.nn.Sequential(*layers)


class MlpLearner:
    """An MLP trained locally by mini-batch SGD (with optional FedProx term)."""

    def __init__(self, spec: MlpSpec, task: str = "classification", weight_decay: float = 0.0):
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}", remedy=f"use one of {TASKS}")
        self.spec, self.task, self.weight_decay = spec, task, weight_decay
        self._net: torch.nn.Sequential | None = None
        self._n_features = -1

    def init_params(self, n_features: int, seed: int) -> np.ndarray:
        return _to_numpy(self._network(n_features, seed))

    def predict(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        net = self._loaded(params, X.shape[1])
        net.eval()
        with torch.no_grad():
            out = net(torch.from_numpy(np.asarray(X, dtype=np.float32))).squeeze(1)
            if self.task == "classification":
                out = torch.sigmoid(out)
        return out.double().numpy()

    def train(
        self, params: np.ndarray, X: np.ndarray, y: np.ndarray, plan: LocalPlan
    ) -> np.ndarray:
        torch = _torch()
        net = self._loaded(params, X.shape[1])
        net.train()
        anchor = [p.detach().clone() for p in net.parameters()]
        opt = torch.optim.SGD(net.parameters(), lr=plan.lr, weight_decay=self.weight_decay)
        Xt = torch.from_numpy(np.asarray(X, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
        loss_fn = (
            torch.nn.BCEWithLogitsLoss() if self.task == "classification" else torch.nn.MSELoss()
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(plan.rng.integers(2**62)))  # dropout masks, per round
            for _ in range(plan.epochs):
                order = torch.from_numpy(plan.rng.permutation(len(yt)))
                for start in range(0, len(yt), plan.batch_size):
                    rows = order[start : start + plan.batch_size]
                    opt.zero_grad()
                    loss = loss_fn(net(Xt[rows]).squeeze(1), yt[rows])
                    if plan.prox_mu:
                        loss = loss + plan.prox_mu / 2 * sum(
                            ((p - a) ** 2).sum()
                            for p, a in zip(net.parameters(), anchor, strict=True)
                        )
                    loss.backward()
                    opt.step()
        return _to_numpy(net)

    def _network(self, n_features: int, seed: int = 0) -> torch.nn.Sequential:
        if self._net is None or self._n_features != n_features:
            self._net, self._n_features = self.spec.build(n_features, seed), n_features
        return self._net

    def _loaded(self, params: np.ndarray, n_features: int) -> torch.nn.Sequential:
        torch = _torch()
        net = self._network(n_features)
        size = sum(p.numel() for p in net.parameters())
        if params.size != size:
            raise ConfigError(f"{params.size} parameters for a network of {size}")
        torch.nn.utils.vector_to_parameters(
            torch.from_numpy(params.astype(np.float32)), net.parameters()
        )
        return net


def _to_numpy(net: torch.nn.Sequential) -> np.ndarray:
    torch = _torch()
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().double().numpy().copy()


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "the mlp model needs PyTorch", remedy="pip install 'sharedml[torch]'"
        ) from exc
    return torch
