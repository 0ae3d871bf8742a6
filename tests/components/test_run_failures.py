"""``sharedml run`` fails fast and says why: a step timeout, and the root cause first
(issue 14 item 5). On ``arch-landed`` there was no step timeout (a step waited
600 s per receive) and the command printed only the chosen party's error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from sharedml.errors import StepTimeout
from sharedml.standalone import PartyFailed, run_job


def _spec(tmp_path: Path, shared_data: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "failing", "parties": {
        "bank": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
        "shop": {"dataset": str(shared_data / "breast_hetero_host.csv")}}, "steps": steps}


def test_a_step_over_its_timeout_fails_naming_the_step(tmp_path: Path, shared_data: Path) -> None:
    spec = _spec(tmp_path, shared_data, [{"describe": {"sleep_s": 3}}])
    start = time.monotonic()
    with pytest.raises(PartyFailed) as info:
        run_job(spec, tmp_path / "out", embedded=True, timeout=600, step_timeout=1.0)
    assert time.monotonic() - start < 60  # not the receive timeout's 600 s
    err = info.value.error
    assert isinstance(err, StepTimeout) and err.step == "describe", err
    assert "timeout of 1 s" in str(err)


@pytest.mark.slow
def test_the_command_prints_the_root_cause_first(tmp_path: Path, shared_data: Path) -> None:
    import yaml

    from sharedml.cli import _load_plugins, app

    bank = pd.read_csv(shared_data / "breast_hetero_guest.csv")
    bank["y"] = bank["y"].astype(object)
    bank.loc[7, "y"] = "maybe"
    bank.to_csv(tmp_path / "bank.csv", index=False)
    spec = _spec(tmp_path, shared_data, [
        {"psi": {}}, {"split": {"stratify": False}},
        {"train": {"model": "logistic_regression", "epochs": 1}}])
    spec["parties"]["bank"]["dataset"] = "bank.csv"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    _load_plugins()
    result = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml"), "--out",
                                      str(tmp_path / "out"), "--embedded", "--timeout", "60"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error: "), lines
    assert "party 'bank'" in lines[0] and "step 'train'" in lines[0], lines[0]
    assert "column 'y'" in lines[0] and "maybe" not in result.output
    assert all(line.startswith("  then: ") for line in lines[1:]), lines
    assert "Traceback" not in result.output
