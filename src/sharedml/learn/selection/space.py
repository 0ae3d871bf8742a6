"""A search space as a job spec declares it, and its Optuna form.

Each parameter is one of::

    learning_rate: {low: 0.01, high: 2.0, log: true}   # a float range
    epochs: {low: 2, high: 8, int: true}                # an integer range
    hidden_layer_sizes: {choices: [[16], [32], [32, 16]]}
    sigmoid: [pwl, pwl4]                                # choices, short form

Choices may be any JSON value (Optuna's own categorical values may not be
lists): they travel to Optuna as their JSON text and come back decoded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sharedml.errors import ConfigError


@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple[Any, ...] | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            picked = trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices])
            return json.loads(picked)
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self.choices is not None else value


def _param(name: str, spec: Any) -> Param:
    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"tune space: {name!r} {why}",
            step="tune",
            remedy="give {choices: [...]} or {low: a, high: b, log: true|false, int: true|false}",
        )

    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise bad("must be a list of choices or a range")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad("needs a non-empty list of choices")
        return Param(name, choices=tuple(choices))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise bad("needs numeric low and high") from None
    log, integer = bool(spec.get("log", False)), bool(spec.get("int", False))
    if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0):
        raise bad(f"has an empty or invalid range [{low}, {high}]")
    if integer and (low != int(low) or high != int(high)):
        raise bad("is an integer range with non-integer bounds")
    return Param(name, low=low, high=high, log=log, integer=integer)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @classmethod
    def parse(cls, spec: Any, first: dict[str, Any] | None = None) -> Space:
        """The declared space; a value of ``first`` (the configuration tried
        first) missing from its parameter's choices joins them (Optuna refuses
        an enqueued value outside a categorical's choices; an out-of-range
        number it takes with a warning)."""
        if not isinstance(spec, dict) or not spec:
            raise ConfigError(
                "tune needs a non-empty space: parameter -> range or choices", step="tune"
            )
        given = first or {}
        params = []
        for key, value in spec.items():
            param = _param(str(key), value)
            missing = param.name in given and given[param.name] not in (param.choices or ())
            if param.choices is not None and missing:
                param = Param(param.name, choices=(*param.choices, given[param.name]))
            params.append(param)
        return cls(tuple(params))

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def encode(self, values: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in self.params}
        return {k: known[k].encode(v) for k, v in values.items() if k in known}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of the grid, in scikit-learn's ``ParameterGrid`` order."""
        from sklearn.model_selection import ParameterGrid

        self.grid()
        return list(ParameterGrid({p.name: list(p.choices or ()) for p in self.params}))

    def grid(self) -> dict[str, list[Any]]:
        """The grid as Optuna's categorical values (every parameter must list its choices)."""
        ranges = [p.name for p in self.params if p.choices is None]
        if ranges:
            raise ConfigError(
                f"a grid search needs choices for every parameter; {ranges} are ranges",
                step="tune",
                remedy="list the values to try, or use sampler: tpe or random",
            )
        return {p.name: [json.dumps(c) for c in p.choices or ()] for p in self.params}
