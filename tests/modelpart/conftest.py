"""A trained two-party model on the breast reference set, registered in a models folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedml.standalone.job import run_job


def breast_spec(shared_data: Path, steps: list[dict[str, Any]], name: str = "breast-lr"
                ) -> dict[str, Any]:
    return {
        "name": name,
        "parties": {
            "guest": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
            "host": {"dataset": str(shared_data / "breast_hetero_host.csv")},
        },
        "steps": steps,
    }


@pytest.fixture(scope="package")
def trained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out folder of a training run; its models folder holds breast-lr version 1."""
    out = tmp_path_factory.mktemp("trained")
    steps = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 3}}, {"scale": {}},
             {"train": {"model": "logistic_regression", "epochs": 2}},
             {"predict": {}}]
    run_job(breast_spec(shared_data, steps), out, embedded=True)
    return out
