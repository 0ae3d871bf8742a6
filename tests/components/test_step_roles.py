"""Every step declares who takes part, so no step waits for a party that does not run it.

Issue 14 item 5: ``psi → describe → correlation`` under ``sharedml run`` hung
(``describe`` gathered with the dealer, which only serves MPC runtimes). Now
:meth:`Component.roles` says whether the dealer takes part and
:func:`~sharedml.components.execute` gives the step a channel to those roles
only. The matrix runs every built-in component with 2 and 3 data parties, with
a dealer and without, to completion or a clear refusal (a
:class:`~sharedml.errors.ConfigError` naming the step) — never a timeout.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sharedml.components import jobspec, registry
from sharedml.components.base import DATA, DEALER
from sharedml.datasets import DatasetFiles
from sharedml.errors import ChannelError, ConfigError
from sharedml.standalone import PartyFailed, run_in_threads, run_job
from sharedml.standalone.job import PartyJob, dealer_main, party_main

#: Each receive waits this long at most: a step waiting for a party that never runs
#: it fails in seconds instead of hanging (the bug took the 600 s default per receive).
WAIT_S = 60.0

LR = {"model": "logistic_regression", "protocol": "ss", "epochs": 1, "batch_size": 128}
#: Each component after the steps it needs, with small parameters.
PIPELINES: dict[str, list[dict[str, Any]]] = {
    "describe": [{"describe": {}}],
    "psi": [{"psi": {}}],
    "split": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1, "stratify": "y"}}],
    "scale": [{"psi": {}}, {"scale": {}}],
    "fill": [{"psi": {}}, {"fill": {}}],
    "woe": [{"psi": {}}, {"woe": {"n_bins": 4, "key_bits": 1024}}],
    "binning": [{"psi": {}}, {"binning": {"n_bins": 4}}],
    "correlation": [{"psi": {}}, {"correlation": {}}],
    "onehot": [{"psi": {}}, {"onehot": {"columns": []}}],
    "train": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}}, {"train": LR}],
    "predict": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}}, {"train": LR},
                {"predict": {}}],
    "evaluate": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}}, {"train": LR},
                 {"evaluate": {}}],
    "cv": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}},
           {"cv": {"train": LR, "folds": 2}}],
    "tune": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 1}},
             {"tune": {"train": LR, "folds": 2, "trials": 1,
                       "space": {"l2": {"low": 1e-4, "high": 1e-2, "log": True}}}}],
}


def test_every_builtin_component_is_in_the_matrix() -> None:
    assert set(PIPELINES) == set(registry.BUILTIN)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """The breast set: the bank's label and features, the rest split over two partners."""
    root = tmp_path_factory.mktemp("roles")
    guest = pd.read_csv(shared_data / "breast_hetero_guest.csv")
    host = pd.read_csv(shared_data / "breast_hetero_host.csv")
    cols = [c for c in host.columns if c != "id"]
    paths = {"bank": root / "bank.csv", "shop": root / "shop.csv", "ins": root / "ins.csv"}
    guest.to_csv(paths["bank"], index=False)
    host[["id", *cols[:10]]].to_csv(paths["shop"], index=False)
    host[["id", *cols[10:]]].to_csv(paths["ins"], index=False)
    return paths


def _spec(tables: dict[str, Path], component: str, n_parties: int) -> dict[str, Any]:
    parties: dict[str, Any] = {"bank": {"dataset": str(tables["bank"]), "label": "y"},
                               "shop": {"dataset": str(tables["shop"])}}
    if n_parties == 3:
        parties["ins"] = {"dataset": str(tables["ins"])}
    return {"name": f"roles-{component}", "parties": parties, "steps": PIPELINES[component]}


def _run(spec: dict[str, Any], out: Path, dealer: str | None) -> dict[str, Any]:
    """Every party (and ``dealer``, if any) as threads, whatever the spec would add."""
    parsed = jobspec.load(spec)
    job = PartyJob(tuple(parsed.parsed_steps()), parsed.party_configs(), out, DatasetFiles(out),
                   step_timeout=4 * WAIT_S)
    fns: dict[str, Any] = {p: partial(party_main, job) for p in job.parties}
    if dealer is not None:
        fns[dealer] = partial(dealer_main, job)
    return run_in_threads(fns, list(fns), job=parsed.name, timeout=WAIT_S, dealer=dealer)


@pytest.mark.slow
@pytest.mark.parametrize("with_dealer", [True, False], ids=["dealer", "no-dealer"])
@pytest.mark.parametrize("n_parties", [2, 3])
@pytest.mark.parametrize("component", sorted(PIPELINES))
def test_component_completes_or_refuses_clearly(
    component: str, n_parties: int, with_dealer: bool, tables: dict[str, Path], tmp_path: Path
) -> None:
    spec = _spec(tables, component, n_parties)
    try:
        results = _run(spec, tmp_path, "dealer" if with_dealer else None)
    except PartyFailed as exc:
        # a refusal is a clear error of the step itself, never a party left waiting
        assert not isinstance(exc.error, ChannelError), exc.lines()
        assert isinstance(exc.error, ConfigError), exc.lines()
        assert exc.error.step is not None, exc.lines()
        print(f"{component} x {n_parties} parties x dealer={with_dealer}: refused: "
              f"{exc.error.message}")
        return
    last = PIPELINES[component][-1]
    step_id = next(iter(last))
    for party in ("bank", "shop", "ins")[:n_parties]:
        assert [s["id"] for s in results[party]["steps"]][-1] == step_id
    print(f"{component} x {n_parties} parties x dealer={with_dealer}: completed")


def test_roles_say_whether_the_dealer_takes_part() -> None:
    def roles(component: str, raw: dict[str, Any]) -> tuple[str, ...]:
        cls = registry.get(component)
        return cls.roles(cls.parse(raw, component))

    assert roles("describe", {}) == (DATA,)
    assert roles("psi", {}) == (DATA,)
    assert roles("correlation", {}) == (DATA, DEALER)
    assert roles("correlation", {"provider": "he"}) == (DATA,)
    assert roles("train", LR) == (DATA, DEALER)
    assert roles("train", {**LR, "protocol": "he", "batch_size": 256}) == (DATA,)
    assert roles("scale", {}) == (DATA,)
    assert roles("scale", {"method": "minmax", "layout": "horizontal"}) == (DATA, DEALER)
    assert roles("predict", {}) == (DATA, DEALER)


def test_describe_between_psi_and_correlation_runs_under_sharedml_run(
    tables: dict[str, Path], tmp_path: Path
) -> None:
    """The reported hang, as ``sharedml run`` runs it: the spec adds the dealer."""
    spec = _spec(tables, "describe", 2)
    spec["steps"] = [{"psi": {}}, {"describe": {}}, {"correlation": {}}]
    result = run_job(spec, tmp_path, embedded=True, timeout=WAIT_S, step_timeout=4 * WAIT_S)
    steps = {s["id"]: s["parties"] for s in result["steps"]}
    assert steps["describe"]["bank"]["metrics"]["rows_by_party"] == {"bank": 569, "shop": 569}
    assert steps["correlation"]["dealer"]["metrics"]["runtimes"] == 1
