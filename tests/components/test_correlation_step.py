"""The ``correlation`` job step: joint Pearson correlation and VIF under MPC.

Oracle: ``pandas.DataFrame.corr()`` on the plaintext inner join of
default_credit_hetero (guest: 13 features and the label ``y``, host: 10
features; 30,000 rows), and numpy's ``diag(inv(R))`` for the VIFs.

Tolerances. Matrix: 1e-3 absolute, as the issue asks; the step's worst-case
bound is ``2^-24·(√n + 1)`` ≈ 1.0e-5 at n = 30,000 (see
:mod:`sharedml.components.stats`). VIF: a perturbation ``ΔR`` moves
``VIF_j = (R⁻¹)_jj`` by ``|(R⁻¹ ΔR R⁻¹)_jj| ≤ VIF_j · ‖ΔR‖₂ / λ_min(R)`` to
first order, and ``‖ΔR‖₂ ≤ d·max|ΔR|``; the tests allow twice that relative
error, computed from the matrix error they measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.components.dealer import end_step_at_dealer, needs_dealer, serve_step
from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.errors import ConfigError, DataError
from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS
from sharedml.learn.stats.correlation import standardise
from sharedml.platform.job_plan import decompose
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.standalone.job import run_job, run_job_reporting_cause
from sharedml.transport.recording import RecordingChannel, WireRecord

GUEST, HOST = "default_credit_hetero_guest.csv", "default_credit_hetero_host.csv"
MATRIX_TOL = 1e-3
SAMPLE = 2000  # rows of the quicker tests' copies


def _spec(paths: dict[str, Path], params: dict[str, Any] | None = None,
          before: tuple[str, ...] = ("psi",)) -> dict[str, Any]:
    return {
        "name": "correlation",
        "parties": {"guest": {"dataset": str(paths["guest"]), "label": "y"},
                    "host": {"dataset": str(paths["host"])}},
        "steps": [*({s: {}} for s in before), {"correlation": params or {}}],
    }


def _joined(paths: dict[str, Path]) -> pd.DataFrame:
    """The plaintext inner join, features namespaced ``party.column`` (label dropped)."""
    g = pd.read_csv(paths["guest"]).drop(columns="y").set_index("id").add_prefix("guest.")
    h = pd.read_csv(paths["host"]).set_index("id").add_prefix("host.")
    return g.join(h, how="inner")


def _saved(out: Path, party: str, step: str = "correlation") -> dict[str, Any]:
    saved: dict[str, Any] = json.loads((out / party / f"correlation-{step}.json").read_text())
    return saved


def _as_float(rows: list[Any]) -> np.ndarray:
    return np.array([[np.nan if c is None else c for c in row] for row in rows], dtype=float)


def _check_against_pandas(saved: dict[str, Any], joined: pd.DataFrame) -> tuple[float, float]:
    """Max |matrix error| and max relative VIF error; asserts the module's tolerances."""
    names = saved["columns"]
    ref = joined[names].corr().to_numpy()
    got = _as_float(saved["matrix"])
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    err = float(np.nanmax(np.abs(got - ref)))
    assert err < MATRIX_TOL
    ref_vif = np.diag(np.linalg.inv(ref))
    vif = np.array(saved["vif"], dtype=float)
    rel = float((np.abs(vif - ref_vif) / ref_vif).max())
    bound = 2 * len(names) * err / np.linalg.eigvalsh(ref).min()
    assert rel <= bound, (rel, bound)
    return err, rel


@pytest.fixture(scope="module")
def full(shared_data: Path) -> dict[str, Path]:
    return {"guest": shared_data / GUEST, "host": shared_data / HOST}


@pytest.fixture(scope="module")
def sample(full: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first SAMPLE rows of each side (their ids mostly differ: PSI still aligns them)."""
    d = tmp_path_factory.mktemp("sample")
    out = {}
    for p, src in full.items():
        out[p] = d / f"{p}.csv"
        pd.read_csv(src).head(SAMPLE).to_csv(out[p], index=False)
    return out


def _edited(paths: dict[str, Path], party: str, dst: Path, edit: Any) -> dict[str, Path]:
    """A copy of ``party``'s file, edited in place by ``edit`` or replaced by what it returns."""
    frame = pd.read_csv(paths[party])
    changed = edit(frame)
    (frame if changed is None else changed).to_csv(dst, index=False)
    return {**paths, party: dst}


@pytest.mark.slow
def test_job_as_processes_matches_pandas_on_the_join(full: dict[str, Path], tmp_path: Path) -> None:
    """psi + correlation as ``sharedml run`` runs it (three mTLS processes with the dealer):
    both parties get pandas' correlation matrix of the join and numpy's VIFs."""
    spec = _spec(full)
    assert needs_dealer(jobspec.load(spec))
    result = run_job(spec, tmp_path / "out", timeout=120)
    psi, corr = result["steps"]
    assert psi["parties"]["guest"]["metrics"]["intersection"] == 30000
    assert corr["parties"]["dealer"]["metrics"]["runtimes"] == 1
    joined = _joined(full)
    guest, host = _saved(tmp_path / "out", "guest"), _saved(tmp_path / "out", "host")
    assert guest["columns"] == [f"guest.x{i}" for i in range(13)] + [f"host.x{i}" for i in range(10)]
    assert guest["matrix"] == host["matrix"] and guest["rows"] == 30000
    err, rel = _check_against_pandas(guest, joined)
    print(f"correlation 30000x23: max |R err| {err:.2e}, max VIF rel err {rel:.2e}")
    ref = joined[guest["columns"]].corr().to_numpy()
    metrics = corr["parties"]["guest"]["metrics"]
    assert metrics["columns"] == 23 and metrics["constant_columns"] == 0
    assert abs(metrics["max_abs_cross_correlation"] - np.abs(ref[:13, 13:]).max()) < MATRIX_TOL
    assert abs(metrics["max_vif"] / np.diag(np.linalg.inv(ref)).max() - 1) < 1e-3


def test_only_the_receivers_get_the_matrix(sample: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_job(_spec(sample, {"to": ["guest"]}), out, embedded=True, timeout=60)
    corr = result["steps"][1]["parties"]
    assert not (out / "host" / "correlation-correlation.json").exists()
    assert corr["host"]["metrics"] == {"columns": 23} and not corr["host"]["artifacts"]
    assert set(corr["guest"]["metrics"]) == {"columns", "max_abs_cross_correlation", "max_vif",
                                             "constant_columns", "infinite_vif"}
    saved = _saved(out, "guest")
    assert saved["receivers"] == ["guest"]
    _check_against_pandas(saved, _joined(sample))


def test_three_parties(sample: dict[str, Path], tmp_path: Path) -> None:
    """The host's columns split over two hosts: the same matrix, three blocks."""
    host = pd.read_csv(sample["host"])
    paths = {"guest": sample["guest"], "host": tmp_path / "h1.csv", "host2": tmp_path / "h2.csv"}
    host[["id", *(f"x{i}" for i in range(5))]].to_csv(paths["host"], index=False)
    host[["id", *(f"x{i}" for i in range(5, 10))]].sample(frac=1.0, random_state=1).to_csv(
        paths["host2"], index=False)
    spec = _spec(paths)
    spec["parties"]["host2"] = {"dataset": str(paths["host2"])}
    result = run_job(spec, tmp_path / "out", embedded=True, timeout=60)
    assert result["steps"][1]["parties"]["host2"]["metrics"]["columns"] == 23
    saved = _saved(tmp_path / "out", "host2")
    assert saved["parties"] == ["guest", "host", "host2"]
    joined = _joined({"guest": sample["guest"], "host": paths["host"]}).join(
        pd.read_csv(paths["host2"]).set_index("id").add_prefix("host2."), how="inner")
    _check_against_pandas(saved, joined)


def test_columns_subset(sample: dict[str, Path], tmp_path: Path) -> None:
    params = {"columns": {"guest": ["x3", "x0"], "host": ["x1"]}}
    run_job(_spec(sample, params), tmp_path / "out", embedded=True, timeout=60)
    saved = _saved(tmp_path / "out", "host")
    assert saved["columns"] == ["guest.x3", "guest.x0", "host.x1"]
    _check_against_pandas(saved, _joined(sample))


def test_constant_and_collinear_columns_are_reported_not_fatal(
    sample: dict[str, Path], tmp_path: Path
) -> None:
    """A constant column: NaN correlations (as pandas) and an infinite VIF. A host column
    that is exactly 2·guest.x0 + 1: both get an infinite VIF; the others' VIFs stay right."""
    guest_x0 = pd.read_csv(sample["guest"]).set_index("id")["x0"]

    def edit(frame: pd.DataFrame) -> None:
        frame["x3"] = 2.5
        frame["twice"] = 2 * frame["id"].map(guest_x0).fillna(0.0) + 1

    paths = _edited(sample, "host", tmp_path / "host.csv", edit)
    result = run_job(_spec(paths), tmp_path / "out", embedded=True, timeout=60)
    saved = _saved(tmp_path / "out", "guest")
    metrics = result["steps"][1]["parties"]["guest"]["metrics"]
    assert saved["constant"] == ["host.x3"] and metrics["constant_columns"] == 1
    assert set(saved["infinite_vif"]) == {"host.x3", "guest.x0", "host.twice"}
    assert metrics["infinite_vif"] == 3 and np.isfinite(metrics["max_vif"])
    names = saved["columns"]
    joined = _joined(paths)
    ref = joined[names].corr().to_numpy()
    got = _as_float(saved["matrix"])
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < MATRIX_TOL
    assert got[names.index("guest.x0"), names.index("host.twice")] > 1 - 1e-5
    rest = [n for n in names if n not in saved["infinite_vif"]]
    ref_rest = np.diag(np.linalg.inv(joined[[*rest, "guest.x0"]].corr().to_numpy()))[:-1]
    vif = np.array([saved["vif"][names.index(n)] for n in rest], dtype=float)
    assert np.abs(vif / ref_rest - 1).max() < 1e-3
    assert all(saved["vif"][names.index(n)] is None for n in saved["infinite_vif"])


def test_nan_fails_at_every_party_naming_party_and_step(
    sample: dict[str, Path], tmp_path: Path
) -> None:
    def holes(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[::7], "x5"] = np.nan

    paths = _edited(sample, "host", tmp_path / "host.csv", holes)
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        run_job_reporting_cause(_spec(paths), tmp_path / "out", embedded=True, timeout=30)
    assert time.monotonic() - start < 25  # every party fails at once: nobody waits it out
    err = info.value
    assert err.party == "host" and err.step == "correlation"
    assert "NaN" in str(err) and "x5" in str(err) and "fill" in (err.remedy or "")


def test_party_without_numeric_features_fails(sample: dict[str, Path], tmp_path: Path) -> None:
    paths = _edited(sample, "host", tmp_path / "host.csv",
                    lambda f: f[["id"]])
    with pytest.raises(DataError) as info:
        run_job_reporting_cause(_spec(paths), tmp_path / "out", embedded=True, timeout=30)
    err = info.value
    assert err.party == "host" and err.step == "correlation"
    assert "no numeric feature" in str(err)


@pytest.mark.parametrize("params, party, words", [
    ({"columns": {"host": ["x1", "nope"]}}, "host", "nope"),
    ({"columns": {"guest": ["x1", "y"]}}, "guest", "label"),
    ({"columns": {"carol": ["x1"]}}, None, "carol"),  # a spec error: every party raises it
    ({"to": ["carol"]}, None, "carol"),
])
def test_bad_parameters_fail_with_a_config_error(
    params: dict[str, Any], party: str | None, words: str, sample: dict[str, Path],
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        run_job_reporting_cause(_spec(sample, params), tmp_path / "out", embedded=True,
                                timeout=30)
    assert info.value.party == (party or info.value.party) and info.value.step == "correlation"
    assert words in str(info.value)


# -- the step at each party as threads, with given frames (as after psi / split) -------------

def _aligned(paths: dict[str, Path], rows: int) -> dict[str, pd.DataFrame]:
    """Each party's frame as psi leaves it: the same ids in the same order."""
    g, h = pd.read_csv(paths["guest"]), pd.read_csv(paths["host"])
    ids = g["id"][g["id"].isin(h["id"])].head(rows)
    return {"guest": g.set_index("id").loc[ids].reset_index(),
            "host": h.set_index("id").loc[ids].reset_index()}


def _run_step(
    states: dict[str, dict[str, Any]], tmp_path: Path, params: dict[str, Any],
    *, dealer: bool = True, log: list[WireRecord] | None = None, timeout: float = 20,
) -> dict[str, Any]:
    """The step at every party as threads with the dealer functions the runner uses."""
    parties = {"guest": PartyConfig("guest", None, "y", ("id",)),
               "host": PartyConfig("host", None, None, ("id",))}

    def data_party(session: Any) -> Any:
        comp = registry.get("correlation")()
        out = tmp_path / session.party
        out.mkdir(exist_ok=True)
        ctx = StepContext(session, parties[session.party], parties, states[session.party], out,
                          "corr")
        result = execute(comp, ctx, comp.parse(params, "corr"))
        if dealer and session.party == "host":
            end_step_at_dealer(session, "corr", "dealer")
        return result

    fns: dict[str, Any] = {"guest": data_party, "host": data_party}
    if dealer:
        fns["dealer"] = lambda s: serve_step(s, "corr", ["guest", "host"])
    wrap = (lambda c: RecordingChannel(c, log)) if log is not None else None
    return run_in_threads(fns, list(fns), timeout=timeout, wrap=wrap,
                       dealer="dealer" if dealer else None)


def test_psi_split_correlation_job_uses_the_training_rows(
    sample: dict[str, Path], tmp_path: Path
) -> None:
    result = run_job(_spec(sample, before=("psi", "split")), tmp_path / "out", embedded=True,
                     timeout=60)
    train_rows = result["steps"][1]["parties"]["guest"]["metrics"]["train_rows"]
    assert _saved(tmp_path / "out", "guest")["rows"] == train_rows < SAMPLE


def test_fits_on_the_training_rows_after_a_split(full: dict[str, Path], tmp_path: Path) -> None:
    frames = _aligned(full, 3000)
    states = {p: {"data": f, "train": f.iloc[:2100].reset_index(drop=True),
                  "test": f.iloc[2100:].reset_index(drop=True)} for p, f in frames.items()}
    _run_step(states, tmp_path, {})
    saved = _saved(tmp_path, "guest", "corr")
    assert saved["rows"] == 2100
    train = _joined(full).loc[frames["guest"]["id"].iloc[:2100]]
    _check_against_pandas(saved, train)


def test_unaligned_rows_fail_naming_psi(full: dict[str, Path], tmp_path: Path) -> None:
    frames = _aligned(full, 500)
    states = {"guest": {"data": frames["guest"]}, "host": {"data": frames["host"].iloc[:400]}}
    with pytest.raises(PartyFailed) as info:
        _run_step(states, tmp_path, {})
    err = info.value.error
    assert isinstance(err, DataError) and err.step == "corr"
    assert "row counts" in str(err) and "psi" in (err.remedy or "")


def test_without_a_dealer_the_step_says_what_to_do(full: dict[str, Path], tmp_path: Path) -> None:
    frames = _aligned(full, 100)
    with pytest.raises(PartyFailed) as info:
        _run_step({p: {"data": f} for p, f in frames.items()}, tmp_path, {}, dealer=False)
    err = info.value.error
    assert isinstance(err, ConfigError) and "dealer" in str(err) and "provider" in (err.remedy or "")


def test_sharedml_run_and_the_platform_give_the_step_a_dealer(full: dict[str, Path]) -> None:
    for params, dealer in (({}, "dealer"), ({"provider": "he"}, None)):
        spec = jobspec.load(_spec(full, params))
        assert needs_dealer(spec) == (dealer is not None)
        # the platform's dealer serves the correlation step only, not psi (issue 14)
        assert {plan.id: plan.dealer for plan in decompose(spec)} == {
            "psi": None, "correlation": dealer}


def test_wire_only_shares_cross_and_non_receivers_learn_no_names(
    full: dict[str, Path], tmp_path: Path
) -> None:
    frames = _aligned(full, 2000)
    log: list[WireRecord] = []
    _run_step({p: {"data": f} for p, f in frames.items()}, tmp_path, {"to": ["guest"]}, log=log)
    assert not (tmp_path / "host" / "correlation-corr.json").exists()
    # The check round tells the host (not a receiver) sizes only, the guest the names too.
    checks = {r.to: json.loads(bytes(r.value)) for r in log if r.tag.endswith("correlation/check")}
    assert set(checks["host"]) == {"rows", "width", "problem"}
    assert checks["guest"]["columns"] == [f"x{i}" for i in range(10)]
    # No party's standardised values, as the runtime encodes them, cross the wire.
    fp = FixedPoint(MINMAX_FRAC_BITS)
    for p, frame in frames.items():
        cols = [c for c in frame.columns if c not in ("id", "y")]
        own = fp.encode(standardise(frame[cols].to_numpy())).view(np.int64)
        sent = [r for r in log if r.frm == p and isinstance(r.value, np.ndarray)
                and r.value.dtype.itemsize == 8 and r.value.size >= len(frame)]
        assert sent
        for r in sent:
            hits = np.isin(own, np.asarray(r.value).view(np.int64)).mean()
            assert hits < 1e-3, (r.tag, hits)  # shares are uniform: a chance hit is ~2^-40
    to_dealer = [r for r in log if r.to == "dealer"]
    assert to_dealer and all(r.tag.endswith("/dealer/req") for r in to_dealer)
    # Between the data parties, the opened matrix (23×23 ring elements) goes to the guest
    # only (the dealer's triple shares of that shape go to both, and so do the truncation's
    # uniformly masked values: a small truncation opens to both parties in one exchange).
    opened = [r for r in log if r.frm != "dealer" and isinstance(r.value, np.ndarray)
              and r.value.size == 23 * 23 and r.value.dtype.itemsize == 8
              and "/reveal" in r.tag]
    assert opened and {r.to for r in opened} == {"guest"}


@pytest.mark.slow
def test_provider_he_between_two_parties(full: dict[str, Path], tmp_path: Path) -> None:
    """No dealer: the Beaver matrix triple from Paillier, on 40 rows of six columns (its
    cost grows as d²·n: all 23 columns took 15 s idle and over 120 s under load, past the
    peers' wait; six still span several packed plaintexts, one of them partly filled)."""
    frames = _aligned(full, 40)
    columns = {"guest": ["x0", "x3", "x5"], "host": ["x1", "x2", "x6"]}
    _run_step({p: {"data": f} for p, f in frames.items()}, tmp_path,
              {"provider": "he", "columns": columns}, dealer=False, timeout=120)
    saved = _saved(tmp_path, "guest", "corr")
    assert saved["columns"] == [f"{p}.{c}" for p, cs in columns.items() for c in cs]
    _check_against_pandas(saved, _joined(full).loc[frames["guest"]["id"]])
