"""Every registry step inside the enclave: supported (and what it computes) or refused at load.

The table below names every built-in component of :mod:`sharedml.components`;
a step missing from it fails :func:`test_the_table_covers_the_registry`, so a
new component cannot be silently ignored by the TEE scheme. Supported steps run
in process on the joined breast data (the enclave's own runner, no gRPC);
refused steps and parameters fail at :func:`sharedml.tee.scheme.check_steps`,
naming the step. Then the release rules: each owner's signed policy decides
what leaves (metrics only, model to the label holder, scores to the label holder).
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.tee.conftest import SimWorld
from tests.tee.test_runtime import JOB, grant, send

from sharedml.components import jobspec, registry
from sharedml.errors import ConfigError, PolicyDenied, ProtocolAbort
from sharedml.tee import scheme
from sharedml.tee.attestation.simqe import LocalSimAttester
from sharedml.tee.enclave import learners, steps
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.envelope import EnclaveKeys, release_info
from sharedml.tee.model import ReleasedModel

HEAD = [{"psi": {"key": "id"}}, {"split": {"test_size": 0.3, "seed": 7}}]
LR = {"train": {"model": "logistic_regression", "epochs": 2}}
#: (steps after psi + split, the step checked, a metric it must report)
SUPPORTED: dict[str, tuple[list[dict[str, Any]], str]] = {
    "psi": ([], "intersection"),
    "split": ([{"split": {"test_size": 0.25, "seed": 1, "stratify": False}}], "test_rows"),
    "fill": ([{"fill": {"strategy": "median"}}], "filled_cells"),
    "scale": ([{"scale": {"method": "minmax"}}], "columns"),
    "onehot": ([{"binning": {"n_bins": 3, "columns": ["x1"]}},
                {"onehot": {"columns": ["x1"], "categories": {"x1": [0, 1, 2]}}}], "indicators"),
    "binning": ([{"binning": {"n_bins": 4, "method": "width", "columns": ["guest.x2"]}}], "columns"),
    "woe": ([{"woe": {"n_bins": 5}}], "iv"),
    "correlation": ([{"correlation": {"columns": {"guest": ["x0", "x1"], "host": ["x0"]}}}], "max_vif"),
    "train": ([LR], "rows"),
    "predict": ([LR, {"predict": {"on": "train"}}], "rows"),
    "evaluate": ([LR, {"evaluate": {"metrics": ["auc", "ks", "lift", "accuracy", "f1"]}}], "ks"),
}
#: (the step, a word the refusal names)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "describe": ({"describe": {}}, "not available"),
    "align": ({"align": {}}, "use psi"),
    "cv": ({"cv": {"train": {"model": "logistic_regression"}}}, "not available"),
    "tune": ({"tune": {"train": {"model": "logistic_regression"}, "space": {"l2": [0.1, 1.0]}}},
             "not available"),
    "psi-protocol": ({"psi": {"protocol": "ecdh"}}, "protocol"),
    "psi-receivers": ({"psi": {"receivers": ["guest"]}}, "receivers"),
    "split-horizontal": ({"split": {"layout": "horizontal"}}, "layout"),
    "fill-horizontal": ({"fill": {"layout": "horizontal"}}, "layout"),
    "scale-provider": ({"scale": {"method": "minmax", "layout": "horizontal", "provider": "he"}}, "layout"),
    "onehot-horizontal": ({"onehot": {"layout": "horizontal", "categories": {"a": [1]}}}, "layout"),
    "woe-key_bits": ({"woe": {"key_bits": 3072}}, "key_bits"),
    "woe-reveal": ({"woe": {"reveal": "both"}}, "reveal"),
    "correlation-provider": ({"correlation": {"provider": "he"}}, "provider"),
    "correlation-to": ({"correlation": {"to": ["guest"]}}, "to"),
    "train-protocol": ({"train": {"model": "logistic_regression", "protocol": "he"}}, "protocol"),
    "train-key_bits": ({"train": {"model": "secureboost", "key_bits": 3072}}, "key_bits"),
    "train-early-stopping": ({"train": {"model": "secureboost", "early_stopping_rounds": 3}},
                             "early_stopping_rounds"),
    "train-sigmoid": ({"train": {"model": "logistic_regression", "sigmoid": "pwl"}}, "sigmoid"),
    "train-provider": ({"train": {"model": "mlp", "provider": "he"}}, "provider"),
}


def load(steps_: list[dict[str, Any]]) -> jobspec.JobSpec:
    return jobspec.load({"name": JOB, "scheme": "tee", "steps": steps_, "parties": {
        "guest": {"dataset": "g.csv", "label": "y"}, "host": {"dataset": "h.csv"}}})


@pytest.fixture(scope="module")
def joined(shared_data: Path) -> pd.DataFrame:
    return learners.join({"guest": pd.read_csv(shared_data / "breast_hetero_guest.csv"),
                          "host": pd.read_csv(shared_data / "breast_hetero_host.csv")}, "id")


def run_inside(joined: pd.DataFrame, spec_steps: list[dict[str, Any]], tmp: Path) -> steps.Outcome:
    parsed = load(spec_steps).parsed_steps()
    scheme.check_steps(parsed)
    inside = steps.InsideRun(joined.copy(), job=JOB, label="guest.y", id_column="id", workdir=tmp)
    return inside.run(steps.parse(scheme.wire_steps(parsed)))


def test_the_table_covers_the_registry() -> None:
    declared = set(SUPPORTED) | {k.partition("-")[0] for k in REFUSED}
    assert set(registry.BUILTIN) <= declared, "a component is neither supported nor refused here"
    assert {c for c, r in scheme.STEPS.items() if r.refused is None} == set(SUPPORTED)
    assert set(scheme.MODELS) == {"logistic_regression", "linear_regression", "secureboost", "mlp"}


@pytest.mark.parametrize("component", sorted(SUPPORTED))
def test_supported_step_runs_inside(component: str, joined: pd.DataFrame, tmp_path: Path) -> None:
    tail, metric = SUPPORTED[component]
    outcome = run_inside(joined, [*HEAD, *tail], tmp_path)
    mine = [s for s in outcome.steps if s["component"] == component]
    assert mine and metric in mine[-1]["metrics"], outcome.steps


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_step_or_parameter_names_the_step(case: str) -> None:
    step, word = REFUSED[case]
    parsed = load([step]).parsed_steps()
    with pytest.raises(ConfigError, match=word) as info:
        scheme.check_steps(parsed)
    assert info.value.step == parsed[0].id
    with pytest.raises(ConfigError, match=word):  # the enclave checks again
        steps.parse(scheme.wire_steps(parsed))


def test_a_fixed_value_given_explicitly_is_accepted() -> None:
    scheme.check_steps(load([{"split": {"layout": "vertical"}}]).parsed_steps())


def test_woe_and_correlation_equal_the_plaintext_computation(joined: pd.DataFrame, tmp_path: Path) -> None:
    from sharedml.learn.preprocessing import apply_bins, bin_edges
    from sharedml.learn.preprocessing.woe import bin_counts, woe_iv

    outcome = run_inside(joined, [{"psi": {}}, {"woe": {"n_bins": 4}}, {"correlation": {}}], tmp_path)
    iv = outcome.steps[1]["metrics"]["iv"]
    y = joined["guest.y"].to_numpy()
    bins = apply_bins(joined["host.x3"], bin_edges(joined["host.x3"], 4, "frequency"))
    assert iv["host.x3"] == pytest.approx(woe_iv(*bin_counts(bins, y, int(bins.max()) + 1)).iv, abs=1e-6)
    x = joined.drop(columns=["id", "guest.y"])
    r = np.corrcoef(x.to_numpy(), rowvar=False)
    cross = np.abs(r[: 10, 10:])  # guest's 10 columns against host's 20
    assert outcome.steps[2]["metrics"]["max_abs_cross_correlation"] == pytest.approx(cross.max(), abs=1e-6)
    assert outcome.steps[2]["metrics"]["max_vif"] == pytest.approx(np.diag(np.linalg.inv(r)).max(), rel=1e-6)


# -- release rules --------------------------------------------------------------------------------

PIPE = [*HEAD, {"train": {"model": "secureboost", "n_estimators": 3}}, {"evaluate": {}}]


def trained(sim: SimWorld, tmp: Path, joined: pd.DataFrame, **rules: Any) -> tuple[Enclave, EnclaveKeys]:
    """An enclave that ran PIPE on two owners' uploads, each granting ``rules`` (same for both)."""
    e = Enclave(LocalSimAttester(sim.quoter()), tmp / "work", job=JOB)
    e.attest(secrets.token_bytes(32))
    holder = EnclaveKeys("X25519", signing=False)
    key = holder.bundle.to_bytes().hex()
    named = {k: {"guest": key} for k, v in rules.items() if v is True and k in ("model_to", "scores_to")}
    for owner in ("guest", "host"):
        frame = joined.filter(like=f"{owner}.").rename(columns=lambda c: c.partition(".")[2])
        frame.insert(0, "id", joined["id"])
        policy = grant(owner, ed25519.Ed25519PrivateKey.generate(), list(frame.columns),
                       algorithms=scheme.uses(), metrics=rules.get("metrics", True), **named)
        send(e, frame, policy, chunk=1 << 16)
    answer = e.run({"steps": scheme.wire_steps(load(PIPE).parsed_steps()), "label": "guest.y", "id": "id"})
    e.answer = answer  # type: ignore[attr-defined]
    return e, holder


def test_metrics_only_releases_no_model_and_no_scores(sim: SimWorld, tmp_path: Path,
                                                      joined: pd.DataFrame) -> None:
    e, _ = trained(sim, tmp_path, joined)
    assert e.answer["steps"][-1]["metrics"]["auc"] > 0.9  # type: ignore[attr-defined]
    for what, step in (("model", "train"), ("scores", "evaluate")):
        with pytest.raises(PolicyDenied, match=what):
            e.release("guest", what, step)


def test_model_and_scores_reach_the_label_holder_only(sim: SimWorld, tmp_path: Path,
                                                      joined: pd.DataFrame) -> None:
    e, holder = trained(sim, tmp_path, joined, model_to=True, scores_to=True)
    model = ReleasedModel.from_bytes(holder.open(e.release("guest", "model", "train"),
                                                 release_info(JOB, "guest")))
    scores = pd.read_parquet(io.BytesIO(holder.open(e.release("guest", "scores", "evaluate"),
                                                              release_info(JOB, "guest", "scores"))))
    test = joined.set_index("id").loc[scores["id"]].reset_index()
    np.testing.assert_allclose(model.predict(test), scores["score"], rtol=0, atol=1e-12)
    with pytest.raises(PolicyDenied):
        e.release("host", "model", "train")
    with pytest.raises(ProtocolAbort):  # a model's sealing does not open as scores
        holder.open(e.release("guest", "model", "train"), release_info(JOB, "guest", "scores"))


def test_one_owner_refusing_metrics_withholds_every_metric(sim: SimWorld, tmp_path: Path,
                                                           joined: pd.DataFrame) -> None:
    e, _ = trained(sim, tmp_path, joined, metrics=False)
    assert all(s["metrics"] == {} for s in e.answer["steps"])  # type: ignore[attr-defined]


def test_a_step_an_owner_did_not_allow_is_refused(sim: SimWorld, tmp_path: Path,
                                                  joined: pd.DataFrame) -> None:
    e = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "work", job=JOB)
    e.attest(secrets.token_bytes(32))
    frame = joined[["id", "guest.y", "guest.x0"]].rename(columns={"guest.y": "y", "guest.x0": "x0"})
    send(e, frame, grant("guest", ed25519.Ed25519PrivateKey.generate(), list(frame.columns),
                         algorithms=("psi", "split", "train", "logistic_regression")))
    with pytest.raises(PolicyDenied, match="secureboost"):
        e.run({"steps": scheme.wire_steps(load(PIPE).parsed_steps()), "label": "guest.y", "id": "id"})
