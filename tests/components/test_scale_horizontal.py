"""The ``scale`` job step on horizontally split data, run as ``sharedml run`` runs it.

Oracle: scikit-learn's MinMaxScaler / StandardScaler fitted on the pooled rows
of default_credit_homo (FATE's horizontal split, 8,000 rows and 23 features
per party). Tolerance for min-max: the pooled min and max come out of the MPC
runtime exact up to its fixed-point encoding, 2^-25 ≈ 3.0e-8 absolute at the
step's 24 fractional bits; the scaled values then differ from scikit-learn's
by at most about 3·2^-25 / range ≈ 4.4e-8 here (the smallest pooled range is
2.04). We allow 1e-6 relative to each column's range. Standard scaling: the
mean comes from a sum at 20 fractional bits (error ≤ 2^-21 · parties / n
absolute), the variance from a rescaled second sum; 1e-6 relative to the
standard deviation.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.components.dealer import end_step_at_dealer, needs_dealer, serve_step
from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.errors import ConfigError, DataError
from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS
from sharedml.platform.job_plan import decompose
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.standalone.job import run_job, run_job_reporting_cause
from sharedml.transport.recording import RecordingChannel, WireRecord

FEATURES = [f"x{i}" for i in range(23)]
FILES = {"guest": "default_credit_homo_guest.csv", "host": "default_credit_homo_host_1.csv",
         "host2": "default_credit_homo_host_2.csv"}
MINMAX_TOL = 1e-6  # relative to each column's pooled range (see module docstring)
STANDARD_TOL = 1e-6  # relative to each column's pooled standard deviation


def _spec(paths: dict[str, Path], step: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "scale-horizontal",
        "parties": {p: {"dataset": str(path), "label": "y"} for p, path in paths.items()},
        "steps": [{"scale": step}],
    }


def _frames(paths: dict[str, Path]) -> dict[str, pd.DataFrame]:
    return {p: pd.read_csv(path) for p, path in paths.items()}


def _pooled(frames: dict[str, pd.DataFrame], columns: list[str] = FEATURES) -> np.ndarray:
    return np.vstack([f[columns].to_numpy(dtype=np.float64) for f in frames.values()])


def _saved(out: Path, party: str) -> dict[str, Any]:
    saved: dict[str, Any] = json.loads((out / party / "scaler-scale.json").read_text())
    return saved


@pytest.fixture(scope="module")
def two(shared_data: Path) -> dict[str, Path]:
    return {p: shared_data / FILES[p] for p in ("guest", "host")}


@pytest.mark.slow
def test_minmax_job_as_processes_matches_sklearn_on_pooled_rows(
    two: dict[str, Path], tmp_path: Path
) -> None:
    """Three mTLS processes (guest, host, the dealer the runner adds): each party ends
    with MinMaxScaler's parameters of the pooled rows."""
    spec = _spec(two, {"method": "minmax", "layout": "horizontal"})
    assert needs_dealer(jobspec.load(spec))
    out = tmp_path / "out"
    result = run_job(spec, out, timeout=120)
    (step,) = result["steps"]
    assert set(step["parties"]) == {"guest", "host", "dealer"}
    assert step["parties"]["dealer"]["metrics"]["runtimes"] == 1  # the dealer served the max
    frames = _frames(two)
    ref = MinMaxScaler().fit(_pooled(frames))
    for party, frame in frames.items():
        saved = _saved(out, party)
        assert saved["columns"] == FEATURES and step["parties"][party]["metrics"]["columns"] == 23
        center, scale = np.array(saved["center"]), np.array(saved["scale"])
        err_min = np.abs(center - ref.data_min_) / ref.data_range_
        err_range = np.abs(scale - ref.data_range_) / ref.data_range_
        rows = frame[FEATURES].to_numpy(dtype=np.float64)
        err_rows = np.abs((rows - center) / scale - ref.transform(rows))
        print(f"minmax {party}: max |min err|/range {err_min.max():.2e}, "
              f"|range err|/range {err_range.max():.2e}, scaled rows {err_rows.max():.2e}")
        assert err_min.max() < MINMAX_TOL and err_range.max() < MINMAX_TOL
        assert err_rows.max() < MINMAX_TOL


def _run_scale_with_dealer(
    paths: dict[str, Path], tmp_path: Path, step: dict[str, Any],
    log: list[WireRecord] | None = None,
) -> dict[str, Any]:
    """The scale step at every party as threads, with the dealer functions the runner
    and the platform use (serve_step, end_step_at_dealer); returns each party's state."""
    parties = {p: PartyConfig(p, str(path), "y", ("id",)) for p, path in paths.items()}
    last = list(parties)[-1]

    def data_party(session: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        comp = registry.get("scale")()
        ctx = StepContext(session, parties[session.party], parties, state, tmp_path, "scale")
        execute(comp, ctx, comp.parse(step, "scale"))
        if session.party == last:
            end_step_at_dealer(session, "scale", "dealer")
        return state

    fns: dict[str, Any] = {p: data_party for p in parties}
    fns["dealer"] = lambda s: serve_step(s, "scale", list(parties))
    wrap = (lambda c: RecordingChannel(c, log)) if log is not None else None
    return run_in_threads(fns, [*parties, "dealer"], timeout=60, wrap=wrap, dealer="dealer")


@pytest.mark.parametrize("names", [("guest", "host"), ("guest", "host", "host2")])
def test_minmax_scaled_frames_match_sklearn(
    names: tuple[str, ...], shared_data: Path, tmp_path: Path
) -> None:
    """Each party's scaled frame (two and three parties) is MinMaxScaler's transform of
    its rows, fitted on the pooled rows; ids and labels are left alone."""
    paths = {p: shared_data / FILES[p] for p in names}
    log: list[WireRecord] = []
    out = _run_scale_with_dealer(paths, tmp_path, {"method": "minmax", "layout": "horizontal"},
                                 log)
    assert out["dealer"]["runtimes"] == 1
    frames = _frames(paths)
    ref = MinMaxScaler().fit(_pooled(frames))
    for p in names:
        scaled = out[p]["data"]
        assert scaled["id"].astype(int).tolist() == frames[p]["id"].tolist()
        assert (scaled["y"].astype(int) == frames[p]["y"]).all()
        err = np.abs(scaled[FEATURES].to_numpy() - ref.transform(frames[p][FEATURES].to_numpy()))
        assert err.max() < MINMAX_TOL
    # Wire: no party's own column extremes, as the runtime encodes them, cross it in the
    # clear (its shares are random), and the dealer receives only request headers.
    fp = FixedPoint(MINMAX_FRAC_BITS)
    for p in names:
        x = frames[p][FEATURES].to_numpy()
        own = fp.encode(np.concatenate([x.max(axis=0), -x.min(axis=0)])).view(np.int64)
        sent = [r for r in log if r.frm == p and isinstance(r.value, np.ndarray)
                and r.value.dtype.itemsize == 8]
        assert sent and not any(np.isin(own, np.asarray(r.value).view(np.int64)).any()
                                for r in sent)
    to_dealer = [r for r in log if r.to == "dealer"]
    assert to_dealer and all(r.tag.endswith("/dealer/req") for r in to_dealer)


def test_standard_job_matches_sklearn_without_a_dealer(
    two: dict[str, Path], tmp_path: Path
) -> None:
    spec = _spec(two, {"method": "standard", "layout": "horizontal"})
    assert not needs_dealer(jobspec.load(spec))
    out = tmp_path / "out"
    result = run_job(spec, out, embedded=True, timeout=60)
    (step,) = result["steps"]
    assert set(step["parties"]) == {"guest", "host"}
    frames = _frames(two)
    ref = StandardScaler().fit(_pooled(frames))
    for party, frame in frames.items():
        saved = _saved(out, party)
        center, scale = np.array(saved["center"]), np.array(saved["scale"])
        err_mean = np.abs(center - ref.mean_) / ref.scale_
        err_std = np.abs(scale - ref.scale_) / ref.scale_
        rows = frame[FEATURES].to_numpy(dtype=np.float64)
        err_rows = np.abs((rows - center) / scale - ref.transform(rows))
        print(f"standard {party}: max |mean err|/std {err_mean.max():.2e}, "
              f"|std err|/std {err_std.max():.2e}, scaled rows {err_rows.max():.2e}")
        assert err_mean.max() < STANDARD_TOL and err_std.max() < STANDARD_TOL
        # z = (x - mean) / std: the errors above give |dz| <= tol * (1 + |z|).
        assert (err_rows <= STANDARD_TOL * (1 + np.abs(ref.transform(rows)))).all()


def test_the_platform_gives_minmax_horizontal_steps_the_dealer(two: dict[str, Path]) -> None:
    """The scheduler decides with the same needs_dealer: only secret-shared scaling gets one."""
    cases = {("minmax", "horizontal", None): "dealer", ("minmax", "horizontal", "he"): None,
             ("minmax", "vertical", None): None, ("standard", "horizontal", None): None}
    for (method, layout, provider), dealer in cases.items():
        step = {"method": method, "layout": layout, **({"provider": provider} if provider else {})}
        spec = _spec(two, step)
        if layout == "vertical":  # vertical rows are aligned by psi first
            spec["steps"] = [{"psi": {}}, *spec["steps"]]
        plan = decompose(jobspec.load(spec))[-1]
        assert plan.dealer == dealer
    with pytest.raises(ConfigError, match="provider"):
        jobspec.load(_spec(two, {"method": "standard", "provider": "he"})).parsed_steps()


def _bad_copy(src: Path, dst: Path, edit: Any) -> Path:
    frame = pd.read_csv(src)
    edit(frame)
    frame.to_csv(dst, index=False)
    return dst


@pytest.mark.parametrize("method", ["minmax", "standard"])
def test_nan_column_fails_naming_party_and_step(
    method: str, two: dict[str, Path], tmp_path: Path
) -> None:
    def nan_in_x5(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[::7], "x5"] = np.nan

    paths = {"guest": two["guest"],
             "host": _bad_copy(two["host"], tmp_path / "host.csv", nan_in_x5)}
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        run_job_reporting_cause(_spec(paths, {"method": method, "layout": "horizontal"}),
                                tmp_path / "out", embedded=True, timeout=30)
    assert time.monotonic() - start < 25  # every party fails at once: nobody waits it out
    err = info.value
    assert err.party == "host" and err.step == "scale"
    assert "NaN" in str(err) and "x5" in str(err) and "fill" in (err.remedy or "")


def test_party_without_rows_fails_naming_party_and_step(
    two: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text(two["host"].read_text().splitlines()[0] + "\n")
    paths = {"guest": two["guest"], "host": empty}
    with pytest.raises(PartyFailed) as info:
        run_job(_spec(paths, {"method": "minmax", "layout": "horizontal"}), tmp_path / "out",
                embedded=True, timeout=30)
    err = info.value.error
    assert isinstance(err, DataError)
    assert err.party == "host" and err.step == "scale" and "no rows" in str(err)


def test_fill_horizontal_mean_pools_and_median_is_refused(
    two: dict[str, Path], tmp_path: Path
) -> None:
    """fill (pooled mean by secure sums) then standard scaling: the scaler's centre and
    scale are StandardScaler's on the pooled rows filled with the pooled mean."""
    def holes(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[:40], "x3"] = np.nan

    paths = {"guest": _bad_copy(two["guest"], tmp_path / "guest.csv", holes), "host": two["host"]}
    spec = _spec(paths, {})
    spec["steps"] = [{"fill": {"strategy": "mean", "layout": "horizontal"}},
                     {"scale": {"method": "standard", "layout": "horizontal"}}]
    out = tmp_path / "out"
    result = run_job(spec, out, embedded=True, timeout=60)
    fill = result["steps"][0]["parties"]
    assert fill["guest"]["metrics"]["filled_cells"] == 40
    assert fill["host"]["metrics"]["filled_cells"] == 0
    pooled = _pooled(_frames(paths))
    filled = np.where(np.isnan(pooled), np.nanmean(pooled, axis=0), pooled)
    ref = StandardScaler().fit(filled)
    for party in paths:
        saved = _saved(out, party)
        assert np.abs(np.array(saved["center"]) - ref.mean_).max() < STANDARD_TOL
        assert np.abs(np.array(saved["scale"]) / ref.scale_ - 1).max() < STANDARD_TOL
    spec["steps"] = [{"fill": {"strategy": "median", "layout": "horizontal"}}]
    with pytest.raises(ConfigError, match="median") as info:
        run_job_reporting_cause(spec, tmp_path / "out2", embedded=True, timeout=30)
    assert info.value.step == "fill" and "mean" in (info.value.remedy or "")


#: The Paillier test's columns: its comparisons cost one boolean triple per bit per
#: column, so a few columns (large, small and negative ranges) stand for all 23.
HE_FEATURES = ["x0", "x5", "x11", "x17"]


@pytest.mark.slow
def test_minmax_provider_he_needs_no_dealer(two: dict[str, Path], tmp_path: Path) -> None:
    """``provider: he``: two parties make the comparisons' randomness with Paillier."""
    narrow = {p: tmp_path / f"{p}.csv" for p in two}
    for p, path in two.items():
        pd.read_csv(path)[["id", "y", *HE_FEATURES]].to_csv(narrow[p], index=False)
    spec = _spec(narrow, {"method": "minmax", "layout": "horizontal", "provider": "he"})
    assert not needs_dealer(jobspec.load(spec))
    out = tmp_path / "out"
    (step,) = run_job(spec, out, embedded=True, timeout=300)["steps"]
    assert set(step["parties"]) == {"guest", "host"}
    ref = MinMaxScaler().fit(_pooled(_frames(narrow), HE_FEATURES))
    for party in two:
        saved = _saved(out, party)
        assert (np.abs(np.array(saved["center"]) - ref.data_min_) / ref.data_range_).max() < MINMAX_TOL
        assert (np.abs(np.array(saved["scale"]) / ref.data_range_ - 1)).max() < MINMAX_TOL


@pytest.mark.slow
def test_minmax_job_on_the_platform_uses_its_dealer_node(
    two: dict[str, Path], tmp_path: Path
) -> None:
    """Through the REST API of a local cluster (platform, two data nodes and the dealer
    node as mTLS processes): the scheduler gives the step a dealer task, and each node's
    fitted scaler is MinMaxScaler's on the pooled rows."""
    import httpx

    from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare

    root = tmp_path / "cluster"
    prepare(root, DeploymentSpec({"bank": {"bank_rows": two["guest"]},
                               "shop": {"shop_rows": two["host"]}},
                              heartbeat_s=0.3, task_timeout_s=20.0, max_attempts=1))
    spec = {"name": "scale-h", "steps": [{"scale": {"method": "minmax", "layout": "horizontal"}}],
            "parties": {"bank": {"dataset": "bank_rows", "label": "y"},
                        "shop": {"dataset": "shop_rows", "label": "y"}}}
    with LocalDeployment(root) as cluster:
        cluster.start(wait=90)
        url, tokens = cluster.info["url"] + "/api/v1", cluster.tokens()
        tls = ssl.create_default_context(cafile=cluster.info["ca"])

        def call(method: str, path: str, user: str = "analyst", **kw: Any) -> Any:
            r = httpx.request(method, url + path, timeout=60, **kw, verify=tls,
                              headers={"Authorization": f"Bearer {tokens[user]}"})
            assert r.status_code < 300, r.text
            return r.json()

        job_id = call("POST", "/jobs", json={"spec": spec})["id"]
        cluster.approve_all(job_id)  # each owner signs the spec with its approval key
        deadline = time.monotonic() + 120
        while (job := call("GET", f"/jobs/{job_id}"))["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "succeeded", job
        steps = call("GET", f"/jobs/{job_id}/result")["steps"]
    assert steps["scale"]["dealer"]["metrics"]["runtimes"] == 1
    ref = MinMaxScaler().fit(_pooled(_frames(two)))
    for party in ("bank", "shop"):
        (path,) = (root / "nodes" / party).rglob(f"{job_id}/scaler-scale.json")
        saved = json.loads(path.read_text())
        assert (np.abs(np.array(saved["center"]) - ref.data_min_) / ref.data_range_).max() < MINMAX_TOL
        assert (np.abs(np.array(saved["scale"]) / ref.data_range_ - 1)).max() < MINMAX_TOL


@pytest.mark.slow
def test_horizontal_split_then_minmax_fits_on_pooled_train_rows(
    two: dict[str, Path], tmp_path: Path
) -> None:
    """Each party splits its own rows (seeded, stratified on its own labels, nothing
    sent); min-max then fits on the pooled training rows only."""
    spec = _spec(two, {"method": "minmax", "layout": "horizontal"})
    spec["steps"].insert(0, {"split": {"layout": "horizontal", "seed": 7, "test_size": 0.25}})
    out = tmp_path / "out"
    result = run_job(spec, out, timeout=120)
    split_step = result["steps"][0]
    frames = _frames(two)
    from sklearn.model_selection import train_test_split

    train_rows = []
    for party, frame in frames.items():
        train, test = train_test_split(np.arange(len(frame)), test_size=0.25, random_state=7,
                                       stratify=frame["y"].to_numpy())
        assert split_step["parties"][party]["metrics"] == {
            "train_rows": len(train), "test_rows": len(test)}
        train_rows.append(frame[FEATURES].to_numpy(dtype=np.float64)[np.sort(train)])
    ref = MinMaxScaler().fit(np.vstack(train_rows))
    whole = MinMaxScaler().fit(_pooled(frames))
    assert not np.allclose(ref.data_max_, whole.data_max_)  # the split changes the fit
    for party in frames:
        saved = _saved(out, party)
        err = np.abs(np.array(saved["center"]) - ref.data_min_) / ref.data_range_
        assert err.max() < MINMAX_TOL
        err = np.abs(np.array(saved["scale"]) - ref.data_range_) / ref.data_range_
        assert err.max() < MINMAX_TOL


def test_horizontal_split_refuses_a_party_with_one_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1], "x0": [0.5], "y": [1]})
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    parties = {"solo": PartyConfig("solo", str(path), "y", ("id",))}

    def fn(session: Any) -> None:
        comp = registry.get("split")()
        ctx = StepContext(session, parties["solo"], parties, {}, tmp_path, "split")
        execute(comp, ctx, comp.parse({"layout": "horizontal"}, "split"))

    with pytest.raises(PartyFailed) as info:
        run_in_threads(fn, ["solo"])
    err = info.value.error
    assert isinstance(err, DataError) and err.party == "solo" and err.step == "split"
    assert "1 rows cannot be split" in str(err)
