"""``cv`` and ``tune`` as job steps (8.1.2-3), through ``run_job``: metrics
only reach every party; tune's best configuration is retrained and then
predicted and evaluated like a train step's model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError
from sharedml.standalone.job import run_job
from sharedml.standalone.models import LocalRegistry

LR = {"model": "logistic_regression", "protocol": "ss", "epochs": 2, "batch_size": 32}


def _by_step(result: dict[str, Any]) -> dict[str, Any]:
    return {s["id"]: s["parties"] for s in result["steps"]}


def test_cv_step_gives_every_party_the_same_fold_metrics(
    breast_job: Callable, tmp_path: Path
) -> None:
    spec = breast_job([{"cv": {"train": LR, "folds": 3, "stratify": "y"}}])
    cv = _by_step(run_job(spec, tmp_path, embedded=True, timeout=120))["cv"]
    guest, host = cv["guest"]["metrics"], cv["host"]["metrics"]
    assert guest == host
    assert guest["metric"] == "auc" and len(guest["folds"]) == 3 and guest["mean"] > 0.95
    assert guest["fold_rows"] and sum(guest["fold_rows"]) == 398  # the 70% training rows


def test_tune_step_retrains_the_best_and_predict_uses_it(
    breast_job: Callable, tmp_path: Path
) -> None:
    space = {"learning_rate": {"low": 0.05, "high": 3.0, "log": True}, "l2": [0.0, 0.01]}
    tune = {"train": LR, "space": space, "trials": 3, "folds": 3, "stratify": "y", "seed": 0}
    spec = breast_job([{"tune": tune}, {"predict": {}}, {"evaluate": {"metrics": ["auc"]}}])
    result = run_job(spec, tmp_path, embedded=True, timeout=300)
    steps = _by_step(result)
    guest = steps["tune"]["guest"]["metrics"]
    trials = guest["trials"]
    assert len(trials) == 3
    # trial 0 is the configuration given, with the model's defaults for the rest
    assert trials[0]["params"] == {"learning_rate": 2.0, "l2": 1e-4}
    done = [t for t in trials if t["state"] == "complete"]
    assert guest["best_value"] == max(t["mean"] for t in done) >= trials[0]["mean"]
    assert guest["retrained"]["model"] == "logistic_regression"
    host = steps["tune"]["host"]["metrics"]
    assert host["best_params"] == guest["best_params"]
    assert Path(steps["tune"]["host"]["artifacts"]["model"]).is_file()
    assert steps["evaluate"]["guest"]["metrics"]["auc"] > 0.95
    # the retrained model is a registered version; each party's part reads back
    # from the models folder with the best configuration
    assert [m["name"] for m in result["models"]] == ["breast-job.tune"]
    registry = LocalRegistry(tmp_path / "models")
    version = registry.show("breast-job.tune@1")
    assert version["uid"] == guest["model_uid"] == host["model_uid"]
    for party in ("guest", "host"):
        part = registry.store(party).load(version["uid"], version["fingerprints"][party])
        assert part.header.party == party
        for name, value in guest["best_params"].items():
            assert getattr(part.model, name) == value


@pytest.mark.parametrize(
    ("tune", "match"),
    [
        ({"train": {"model": "mlp", "protocol": "he"}, "space": {"epochs": [1]}}, "he"),
        ({"train": LR, "space": {"hidden_layer_sizes": [[8]]}, "trials": 2}, "no parameters"),
        ({"train": LR, "space": {"epochs": [1, 2]}, "sampler": "anneal"}, "sampler"),
    ],
)
def test_bad_tune_steps_are_refused_when_the_spec_loads(
    breast_job: Callable, tune: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        jobspec.load(breast_job([{"tune": tune}]))
