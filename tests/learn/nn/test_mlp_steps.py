"""``train: {model: mlp}`` as a job step, both protocols: psi, split, train,
predict and evaluate through ``run_job``; each party writes its own model part
only; scores and metrics reach the label holder only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sharedml.components import registry
from sharedml.errors import ConfigError
from sharedml.standalone.job import run_job

TRAIN = {
    "ss": {
        "model": "mlp",
        "protocol": "ss",
        "hidden_layer_sizes": [8],
        "epochs": 5,
        "batch_size": 64,
    },
    "split": {
        "model": "mlp",
        "protocol": "split",
        "bottom_layer_sizes": [8],
        "interactive_size": 8,
        "activation": "tanh",
        "epochs": 6,
        "learning_rate": 0.3,
        "batch_size": 64,
    },
}


@pytest.mark.parametrize("protocol", ["ss", "split"])
def test_mlp_train_predict_evaluate_as_job_steps(
    breast_job: Callable, tmp_path: Path, protocol: str
) -> None:
    steps = [{"train": TRAIN[protocol]}, {"predict": {}}, {"evaluate": {"metrics": ["auc", "ks"]}}]
    result = run_job(breast_job(steps), tmp_path, embedded=True, timeout=120)
    steps = {s["id"]: s["parties"] for s in result["steps"]}
    evaluate = steps["evaluate"]
    # a sanity floor (parity with scikit-learn is test_ss_mlp/test_split_mlp's):
    # starts are random here, test AUCs were 0.97-0.996 over 14 runs
    assert evaluate["guest"]["metrics"]["auc"] > 0.95
    assert evaluate["host"]["metrics"] == {}
    train = steps["train"]
    assert train["guest"]["metrics"]["protocol"] == protocol
    parts = {p: _opened(Path(train[p]["artifacts"]["model"])) for p in ("guest", "host")}
    assert {d["party"] for d in parts.values()} == {"guest", "host"}
    if protocol == "split":
        # every party its own bottom net and its shares; the top net at the label holder only
        assert parts["host"]["part"]["top"] is None and parts["guest"]["part"]["top"]
        assert len(parts["host"]["part"]["bottom"][0]) == 20  # the host's 20 columns
    else:
        assert parts["host"]["part"]["layers"] is None  # reveal_weights none: shares only
        assert parts["host"]["part"]["weight_shares"]
    assert "predictions" in steps["predict"]["guest"]["artifacts"]
    assert "predictions" not in steps["predict"]["host"]["artifacts"]


def test_the_train_schema_documents_the_mlp() -> None:
    fields = registry.get("train").params.model_fields
    for name in ("hidden_layer_sizes", "bottom_layer_sizes", "interactive_size", "label_dp_noise"):
        assert name in fields and fields[name].description
    with pytest.raises(ConfigError, match="no 'he' protocol"):
        registry.get("train").parse({"model": "mlp", "protocol": "he"}, "train")
    with pytest.raises(ConfigError, match="does not take"):
        registry.get("train").parse({"model": "mlp", "interactive_size": 4}, "train")
    with pytest.raises(ConfigError, match="hidden_layer_sizes"):
        registry.get("train").parse({"model": "mlp", "hidden_layer_sizes": [0]}, "train")


def _opened(path: Path) -> dict:
    """A party's sealed part as its model document, opened with that party's node keys."""
    from sharedml.modelpart import FileNodeKeys
    from sharedml.modelpart.part import ModelPart

    return ModelPart.unseal(path.read_bytes(), FileNodeKeys(path.parent.parent / "keys")).model.to_dict()
