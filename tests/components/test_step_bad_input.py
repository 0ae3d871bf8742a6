"""Small refusals (issue 14 item 8): bad parameters, step ids, data and files.

Each case was reproduced on ``arch-landed``: a billion trees, a ten-million-bit
key or a 10^12-row batch were accepted, ``learning_rate: .inf`` "succeeded",
1e300 raised a raw OverflowError, a step id reached a node's file path, a text
label reached scikit-learn (whose message quoted the value), a regression with
the default ``split`` crashed, and model parts and predictions were 0644.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError, DataError
from sharedml.standalone import PartyFailed, run_job

LR = "{model: logistic_regression, protocol: ss, epochs: 1, batch_size: 128}"


def _yaml(steps: str) -> str:
    return f"""
name: bad
parties:
  bank: {{dataset: bank.csv, label: y}}
  shop: {{dataset: shop.csv}}
steps:
{steps}
"""


@pytest.mark.parametrize("step, field", [
    ("train: {model: secureboost, n_estimators: 1000000000}", "n_estimators"),
    ("train: {model: secureboost, protocol: he, key_bits: 10000000}", "key_bits"),
    ("train: {model: logistic_regression, protocol: he, key_bits: 10000000}", "key_bits"),
    ("woe: {key_bits: 10000000}", "key_bits"),
    ("train: {model: logistic_regression, batch_size: 1000000000000}", "batch_size"),
    ("train: {model: logistic_regression, learning_rate: .inf}", "learning_rate"),
    ("train: {model: logistic_regression, learning_rate: 1.0e+300}", "learning_rate"),
    ("train: {model: secureboost, learning_rate: .nan}", "learning_rate"),
    ("fill: {strategy: constant, value: .inf}", "value"),
    ("split: {seed: 1.0e+300}", "seed"),
    ("train: {model: secureboost, n_estimators: 1.0e+9}", "n_estimators"),
])
def test_out_of_range_parameters_are_refused_naming_the_field(step: str, field: str) -> None:
    """(YAML 1.1 reads ``1e9`` as a string; the numbers here are numbers.)"""
    needs = "" if step.startswith(("split", "fill", "woe")) else "  - split: {}\n"
    spec = _yaml(f"  - psi: {{}}\n{needs}  - {step}\n")
    with pytest.raises(ConfigError) as info:
        jobspec.load(jobspec.parse_yaml(spec))
    assert field in str(info.value), info.value
    assert "Overflow" not in str(info.value)


@pytest.mark.parametrize("step_id", ["x/../../etc", "..", "a b", "../model", "", "x" * 65, 7])
def test_step_ids_are_limited_to_a_safe_pattern(step_id: Any) -> None:
    spec = {"parties": {"bank": {"dataset": "b.csv", "label": "y"}, "shop": {"dataset": "s.csv"}},
            "steps": [{"id": step_id, "psi": {}}]}
    with pytest.raises(ConfigError, match="not a step id"):
        jobspec.load(spec)


def test_ordinary_step_ids_still_load() -> None:
    spec = {"parties": {"bank": {"dataset": "b.csv", "label": "y"}, "shop": {"dataset": "s.csv"}},
            "steps": [{"id": "align_1", "psi": {}}, {"id": "Split-2", "split": {}}]}
    assert [s.id for s in jobspec.load(spec).parsed_steps()] == ["align_1", "Split-2"]


@pytest.fixture()
def breast(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    paths = {"bank": tmp_path / "bank.csv", "shop": tmp_path / "shop.csv"}
    pd.read_csv(shared_data / "breast_hetero_guest.csv").to_csv(paths["bank"], index=False)
    pd.read_csv(shared_data / "breast_hetero_host.csv").to_csv(paths["shop"], index=False)
    return paths


def _spec(paths: dict[str, Path], steps: list[dict[str, Any]], label: str = "y",
          ids: str = "id") -> dict[str, Any]:
    return {"name": "small", "parties": {
        "bank": {"dataset": str(paths["bank"]), "label": label, "id": ids},
        "shop": {"dataset": str(paths["shop"]), "id": ids}}, "steps": steps}


TRAIN = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}},
         {"train": {"model": "logistic_regression", "epochs": 1, "batch_size": 128}}]


@pytest.mark.slow
def test_model_parts_and_predictions_are_0600(breast: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_job(_spec(breast, [*TRAIN, {"predict": {}}]), out, embedded=True, timeout=60)
    files = [out / "bank" / "model-train.json", out / "shop" / "model-train.json",
             out / "bank" / "predictions-predict.csv"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for party in ("bank", "shop"):
        assert stat.S_IMODE((out / party).stat().st_mode) & 0o077 == 0


@pytest.mark.slow
def test_a_text_label_is_refused_naming_the_column_not_the_value(
    breast: dict[str, Path], tmp_path: Path
) -> None:
    bank = pd.read_csv(breast["bank"])
    bank["y"] = bank["y"].astype(object)
    bank.loc[3, "y"] = "maybe"
    bank.to_csv(breast["bank"], index=False)
    for split, step in (({}, "split"), ({"stratify": False}, "train")):
        steps = [TRAIN[0], {"split": split}, TRAIN[2]]
        with pytest.raises(PartyFailed) as info:
            run_job(_spec(breast, steps), tmp_path / "out", embedded=True, timeout=60)
        err = info.value.error
        assert isinstance(err, DataError) and err.column == "y" and err.step == step, err
        assert "maybe" not in str(err)


@pytest.mark.slow
def test_text_in_a_numeric_column_past_the_first_rows_is_a_data_error(
    tmp_path: Path
) -> None:
    """The reader infers types from the first 1000 rows; a text cell after them is
    reported with its column and line, never its value."""
    rng = np.random.default_rng(0)
    n = 1500
    bank = pd.DataFrame({"id": np.arange(n), "y": rng.integers(0, 2, n),
                         "x0": rng.normal(size=n).round(4)})
    bank["x0"] = bank["x0"].astype(object)
    bank.loc[1200, "x0"] = "n/a-secret"
    shop = pd.DataFrame({"id": np.arange(n), "z0": rng.normal(size=n)})
    paths = {"bank": tmp_path / "bank.csv", "shop": tmp_path / "shop.csv"}
    bank.to_csv(paths["bank"], index=False)
    shop.to_csv(paths["shop"], index=False)
    with pytest.raises(PartyFailed) as info:
        run_job(_spec(paths, [{"psi": {}}]), tmp_path / "out", embedded=True, timeout=60)
    err = info.value.error
    assert isinstance(err, DataError) and err.column == "x0", err
    assert "non-numeric" in str(err) and "1202" in str(err)  # file line of row 1200
    assert "n/a-secret" not in str(err)


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [0, 1])
def test_zero_or_one_aligned_row_is_a_clear_data_error(tmp_path: Path, overlap: int) -> None:
    bank = pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 0], "x0": [0.1, 0.2, 0.3]})
    shop = pd.DataFrame({"id": [3 if overlap else 9, 10, 11], "z0": [1.0, 2.0, 3.0]})
    paths = {"bank": tmp_path / "bank.csv", "shop": tmp_path / "shop.csv"}
    bank.to_csv(paths["bank"], index=False)
    shop.to_csv(paths["shop"], index=False)
    with pytest.raises(PartyFailed) as info:
        run_job(_spec(paths, TRAIN[:2]), tmp_path / "out", embedded=True, timeout=60)
    err = info.value.error
    assert isinstance(err, DataError) and err.step == "split", err
    assert f"{overlap} aligned row" in str(err)


@pytest.mark.slow
def test_regression_with_the_default_split_stratifies_on_deciles(
    tmp_path: Path, shared_data: Path
) -> None:
    """A continuous label under ``split: {}`` (stratify: true): deciles, not a crash."""
    paths = {"bank": shared_data / "motor_hetero_guest.csv",
             "shop": shared_data / "motor_hetero_host.csv"}
    spec = _spec(paths, [{"psi": {}}, {"split": {}},
                         {"train": {"model": "linear_regression", "epochs": 1}},
                         {"evaluate": {}}], label="motor_speed", ids="idx")
    result = run_job(spec, tmp_path / "out", embedded=True, timeout=60)
    steps = {s["id"]: s["parties"] for s in result["steps"]}
    assert steps["split"]["bank"]["metrics"] == {"train_rows": 560, "test_rows": 240}
    assert np.isfinite(steps["evaluate"]["bank"]["metrics"]["rmse"])


@pytest.mark.slow
def test_a_label_with_a_single_row_class_is_refused_clearly(
    tmp_path: Path, shared_data: Path
) -> None:
    """The student set's grades (0-20, some held by one student): too few distinct
    values to be continuous, too small classes to stratify."""
    paths = {"bank": shared_data / "student_hetero_guest.csv",
             "shop": shared_data / "student_hetero_host.csv"}
    with pytest.raises(PartyFailed) as info:
        run_job(_spec(paths, [{"psi": {}}, {"split": {}}]), tmp_path / "out", embedded=True,
                timeout=60)
    err = info.value.error
    assert isinstance(err, DataError) and err.step == "split" and "stratify" in str(err), err
