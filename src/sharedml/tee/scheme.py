"""What the TEE scheme runs: every step of the component registry, supported or refused.

A ``scheme: tee`` job spec names the same steps, with the same parameter
schemas, as an MPC job (:mod:`sharedml.components`); inside the enclave they
run on the joined plaintext (:mod:`sharedml.tee.enclave.steps`). This table
is the one place that says, per step (and per model for ``train``), which
parameters the enclave honours. :func:`check_steps` refuses, when the spec is
loaded and before any enclave starts, a step the enclave does not run and any
parameter set in the spec that it would otherwise ignore (``protocol``,
``provider``, ``key_bits``, a horizontal ``layout``, PSI's options ...) — with
the reason it does not apply. The enclave checks the same table again.

Each step is also a *use* of the providers' data, which every owner's signed
policy must allow (:func:`use`): the component's name, or for ``train`` the
model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sharedml.errors import ConfigError

_PLAIN = "the enclave computes on the joined plaintext, so there is no protocol, provider or key to choose"
_RELEASE = "what leaves the enclave is decided by the owners' signed release policy, not by the spec"
_SGD = frozenset({"epochs", "batch_size", "learning_rate", "lr_schedule", "l2"})


@dataclass(frozen=True)
class Rule:
    """How the enclave runs one step: the parameters it honours, the values a
    parameter may only have, and why the rest do not apply (``refused``: the whole step)."""

    honoured: frozenset[str] = frozenset()
    fixed: dict[str, Any] = field(default_factory=dict)
    why: str = _PLAIN
    refused: str | None = None


_VERTICAL = {"layout": "vertical"}
STEPS: dict[str, Rule] = {
    "psi": Rule(frozenset({"key"}), why="the enclave joins the uploads on the id column exactly; PSI's "
                "protocol, receivers and key normalisation do not apply"),
    "split": Rule(frozenset({"test_size", "seed", "stratify"}), _VERTICAL),
    "fill": Rule(frozenset({"strategy", "value"}), _VERTICAL),
    "scale": Rule(frozenset({"method"}), _VERTICAL),
    "onehot": Rule(frozenset({"columns", "max_categories", "categories", "unknown"}), _VERTICAL),
    "binning": Rule(frozenset({"n_bins", "method", "columns"})),
    "woe": Rule(frozenset({"n_bins", "method"}), why=f"{_PLAIN}; {_RELEASE}"),
    "correlation": Rule(frozenset({"columns"}), why=f"{_PLAIN}; {_RELEASE}"),
    "train": Rule(),  # per model: MODELS
    "predict": Rule(frozenset({"on", "model", "fingerprints"})),  # model: a TEE-trained version
    "evaluate": Rule(frozenset({"metrics", "on"})),
    "align": Rule(refused="the enclave joins the uploads on the id column itself; use psi (an inner join "
                  "inside, with no PSI protocol)"),
    "describe": Rule(refused="describe's per-party summaries are not run inside the enclave yet"),
    "cv": Rule(refused="cross-validation is not run inside the enclave yet"),
    "tune": Rule(refused="hyper-parameter search is not run inside the enclave yet"),
}
#: ``train``: per model, the parameters honoured besides ``model`` and ``task``.
MODELS: dict[str, frozenset[str]] = {
    "logistic_regression": _SGD,
    "linear_regression": _SGD,
    "secureboost": frozenset({"n_estimators", "max_depth", "learning_rate", "n_bins", "reg_lambda",
                              "min_child_weight", "subsample", "colsample_bytree"}),
    "mlp": _SGD | {"hidden_layer_sizes", "activation", "optimizer", "beta1", "beta2", "adam_epsilon"},
}
_TRAIN_WHY = (f"{_PLAIN}; the model is fitted on plaintext in float64 (exact sigmoid, no validation "
              "rows for early stopping)")


def use(component: str, params: Any) -> str:
    """What an owner's policy must allow for this step: the component, or the model it trains."""
    return str(params.model) if component == "train" else component


def uses() -> tuple[str, ...]:
    """Every use the enclave knows (the provider SDK's default grant)."""
    return tuple(c for c, r in STEPS.items() if r.refused is None and c != "train") + tuple(MODELS)


def check_step(step_id: str, component: str, params: Any) -> None:
    """Refuse a step the enclave does not run, or a parameter it would ignore (a :class:`ConfigError`)."""
    rule = STEPS.get(component)
    if rule is None or rule.refused is not None:
        supported = sorted(c for c, r in STEPS.items() if r.refused is None)
        raise ConfigError(f"step {step_id!r} ({component}) is not available in the TEE scheme: "
                          f"{rule.refused if rule else 'it is not declared for the enclave'}",
                          step=step_id, remedy=f"use {', '.join(supported)}")
    honoured, why = rule.honoured, rule.why
    if component == "train":
        if params.model not in MODELS:
            raise ConfigError(f"model {params.model!r} is not available in the TEE scheme", step=step_id,
                              remedy=f"use one of {sorted(MODELS)}")
        honoured, why = MODELS[params.model] | {"model", "task"}, _TRAIN_WHY
    given = {name: getattr(params, name) for name in params.model_fields_set}
    for name, only in rule.fixed.items():
        if name in given and given.pop(name) != only:
            raise ConfigError(f"{component}: {name} must be {only!r} in the TEE scheme (the enclave "
                              "holds every provider's columns of the joined rows)", step=step_id)
    ignored = sorted(set(given) - honoured)
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} do(es) not apply to {component} in the TEE scheme: {why}",
                          step=step_id, remedy="remove them from the step")


def check_steps(steps: list[Any]) -> None:
    """:func:`check_step` for every parsed step of a spec (``JobSpec.parsed_steps()``)."""
    for s in steps:
        check_step(s.id, s.component, s.params)


def wire_steps(steps: list[Any]) -> list[dict[str, Any]]:
    """The parsed steps as the enclave's ``Run`` request carries them (only the parameters set)."""
    return [{"id": s.id, "component": s.component,
             "params": s.params.model_dump(mode="json", include=s.params.model_fields_set)} for s in steps]

