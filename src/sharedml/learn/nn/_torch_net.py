"""A party's own bottom net in torch (``bottom_backend: torch``), when torch is installed.

:class:`TorchDense` is :class:`~sharedml.learn.nn._core.Dense` with torch's
autograd doing the forward and backward passes: same layers ``[W, b]``, same
activation, same batch-summed gradients, so the numpy optimisers
(:class:`~sharedml.learn.nn._core.SGD`, :class:`~sharedml.learn.nn._core.Adam`)
update it unchanged — its ``params`` are numpy views of the torch tensors
(float64, shared memory). Only the bottom nets run here: what crosses the
wire (the embedding's shares, the gradient at it) is the same as with numpy.

torch is imported inside this module only, and this module only when a split
MLP asks for it (the linear learners never import torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.errors import ConfigError

BACKENDS = ("auto", "numpy", "torch")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """``numpy`` or ``torch`` for the ``bottom_backend`` parameter."""
    if name == "auto":
        return "torch" if torch_available() else "numpy"
    if name == "torch" and not torch_available():
        raise ConfigError(
            "bottom_backend: torch, but torch is not installed at this party",
            step="fit",
            remedy="pip install 'sharedml[torch]', or use bottom_backend: numpy (same results)",
        )
    return name


def _activation(name: str) -> Any:
    import torch

    return {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "logistic": torch.sigmoid,
        "identity": lambda a: a,
    }[name]


class TorchDense:
    """Dense layers ``[W, b]`` (see :class:`~sharedml.learn.nn._core.Dense`) on torch."""

    def __init__(self, layers: list[list[np.ndarray]], activation: str = "relu") -> None:
        import torch

        self.activation = activation
        self.linear_out = False
        self._tensors = [
            [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64)) for p in layer]
            for layer in layers
        ]
        self._inputs: Any = None
        self._out: Any = None

    @property
    def layers(self) -> list[list[np.ndarray]]:
        return [[t.numpy() for t in layer] for layer in self._tensors]

    @property
    def params(self) -> list[np.ndarray]:
        """Numpy views of the weights: in-place updates change the torch tensors."""
        return [t.numpy() for layer in self._tensors for t in layer]

    @property
    def decay_mask(self) -> list[np.ndarray]:
        return [np.full(p.shape, float(i % 2 == 0)) for i, p in enumerate(self.params)]

    def forward(self, X: np.ndarray) -> np.ndarray:
        import torch

        act = _activation(self.activation)
        # leaves that share the weights' storage: the weights themselves never
        # require grad, so their numpy views stay writable for the optimiser
        leaves = [[t.detach().requires_grad_(True) for t in layer] for layer in self._tensors]
        self._inputs = [t for layer in leaves for t in layer]
        h = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
        for W, b in leaves:
            h = act(h @ W + b)
        self._out = h
        return h.detach().numpy().copy()

    def backward(self, grad_out: np.ndarray) -> tuple[list[np.ndarray], None]:
        """Batch-summed gradients of every parameter for ``grad_out`` at the
        output of the last :meth:`forward` (no gradient at the input: a bottom
        net's input is its party's data)."""
        import torch

        grads = torch.autograd.grad(
            self._out, self._inputs, grad_outputs=torch.from_numpy(np.asarray(grad_out))
        )
        self._out = self._inputs = None
        return [g.numpy() for g in grads], None


def bottom_net(backend: str, layers: list[list[np.ndarray]], activation: str) -> Any:
    """A party's bottom net on ``backend`` (``auto``: torch when installed); a
    net without layers (the embedding is the columns) is numpy's, computing nothing."""
    from sharedml.learn.nn._core import Dense

    if layers and resolve_backend(backend) == "torch":
        return TorchDense(layers, activation)
    return Dense(layers, activation)
