"""The hyper-parameter rules both vertical MLPs share, declared once."""

from __future__ import annotations

from typing import Any

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

    def _check_net_params(self) -> None:
        name = type(self).__name__
        try:
            sizes = self._hidden()
        except TypeError:
            sizes = ()
        if not (
            1 <= len(sizes) <= MAX_LAYERS
            and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_UNITS for s in sizes)
        ):
            raise ConfigError(
                f"{name}: hidden_layer_sizes must list 1 to {MAX_LAYERS} integers in [1, {MAX_UNITS}], "
                f"got {self.hidden_layer_sizes!r}",
                step="fit",
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{name}: optimizer must be one of {OPTIMIZERS}", step="fit")
        problem = check_adam(self.beta1, self.beta2, self.adam_epsilon)
        if self.optimizer == "adam" and problem:
            raise ConfigError(f"{name}: {problem}", step="fit")
