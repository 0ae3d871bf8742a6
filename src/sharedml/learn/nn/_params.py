"""What both vertical MLPs share: their hyper-parameters, declared once
(:mod:`sharedml.learn.params`), the layer-count rule, and the model file's
form of weight shares and plaintext layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.linear._sgd import SGD_PARAMS
from sharedml.learn.nn._core import OPTIMIZERS, check_adam
from sharedml.learn.params import Param, with_defaults

#: more hidden layers than this is not a tabular model any more
MAX_LAYERS = 4
MAX_UNITS = 1024

#: SGD's parameters with the MLPs' defaults
MLP_SGD_PARAMS = with_defaults(
    SGD_PARAMS, epochs=10, batch_size=256, learning_rate=0.1, lr_schedule="constant"
)
#: the optimiser's parameters (both protocols)
OPTIMIZER_PARAMS: dict[str, Param] = {
    "optimizer": Param(
        str, "sgd", "sgd, or adam (division and square root on shares)", choices=OPTIMIZERS
    ),
    "beta1": Param(float, 0.9, "adam: decay of the first moment", low=0, high=1, open_high=True),
    "beta2": Param(
        float,
        0.999,
        "adam: decay of the second moment (at most 0.999 on shares)",
        low=0,
        high=0.999,
    ),
    "adam_epsilon": Param(
        float, 1e-3, "adam: ε of the denominator (≥ 1.25e-4 on shares)", low=2.0**-13, high=1.0
    ),
}


#: classes of a classifier's label (public, as every hyper-parameter)
CLASSES_PARAM = Param(
    int,
    2,
    "classes of the label (0 .. n_classes - 1); above 2 the output is a softmax, "
    "trained with cross-entropy: predict writes one score_<class> column per class, "
    "evaluate reports accuracy, macro one-vs-rest AUC and log loss (online serving: "
    "refused, score in a batch job)",
    low=2,
    high=MAX_UNITS,
)


def sizes_param(default: tuple[int, ...], what: str) -> Param:
    return Param(list, default, what, low=1, high=MAX_UNITS)


def activation_param(choices: tuple[str, ...]) -> Param:
    return Param(str, "relu", "hidden activation", choices=choices)


class NetParams:
    """The rules a declaration cannot say: layer counts, Adam's combined bounds."""

    optimizer: str
    beta1: float
    beta2: float
    adam_epsilon: float

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
                    f"{name}: {param} must list {least} to {MAX_LAYERS} integers in "
                    f"[1, {MAX_UNITS}], got {value!r}",
                    step="fit",
                )
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
