"""The job builder's model: a form's fields <-> a job spec, checked as the API checks it.

Each step's form comes from its component's parameter schema, the rows
``sharedml components show`` prints (:func:`sharedml.components.cli.parameters`).
A value left empty takes the component's default; a non-text value is read as
YAML (``0.3``, ``true``, ``[auc, ks]``). :func:`check` runs ``jobspec.load``,
the API's own validation, so the builder says what a submit would say — the
field path (``steps[1].split.test_size``) and the reason.

Field names: ``name``, ``scheme``; per party ``party`` (repeated) with
``dataset.<party>``, ``label.<party>``, ``id.<party>``; per step
``step`` (repeated: the component) with ``p.<i>.<param>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from sharedml.components import jobspec, registry
from sharedml.components.cli import parameters
from sharedml.errors import ConfigError

#: The standard's A.1 credit-risk job (as examples/credit_ss_lr.yaml): vertical
#: logistic regression on secret shares, scored and evaluated on the hold-out.
TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "a1": [
        {"psi": {"key": "id"}},
        {"split": {"test_size": 0.3, "stratify": "y", "seed": 42}},
        {"scale": {"method": "standard"}},
        {"train": {"model": "logistic_regression", "protocol": "ss", "epochs": 5,
                   "batch_size": 1024, "l2": 0.0001}},
        {"predict": {}},
        {"evaluate": {"metrics": ["auc", "ks", "lift", "accuracy"]}},
    ],
}


@dataclass
class Draft:
    """What the builder shows: the parties chosen, the steps and their raw values."""

    name: str = "job"
    scheme: str = "mpc"
    parties: dict[str, dict[str, str]] = field(default_factory=dict)
    steps: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: dict[str, list[str]]) -> Draft:
        def one(key: str) -> str:
            return (form.get(key) or [""])[0].strip()

        draft = cls(name=one("name") or "job", scheme=one("scheme") or "mpc")
        for party in form.get("party", []):
            draft.parties[party] = {k: one(f"{k}.{party}") for k in ("dataset", "label", "id")}
        for i, component in enumerate(form.get("step", [])):
            prefix = f"p.{i}."
            values = {k[len(prefix):]: v[0] for k, v in form.items() if k.startswith(prefix)}
            draft.steps.append((component, values))
        return draft

    def apply_template(self, name: str) -> None:
        """Replace the steps by template ``name``'s, label column ``y`` on the first party."""
        if name not in TEMPLATES:
            raise ConfigError(f"unknown template {name!r}", remedy=f"use one of {sorted(TEMPLATES)}")
        self.steps = [(c, {k: _text(v) for k, v in p.items()})
                      for step in TEMPLATES[name] for c, p in step.items()]
        if self.parties and not any(p.get("label") for p in self.parties.values()):
            next(iter(self.parties.values()))["label"] = "y"
        if self.name == "job":
            self.name = "credit-ss-lr" if name == "a1" else name

    def spec(self) -> dict[str, Any]:
        """The job spec the draft stands for (not yet validated)."""
        parties: dict[str, Any] = {}
        for party, p in self.parties.items():
            entry: dict[str, Any] = {"dataset": p.get("dataset") or None}
            if p.get("label"):
                entry["label"] = p["label"]
            if p.get("id") and p["id"] != "id":
                entry["id"] = p["id"]
            parties[party] = entry
        steps = [{component: _values(component, raw)} for component, raw in self.steps]
        return {"name": self.name, "scheme": self.scheme, "parties": parties, "steps": steps}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _values(component: str, raw: dict[str, str]) -> dict[str, Any]:
    """Typed parameter values: text for string fields, YAML for the rest; empty: default."""
    types = {row["name"]: row["type"] for row in _rows(component)}
    out: dict[str, Any] = {}
    for key, text in raw.items():
        text = text.strip()
        if not text or key not in types:
            if text and key not in types:
                out[key] = text  # unknown: left for the schema to refuse, by name
            continue
        out[key] = text if types[key] == "string" else jobspec.parse_yaml(text)
    return out


def _rows(component: str) -> list[dict[str, str]]:
    try:
        return parameters(component)
    except ConfigError:
        return []


def form_rows(component: str) -> list[dict[str, Any]]:
    """One input per parameter: name, type, default, description, and choices for an enum."""
    rows = []
    for row in _rows(component):
        parts = [p.strip() for p in row["type"].split("|")]
        choices = [p.strip('"') for p in parts if p.startswith('"')]
        if row["type"] == "boolean":
            choices = ["true", "false"]
        rows.append({**row, "choices": choices if len(choices) == len(parts) else []})
    return rows


def components() -> list[tuple[str, str]]:
    """Every step the registry knows, with its summary."""
    return [(name, registry.get(name).summary) for name in sorted(registry.available())]


@dataclass
class Checked:
    spec: dict[str, Any]
    yaml: str
    error: str = ""


def check(draft: Draft) -> Checked:
    """The spec as YAML and the first error ``jobspec.load`` finds (empty: valid)."""
    try:
        spec = draft.spec()
    except (ConfigError, yaml.YAMLError) as exc:
        return Checked({}, "", getattr(exc, "message", str(exc)))
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    try:
        jobspec.load(spec)
    except ConfigError as exc:
        return Checked(spec, text, exc.message)
    return Checked(spec, text)
