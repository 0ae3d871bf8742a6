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
