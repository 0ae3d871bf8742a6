"""``scheme: tee`` job specs through run_tee_job, against the plaintext oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError
from sharedml.tee.job import run_tee_job
from sharedml.tee.model import ReleasedModel


def spec(shared_data: Path, steps: list[dict[str, object]]) -> jobspec.JobSpec:
    return jobspec.load({
        "name": "breast-tee",
        "scheme": "tee",
        "parties": {
            "guest": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
            "host": {"dataset": str(shared_data / "breast_hetero_host.csv")},
        },
        "steps": steps,
    })


@pytest.mark.slow
def test_tee_job_matches_plaintext(shared_data: Path, tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    steps = [
        {"psi": {"key": "id"}},
        {"split": {"test_size": 0.3, "seed": 42}},
        {"train": {"model": "logistic_regression"}},
        {"evaluate": {}},
        {"train": {"model": "secureboost", "n_estimators": 10, "max_depth": 3}},
        {"evaluate": {}},
    ]
    result = run_tee_job(spec(shared_data, steps), tmp_path)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    ids = [s["id"] for s in result["steps"]]
    assert ids[:2] == ["enclave", "upload"] and ids[-1] == "destroy"
    assert set(result["steps"][1]["parties"]) == {"guest", "host"}

    g = pd.read_csv(shared_data / "breast_hetero_guest.csv").add_prefix("guest.").rename(columns={"guest.id": "id"})
    h = pd.read_csv(shared_data / "breast_hetero_host.csv").add_prefix("host.").rename(columns={"host.id": "id"})
    joined = g.merge(h, on="id").sort_values("id").reset_index(drop=True)
    y = joined.pop("guest.y").to_numpy()
    _, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
    test = np.sort(test)
    for train_id, eval_id in (("train", "evaluate"), ("train2", "evaluate2")):
        entry = next(s for s in result["steps"] if s["id"] == train_id)
        model = ReleasedModel.from_bytes(Path(entry["parties"]["enclave"]["artifacts"]["model"]).read_bytes())
        auc = roc_auc_score(y[test], model.predict_proba(joined.iloc[test]))
        reported = next(s for s in result["steps"] if s["id"] == eval_id)["parties"]["enclave"]["metrics"]
        assert reported["on"] == "test" and reported["auc"] == pytest.approx(auc, abs=1e-12)
        assert auc > 0.95  # reference: LR 0.9907, XGBoost 0.9815 on the joined data


def test_unsupported_step_is_a_config_error(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not available in the TEE scheme"):
        run_tee_job(spec(shared_data, [{"predict": {}}]), tmp_path)


@pytest.mark.parametrize(
    ("step", "named"),
    [({"train": {"model": "logistic_regression", "protocol": "he"}}, "protocol"),
     ({"train": {"model": "logistic_regression", "epochs": 10}}, "epochs"),
     ({"train": {"model": "secureboost", "subsample": 0.5}}, "subsample"),
     ({"psi": {"protocol": "ecdh"}}, "protocol"),
     ({"split": {"layout": "horizontal"}}, "layout"),
     ({"split": {"stratify": False}}, "stratified"),
     ({"evaluate": {"metrics": ["ks"]}}, "auc"),
     ({"train": {"model": "linear_regression"}}, "not available")],
    ids=["protocol", "epochs", "subsample", "psi-protocol", "horizontal", "unstratified", "ks", "linear"],
)
def test_parameters_the_enclave_would_ignore_are_refused(
    shared_data: Path, tmp_path: Path, step: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        run_tee_job(spec(shared_data, [step]), tmp_path)
    assert info.value.step is not None  # names the step
    assert not (tmp_path / "tee").exists()  # refused before any enclave started
