"""What both vertical MLPs share: hyper-parameter rules (declared once) and
the model file's form of weight shares and plaintext layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.nn._core import OPTIMIZERS, check_adam

#: more hidden layers than this is not a tabular model any more
MAX_LAYERS = 4
MAX_UNITS = 1024


class NetParams:
    """Checks of ``hidden_layer_sizes``, ``optimizer`` and Adam's settings."""

    hidden_layer_sizes: Any
    optimizer: str
    beta1: float
    beta2: float
    adam_epsilon: float

    def _hidden(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        return (sizes,) if isinstance(sizes, int) else tuple(sizes)

    def _check_net_params(self, **layer_lists: tuple[Any, int]) -> None:
        """``layer_lists``: parameter name -> (its value, the least number of layers)."""
        name = type(self).__name__
        for param, (value, least) in layer_lists.items():
            sizes = [value] if isinstance(value, int) else value
            if not (
                isinstance(sizes, list | tuple)
                and least <= len(sizes) <= MAX_LAYERS
                and all(
                    isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_UNITS
                    for s in sizes
                )
            ):
                raise ConfigError(
                    f"{name}: {param} must list {least} to {MAX_LAYERS} integers in [1, {MAX_UNITS}], "
                    f"got {value!r}",
                    step="fit",
                )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{name}: optimizer must be one of {OPTIMIZERS}", step="fit")
        problem = check_adam(self.beta1, self.beta2, self.adam_epsilon)
        if self.optimizer == "adam" and problem:
            raise ConfigError(f"{name}: {problem}", step="fit")


def shares_to_json(shares: list[np.ndarray] | None) -> list[dict[str, Any]] | None:
    if shares is None:
        return None
    return [{"shape": list(s.shape), "words": [int(v) for v in s.ravel()]} for s in shares]


def shares_from_json(doc: list[dict[str, Any]] | None) -> list[np.ndarray] | None:
    if doc is None:
        return None
    return [np.array(s["words"], dtype=np.uint64).reshape(s["shape"]) for s in doc]


def arrays_to_json(arrays: list[np.ndarray] | None) -> list[Any] | None:
    return None if arrays is None else [a.tolist() for a in arrays]


def arrays_from_json(doc: list[Any] | None) -> list[np.ndarray] | None:
    return None if doc is None else [np.asarray(a, dtype=np.float64) for a in doc]
