"""Job spec parsing: YAML corner cases and error paths."""

from __future__ import annotations

import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError

SPEC = """
name: j
parties:
  bank: {dataset: bank.csv, label: y}
  shop: {dataset: shop.csv}
steps:
  - psi: {key: id}
  - split: {test_size: 0.3, seed: 42}
  - train: {model: logistic_regression, protocol: ss, epochs: 2}
  - predict: {on: train}
  - evaluate: {on: train, metrics: [auc]}
"""


def test_keys_like_on_stay_strings() -> None:
    spec = jobspec.load(SPEC)
    steps = {s.id: s for s in spec.parsed_steps()}
    assert steps["predict"].params.on == "train"  # type: ignore[attr-defined]
    assert jobspec.parse_yaml("a: yes\nb: true\nc: off") == {"a": "yes", "b": True, "c": "off"}


def test_bad_parameter_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"steps\[2\]\.train\.epochs"):
        jobspec.load(SPEC.replace("epochs: 2", "epochs: many"))


def test_yaml_cannot_build_python_objects() -> None:
    with pytest.raises(ConfigError):
        jobspec.load("!!python/object/apply:os.system ['true']\n")


def _steps(*steps: dict[str, object], scheme: str = "mpc") -> dict[str, object]:
    return {"scheme": scheme, "parties": {"bank": {"dataset": "b.csv", "label": "y"},
                                          "shop": {"dataset": "s.csv"}}, "steps": list(steps)}


PSI, SPLIT = {"psi": {}}, {"split": {}}
TRAIN, PREDICT, EVALUATE = {"train": {"model": "logistic_regression"}}, {"predict": {}}, {
    "evaluate": {}}


@pytest.mark.parametrize(("steps", "step", "needs", "add"), [
    ((PSI, TRAIN), "train", "a train/test split", "split"),
    ((PSI, SPLIT, PREDICT), "predict", "a trained model", "train"),
    ((PSI, SPLIT, EVALUATE), "evaluate", "a trained model", "train"),
    ((SPLIT, TRAIN), "split", "each party's rows, aligned across the parties", "psi"),
    (({"scale": {}},), "scale", "each party's rows", "psi"),
    (({"correlation": {}},), "correlation", "each party's rows", "psi"),
    ((PSI, {"id": "cut", "split": {}}, TRAIN, {"id": "other", "needs": ["psi"], "predict": {}}),
     "other", "a trained model", "train"),
])
def test_a_step_without_what_it_needs_is_refused_when_the_spec_loads(
    steps: tuple[dict[str, object], ...], step: str, needs: str, add: str
) -> None:
    with pytest.raises(ConfigError) as info:
        jobspec.load(_steps(*steps))
    err = info.value
    assert err.step == step and needs in err.message and f"step {step!r}" in err.message
    assert f"add a '{add}' step before it" in (err.remedy or "")


def test_steps_in_a_working_order_load() -> None:
    jobspec.load(SPEC)
    jobspec.load(_steps(PSI, SPLIT, {"scale": {}}, TRAIN, {"id": "again", "predict": {}},
                        {"needs": ["train"], "evaluate": {}}))
    # horizontal data: each step loads its party's own rows, no PSI
    jobspec.load(_steps({"scale": {"layout": "horizontal"}}, {"split": {"layout": "horizontal"}},
                        TRAIN))
    jobspec.load(_steps({"split": {"layout": "horizontal"}}, TRAIN))
    jobspec.load(_steps({"describe": {}}))
    # the enclave joins and splits inside: a TEE job may train on every row
    jobspec.load(_steps(TRAIN, EVALUATE, scheme="tee"))
