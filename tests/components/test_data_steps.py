"""The psi / split / fill / scale / woe job steps, run as every party would run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sharedml.components import PartyConfig, StepContext, execute, registry
from sharedml.errors import DataError
from sharedml.standalone import PartyFailed, run_in_threads, run_job

STEPS = [
    ("psi", {}),
    ("split", {"test_size": 0.3, "seed": 42, "stratify": "y"}),
    ("fill", {"strategy": "mean"}),
    ("scale", {"method": "standard"}),
]


@pytest.fixture()
def breast(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    guest = pd.read_csv(shared_data / "breast_hetero_guest.csv").sample(frac=0.8, random_state=3)
    host = pd.read_csv(shared_data / "breast_hetero_host.csv").sample(frac=0.8, random_state=4)
    guest.loc[guest.index[:5], "x3"] = np.nan  # something for fill to do
    paths = {"guest": tmp_path / "guest.csv", "host": tmp_path / "host.csv"}
    guest.to_csv(paths["guest"], index=False)
    host.to_csv(paths["host"], index=False)
    return paths


def _run_steps(paths: dict[str, Path], tmp_path: Path, steps: list[tuple[str, dict]],
               helpers: tuple[str, ...] = ()) -> dict[str, Any]:
    parties = {
        "guest": PartyConfig("guest", str(paths["guest"]), "y", ("id",)),
        "host": PartyConfig("host", str(paths["host"]), None, ("id",)),
    }

    def fn(session):
        if session.party not in parties:
            return None  # a helper (e.g. a dealer) runs no data step
        state: dict[str, Any] = {}
        metrics = {}
        for name, raw in steps:
            comp = registry.get(name)()
            ctx = StepContext(session, parties[session.party], parties, state, tmp_path, name)
            metrics[name] = execute(comp, ctx, comp.parse(raw, name)).metrics
        return state, metrics

    return run_in_threads(fn, [*parties, *helpers])


def test_steps_align_split_fill_and_scale(breast: dict[str, Path], tmp_path: Path) -> None:
    out = _run_steps(breast, tmp_path, STEPS, helpers=("dealer",))
    (g_state, g_metrics), (h_state, h_metrics) = out["guest"], out["host"]
    assert h_metrics["split"] == g_metrics["split"]
    guest, host = (pd.read_csv(breast[p]) for p in ("guest", "host"))
    joined = guest.merge(host, on="id", suffixes=("_g", "_h"))
    # psi: same ids, same order, equal to the inner join.
    assert g_state["data"]["id"].tolist() == h_state["data"]["id"].tolist()
    assert sorted(g_state["data"]["id"].astype(int)) == sorted(joined["id"])
    assert g_metrics["psi"]["intersection"] == len(joined)
    assert set(g_metrics["psi"]) == {"set_sizes", "intersection"}  # public sizes only
    # split: identical rows, stratified on the guest's label like scikit-learn.
    assert g_state["test"]["id"].tolist() == h_state["test"]["id"].tolist()
    ids = g_state["data"]["id"].astype(int).to_numpy()
    _, test_idx = train_test_split(np.arange(len(ids)), test_size=0.3, random_state=42,
                                   stratify=g_state["data"]["y"].to_numpy())
    assert sorted(g_state["test"]["id"].astype(int)) == sorted(ids[test_idx])
    # fill + scale: fitted on train only, as scikit-learn would.
    raw_train = guest.set_index("id").loc[g_state["train"]["id"].astype(int), "x3"].to_numpy()
    filled = np.where(np.isnan(raw_train), np.nanmean(raw_train), raw_train)
    expected = StandardScaler().fit_transform(filled.reshape(-1, 1)).ravel()
    assert np.allclose(g_state["train"]["x3"].to_numpy(), expected)
    assert g_metrics["fill"]["filled_cells"] >= 1
    assert np.allclose(h_state["train"][[f"x{i}" for i in range(20)]].mean(), 0, atol=1e-9)
    assert g_state["train"]["y"].isin([0, 1]).all()  # the label is not scaled


def test_woe_step_reports_iv_at_label_holder(breast: dict[str, Path], tmp_path: Path) -> None:
    out = _run_steps(breast, tmp_path, [("psi", {}), ("woe", {"n_bins": 5, "key_bits": 1024})])
    g_metrics, h_metrics = out["guest"][1], out["host"][1]
    assert len(g_metrics["woe"]["iv"]) == 10 + 20
    assert all(v >= 0 for v in g_metrics["woe"]["iv"].values())
    assert "iv" not in h_metrics["woe"]


def test_binning_step(breast: dict[str, Path], tmp_path: Path) -> None:
    steps = [("psi", {}), ("split", {"seed": 1}), ("binning", {"n_bins": 4})]
    out = _run_steps(breast, tmp_path, steps)
    h_state = out["host"][0]
    train, test = h_state["train"], h_state["test"]
    for c in ("x0", "x7"):
        counts = np.bincount(train[c].astype(int))
        assert len(counts) == 4 and counts.min() >= len(train) // 4 - 2
        assert set(test[c].unique()) <= {0.0, 1.0, 2.0, 3.0}
    assert set(out["guest"][0]["train"]["y"].unique()) == {0, 1}  # labels are not binned


def test_psi_step_reports_bad_data(tmp_path: Path) -> None:
    paths = {"guest": tmp_path / "g.csv", "host": tmp_path / "h.csv"}
    paths["guest"].write_text("id,y,x\n1,0,0.5\n1,1,0.7\n2,0,abc\n")
    paths["host"].write_text("id,z\n1,3\n2,4\n")
    with pytest.raises(PartyFailed) as info:
        _run_steps(paths, tmp_path, [("psi", {})])
    err = info.value.error
    assert isinstance(err, DataError) and err.party == "guest"
    assert "duplicate id" in str(err) and "lines 2, 3" in str(err)


def test_job_spec_runs_end_to_end(breast: dict[str, Path], tmp_path: Path) -> None:
    spec = {
        "name": "prep",
        "parties": {"guest": {"dataset": str(breast["guest"]), "label": "y"},
                    "host": {"dataset": str(breast["host"])}},
        "steps": [{name: params} for name, params in STEPS],
    }
    result = run_job(spec, tmp_path / "out", embedded=True)
    text = json.dumps(result)
    assert [s["component"] for s in result["steps"]] == ["psi", "split", "fill", "scale"]
    guest = pd.read_csv(breast["guest"])
    assert not any(str(v) in text for v in guest["id"].head(20) if len(str(v)) > 4)


def test_psi_step_protocols_agree(breast: dict[str, Path], tmp_path: Path) -> None:
    # auto (KKRT for two parties) and ECDH align the same rows in the same order,
    # so a seeded split downstream picks the same rows whichever protocol ran.
    frames = {}
    for protocol in ("auto", "ecdh"):
        out = _run_steps(breast, tmp_path, [("psi", {"protocol": protocol})])
        assert out["guest"][1]["psi"]["intersection"] == len(out["guest"][0]["data"])
        frames[protocol] = {p: out[p][0]["data"] for p in ("guest", "host")}
    for p in ("guest", "host"):
        pd.testing.assert_frame_equal(frames["auto"][p], frames["ecdh"][p])
    assert frames["auto"]["guest"]["id"].tolist() == frames["auto"]["host"]["id"].tolist()
