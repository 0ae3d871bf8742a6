"""The job spec: parties, their datasets, and the steps to run (docs/architecture.md §4, §6).

::

    name: credit-risk
    scheme: mpc
    parties:
      bank:  {dataset: bank.csv, label: y}
      shop:  {dataset: shop.csv}
    steps:
      - psi: {key: id}
      - split: {test_size: 0.3, stratify: y, seed: 42}
      - train: {model: logistic_regression, protocol: ss, epochs: 10}

Each step is a one-key mapping ``{component: params}``; a step may also carry
``id`` (default: the component name, numbered if repeated) and ``needs`` (ids of
earlier steps; default: the step before). Parameters are checked against the
component's schema when the spec is loaded, and every error names the path of
the bad field; so is the order of an MPC job's steps (a ``train`` needs a
``split``, a ``predict`` a ``train``...: :func:`check_needs`). Reading is
bounded (:mod:`~sharedml.components.spec_limits`: no YAML aliases, capped
depth, size and step count), and an error never quotes the input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sharedml.components import registry
from sharedml.components.base import PRODUCTS, STEP_ID, Params, PartyConfig
from sharedml.components.spec_limits import BoundedComposer, check_shape, check_text, short
from sharedml.crypto.pki import check_party_id
from sharedml.errors import ConfigError


class _SpecLoader(BoundedComposer):
    """Safe YAML with YAML 1.2's booleans: only true/false, so that keys and
    values such as ``on``, ``off``, ``yes``, ``no`` stay strings (PyYAML's 1.1
    rules would turn ``predict: {on: test}`` into ``{True: 'test'}``); no
    aliases, bounded depth and size (:class:`BoundedComposer`)."""


_BOOL = "tag:yaml.org,2002:bool"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    """Parse a job spec's YAML (or JSON) text; no Python objects, 1.2 booleans.

    Raises :class:`ConfigError` for text over the limits (no alias is
    expanded) and ``yaml.YAMLError`` for text that is not YAML."""
    check_text(text)
    return yaml.load(text, Loader=_SpecLoader)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong with YAML text and where — without the excerpt PyYAML quotes."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not YAML"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


class PartySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    label: str | None = None
    id: str | list[str] = "id"
    options: dict[str, Any] = Field(default_factory=dict)


class StepSpec(BaseModel):
    """A parsed step: which component, with which (validated) parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    component: str
    params: Params
    needs: list[str]


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "job"
    scheme: Literal["mpc", "tee"] = "mpc"
    parties: dict[str, PartySpec]
    steps: list[dict[str, Any]]

    @field_validator("parties")
    @classmethod
    def _two_or_more(cls, v: dict[str, PartySpec]) -> dict[str, PartySpec]:
        if len(v) < 1:
            raise ValueError("a job needs at least one party")
        for name in v:
            check_party_id(name)
        return v

    def party_configs(self) -> dict[str, PartyConfig]:
        """Per-party configuration; each dataset name as the spec gives it (a
        :class:`~sharedml.datasets.DatasetSource` resolves it where the party runs)."""
        out = {}
        for name, p in self.parties.items():
            ids = (p.id,) if isinstance(p.id, str) else tuple(p.id)
            out[name] = PartyConfig(name, p.dataset, p.label, ids, dict(p.options))
        return out

    def parsed_steps(self) -> list[StepSpec]:
        """Steps with parameters validated, dependencies resolved and, for an MPC job,
        every step's needs met by its earlier steps (:func:`check_needs`)."""
        steps: list[StepSpec] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(self.steps):
            steps.append(_parse_step(f"steps[{i}]", raw, steps, seen))
        if self.scheme == "mpc":
            check_needs(steps)
        return steps


def _parse_step(where: str, raw: dict[str, Any], earlier: list[StepSpec],
                seen: dict[str, int]) -> StepSpec:
    body = dict(raw)
    step_id = body.pop("id", None)
    needs = body.pop("needs", None)
    if len(body) != 1:
        raise ConfigError(
            f"{where} must name exactly one component, found "
            f"{[short(k) for k in sorted(body)[:5]] or 'none'}"
        )
    (name, params), = body.items()
    if name not in registry.available():
        raise ConfigError(f"{where}: unknown step {short(name)!r}",
                          remedy=f"use one of {sorted(registry.available())}")
    component = registry.get(name)
    seen[name] = seen.get(name, 0) + 1
    if step_id is None:
        step_id = name if seen[name] == 1 else f"{name}{seen[name]}"
    if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
        raise ConfigError(
            f"{where}.id: {str(step_id)[:64]!r} is not a step id",
            remedy="use a letter, then up to 63 letters, digits, '_' or '-' (it names files "
            "and channel tags)",
        )
    if any(s.id == step_id for s in earlier):
        raise ConfigError(f"{where}: duplicate step id {short(step_id)!r}")
    if needs is None:
        needs = [earlier[-1].id] if earlier else []
    known = {s.id for s in earlier}
    for dep in needs:
        if dep not in known:
            raise ConfigError(f"{where}.needs: {short(dep)!r} is not an earlier step")
    return StepSpec(id=str(step_id), component=name,
                    params=component.parse(params, f"{where}.{name}"), needs=list(needs))


def check_needs(steps: list[StepSpec]) -> None:
    """Refuse a step that needs what none of its earlier steps makes.

    A step's earlier steps are those its ``needs`` list, and theirs, and so on
    (by default: every step before it). What each step needs and makes is
    declared on its component (:attr:`Component.needs
    <sharedml.components.base.Component.needs>`), in the terms of
    :data:`~sharedml.components.base.PRODUCTS`: train needs a split, predict
    and evaluate a trained model, a vertical split or preprocessing step the
    rows psi aligns. Raises :class:`ConfigError` naming the step, what it needs
    and the step that makes it — before any party starts.
    """
    ancestors: dict[str, set[str]] = {}
    made: dict[str, set[str]] = {}
    for i, step in enumerate(steps):
        component = registry.get(step.component)
        ancestors[step.id] = set(step.needs).union(*(ancestors[d] for d in step.needs))
        have: set[str] = set().union(*(made[a] for a in ancestors[step.id]))
        missing = [n for n in component.requires(step.params) if n not in have]
        if missing:
            what, maker = PRODUCTS.get(missing[0], (missing[0], missing[0]))
            raise ConfigError(
                f"steps[{i}]: step {step.id!r} ({step.component}) needs {what}, and no step "
                f"before it makes it",
                step=step.id,
                remedy=f"add a '{maker}' step before it (a step comes after the steps its "
                "'needs' lists, by default the one before it)",
            )
        made[step.id] = set(component.provides(step.params))


def _names_a_file(text: str) -> bool:
    """Whether one-line ``text`` is the path of a file (not YAML); never raises."""
    if "\n" in text or len(text) > 4096:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the OS, a NUL byte
        return False


def load(source: str | Path | dict[str, Any]) -> JobSpec:
    """Load and validate a job spec from a YAML/JSON file, a YAML string or a dict."""
    if isinstance(source, dict):
        raw: Any = source
    else:
        text = str(source)
        if isinstance(source, Path) or _names_a_file(text):
            text = Path(source).read_text(encoding="utf-8")
        try:
            raw = parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"job spec is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError("a job spec must be a mapping with 'parties' and 'steps'")
    check_shape(raw)
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(short(p) for p in first["loc"])
        raise ConfigError(f"invalid job spec field {path}: {first['msg']}") from None
    spec.parsed_steps()
    return spec
