"""A horizontal job on a local deployment (``sharedml up``): the platform, three bank
nodes and the dealer node as separate processes over mutual TLS, driven by the SDK.

Three banks hold the same columns of different customers
(``default_credit_homo_*``). The job (horizontal split, FedAvg logistic
regression with client-level DP, horizontal predict and evaluate) goes in
through :class:`sharedml.sdk.Client`; the dealer node aggregates. The
platform records every party's pooled metrics (the same at each) and the DP
figures (ε, δ, clip, noise multiplier, ε equal to ``dp_accounting``'s for
the run), and the AUC is the one ``sharedml run`` gives for the same spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare

pytestmark = pytest.mark.slow

BANKS = ("guest", "host_1", "host_2")


def horizontal_spec(files: dict[str, str]) -> dict[str, Any]:
    train = {"layout": "horizontal", "model": "logistic_regression", "rounds": 6,
             "learning_rate": 0.1, "dp_clip": 2.0, "dp_noise_multiplier": 0.02}
    return {
        "name": "three-banks-fedavg",
        "parties": {b: {"dataset": files[b], "label": "y"} for b in BANKS},
        "steps": [
            {"split": {"layout": "horizontal", "test_size": 0.25, "seed": 7}},
            {"train": train},
            {"predict": {"layout": "horizontal"}},
            {"evaluate": {"layout": "horizontal", "metrics": ["auc", "ks"]}},
        ],
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("horizontal")
    parties = {b: {f"{b}_customers": shared_data / f"default_credit_homo_{b}.csv"} for b in BANKS}
    prepare(root, DeploymentSpec(parties, heartbeat_s=0.3, task_timeout_s=30.0, max_attempts=1))
    with LocalDeployment(root) as running:
        running.start(wait=120)
        yield running


def test_a_horizontal_job_through_the_sdk_on_a_local_deployment(
    cluster: LocalDeployment, shared_data: Path, tmp_path: Path
) -> None:
    from sharedml.fl.dp import epsilon
    from sharedml.standalone import run_job

    with cluster.client("analyst") as analyst:
        job = analyst.submit(horizontal_spec({b: f"{b}_customers" for b in BANKS}))
        cluster.approve_all(job["id"])  # each bank's owner signs the spec with its key
        done = analyst.wait(job["id"], timeout=600, poll=0.5)
        assert done["state"] == "succeeded", done.get("reason")
        steps = analyst.result(job["id"])["steps"]
        tasks = analyst.tasks(job["id"])

    aggregated = {t["step_id"] for t in tasks if t["party"] == "dealer"}
    assert {"train", "evaluate"} <= aggregated
    assert steps["train"]["dealer"]["metrics"]["role"] == "aggregator"
    expected = epsilon([0.02] * 6, 1e-5)
    for party in (*BANKS, "dealer"):
        m = steps["train"][party]["metrics"]
        assert m["dp_epsilon"] == pytest.approx(expected, rel=1e-9), party
        assert (m["dp_delta"], m["dp_clip"], m["dp_noise_multiplier"]) == (1e-5, 2.0, 0.02)
    pooled = {p: steps["evaluate"][p]["metrics"] for p in (*BANKS, "dealer")}
    assert len({(m["auc"], m["ks"], m["rows"]) for m in pooled.values()}) == 1
    assert pooled["guest"]["rows"] == 6000 and pooled["guest"]["parties"] == 3

    local = run_job(horizontal_spec({b: str(shared_data / f"default_credit_homo_{b}.csv")
                                     for b in BANKS}), tmp_path, embedded=True, timeout=300)
    local_auc = next(s for s in local["steps"] if s["id"] == "evaluate")["parties"]["guest"][
        "metrics"]["auc"]
    print(f"horizontal AUC platform {pooled['guest']['auc']:.4f}, sharedml run {local_auc:.4f}, "
          f"epsilon {expected:.3f}")
    # the noise is fresh randomness in each run (as DP requires), so σ is small here to make
    # two runs comparable; the price is a large ε, which is what is checked above
    assert pooled["guest"]["auc"] == pytest.approx(local_auc, abs=0.02)


def test_a_bank_aggregates_on_the_platform_without_the_dealer_node(
    cluster: LocalDeployment, shared_data: Path
) -> None:
    """``aggregator: guest``: the guest node runs both sides of train and evaluate, the
    dealer node gets no task of this job, and every bank holds the same pooled metrics."""
    spec = horizontal_spec({b: f"{b}_customers" for b in BANKS})
    spec["name"] = "guest-aggregates"
    spec["steps"][1]["train"].update(aggregator="guest", rounds=3)
    spec["steps"][3]["evaluate"]["aggregator"] = "guest"
    with cluster.client("analyst") as analyst:
        job = analyst.submit(spec)
        cluster.approve_all(job["id"])
        done = analyst.wait(job["id"], timeout=600, poll=0.5)
        assert done["state"] == "succeeded", done.get("reason")
        steps = analyst.result(job["id"])["steps"]
        tasks = analyst.tasks(job["id"])

    assert {t["party"] for t in tasks} == set(BANKS)
    assert steps["train"]["guest"]["metrics"]["role"] == "client and aggregator"
    pooled = {p: steps["evaluate"][p]["metrics"] for p in BANKS}
    assert len({(m["auc"], m["ks"], m["rows"]) for m in pooled.values()}) == 1
    assert pooled["host_1"]["rows"] == 6000 and pooled["host_1"]["auc"] > 0.6
