"""The ``onehot`` job step, run as every party would run it.

Oracle: scikit-learn's ``OneHotEncoder(handle_unknown="ignore")`` fitted on the
training rows of each encoded column. Indicators are exact 0.0/1.0 values, so
the comparison is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sharedml.components import PartyConfig, StepContext, execute, registry
from sharedml.errors import ConfigError, DataError
from sharedml.standalone import PartyFailed, run_in_threads, run_job
from sharedml.transport.recording import RecordingChannel, WireRecord

SEGMENTS = np.array(["retail", "sme", "corporate", "private"], dtype=object)


def _run(
    states: dict[str, dict[str, pd.DataFrame]],
    parties: dict[str, PartyConfig],
    params: dict[str, Any] | dict[str, dict[str, Any]],
    tmp_path: Path,
    log: list[WireRecord] | None = None,
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The onehot step at every party (threads); ``params`` may be given per party.
    Returns each party's state and metrics."""

    def fn(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        raw = params.get(session.party, params)
        state: dict[str, Any] = {k: v.copy() for k, v in states[session.party].items()}
        comp = registry.get("onehot")()
        (tmp_path / session.party).mkdir(exist_ok=True)
        ctx = StepContext(session, parties[session.party], parties, state,
                          tmp_path / session.party, "onehot")
        return state, execute(comp, ctx, comp.parse(raw, "onehot")).metrics

    wrap = (lambda c: RecordingChannel(c, log)) if log is not None else None
    return run_in_threads(fn, list(parties), timeout=30, wrap=wrap)


def _vertical_frames(shared_data: Path) -> tuple[dict[str, dict[str, pd.DataFrame]],
                                                  dict[str, PartyConfig]]:
    """breast_hetero split 70/30; the host gets ``segment`` (text, some missing in
    training, an unseen value in test) and ``grade`` (integer codes as floats), the
    guest ``channel`` (text)."""
    rng = np.random.default_rng(7)
    guest = pd.read_csv(shared_data / "breast_hetero_guest.csv")
    host = pd.read_csv(shared_data / "breast_hetero_host.csv")
    n = len(guest)
    host["segment"] = pd.Series(SEGMENTS[rng.integers(0, 4, n)], dtype=object)
    host.loc[rng.choice(n, 15, replace=False), "segment"] = np.nan
    host["grade"] = rng.integers(1, 6, n).astype(np.float64)
    guest["channel"] = pd.Series(np.array(["web", "branch", "phone"], dtype=object)[
        rng.integers(0, 3, n)], dtype=object)
    cut = int(0.7 * n)
    states = {}
    for name, frame in (("guest", guest), ("host", host)):
        states[name] = {"train": frame.iloc[:cut].reset_index(drop=True),
                        "test": frame.iloc[cut:].reset_index(drop=True)}
    test = states["host"]["test"]
    test.loc[[0, 5, 9], "segment"] = "startup"  # never seen in training
    test.loc[test.index[-4:], "segment"] = np.nan  # missing: a category seen in training
    parties = {"guest": PartyConfig("guest", None, "y", ("id",)),
               "host": PartyConfig("host", None, None, ("id",))}
    return states, parties


def _sklearn_names(col: str, enc: OneHotEncoder) -> list[str]:
    cats = enc.categories_[0]
    return [f"{col}={'nan' if isinstance(c, float) and np.isnan(c) else _text(c)}"
            for c in cats]


def _text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@pytest.mark.parametrize(
    ("params", "encoded"),
    [({}, {"guest": ["channel"], "host": ["segment"]}),
     ({"columns": ["segment", "grade", "channel"]},
      {"guest": ["channel"], "host": ["segment", "grade"]})],
    ids=["default-columns", "listed-columns"],
)
def test_vertical_equals_sklearn_fitted_on_training_rows(
    shared_data: Path, tmp_path: Path, params: dict[str, Any], encoded: dict[str, list[str]]
) -> None:
    states, parties = _vertical_frames(shared_data)
    log: list[WireRecord] = []
    out = _run(states, parties, params, tmp_path, log)
    assert log == []  # vertical: each party encodes its own columns, nothing is sent
    for party, cols in encoded.items():
        state, metrics = out[party]
        raw_train, raw_test = states[party]["train"], states[party]["test"]
        expected_columns: list[str] = []
        for c in raw_train.columns:
            if c not in cols:
                expected_columns.append(c)
                continue
            enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            enc.fit(raw_train[[c]].astype(object))
            names = _sklearn_names(c, enc)
            expected_columns += names
            for key, raw in (("train", raw_train), ("test", raw_test)):
                want = enc.transform(raw[[c]].astype(object))
                np.testing.assert_array_equal(state[key][names].to_numpy(), want)
                assert (state[key][names].dtypes == np.float64).all()
            assert metrics["categories"][c] == len(names)
            n_unknown = int((enc.transform(raw_test[[c]].astype(object)).sum(axis=1) == 0).sum())
            assert metrics["unknown"][c] == n_unknown
        for key in ("train", "test"):  # original column replaced in place, the rest untouched
            assert state[key].columns.tolist() == expected_columns
            kept = [c for c in raw_train.columns if c not in cols]
            pd.testing.assert_frame_equal(state[key][kept], states[party][key][kept])
        saved = json.loads((tmp_path / party / "onehot-onehot.json").read_text())
        assert list(saved["categories"]) == cols
    host_test, host_metrics = out["host"][0]["test"], out["host"][1]
    # the unseen "startup" rows are all zero; missing (seen in training) is its own category
    seg = [c for c in host_test.columns if c.startswith("segment=")]
    assert seg == ["segment=corporate", "segment=private", "segment=retail", "segment=sme",
                   "segment=nan"]
    assert (host_test.loc[[0, 5, 9], seg].to_numpy() == 0).all()
    assert (host_test.loc[host_test.index[-4:], "segment=nan"] == 1).all()
    assert host_metrics["unknown"]["segment"] == 3


def test_id_and_label_are_never_encoded(shared_data: Path, tmp_path: Path) -> None:
    """Text ids and a text label stay as they are by default; naming them is an error."""
    states, parties = _vertical_frames(shared_data)
    for key in ("train", "test"):
        frame = states["guest"][key]
        frame["id"] = "c-" + frame["id"].astype(str)
        frame["y"] = np.where(frame["y"] == 1, "bad", "good").astype(object)
    out = _run(states, parties, {}, tmp_path)
    guest, metrics = out["guest"]
    assert list(metrics["categories"]) == ["channel"]
    for key in ("train", "test"):
        assert guest[key]["id"].tolist() == states["guest"][key]["id"].tolist()
        assert guest[key]["y"].tolist() == states["guest"][key]["y"].tolist()
        assert not any(c.startswith(("id=", "y=")) for c in guest[key].columns)
    with pytest.raises(PartyFailed) as info:
        _run(states, parties, {"columns": ["channel", "y"]}, tmp_path)
    assert isinstance(info.value.error, ConfigError)
    text = str(info.value.error)
    assert "['y']" in text and "party 'guest'" in text and "step 'onehot'" in text


def test_high_cardinality_column_is_refused(shared_data: Path, tmp_path: Path) -> None:
    states, parties = _vertical_frames(shared_data)
    for key in ("train", "test"):
        frame = states["host"][key]
        frame["postcode"] = ("P" + (frame["id"] % 37).astype(str)).astype(object)
    n = states["host"]["train"]["postcode"].nunique()
    assert n == 37
    with pytest.raises(PartyFailed) as info:
        _run(states, parties, {"max_categories": 20}, tmp_path)
    err = info.value.error
    assert isinstance(err, ConfigError)
    assert (err.party, err.step) == ("host", "onehot")
    assert "'postcode'" in err.message and "37 categories" in err.message
    assert "binning" in str(err.remedy)
    # the same limit applies to declared categories, refused before any party starts
    with pytest.raises(ConfigError, match="max_categories=2"):
        registry.get("onehot").parse(
            {"layout": "horizontal", "max_categories": 2, "categories": {"s": ["a", "b", "c"]}},
            "onehot")
    with pytest.raises(ConfigError, match="categories"):
        registry.get("onehot").parse({"layout": "horizontal"}, "onehot")


def _horizontal() -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, PartyConfig]]:
    """Two parties with rows of the same columns; ``grade`` is numeric at one party and
    text at the other; bank B holds an undeclared segment."""
    a = pd.DataFrame({"id": [1, 2, 3, 4, 5], "y": [0, 1, 0, 1, 1],
                      "segment": pd.Series(["retail", "sme", np.nan, "retail", "sme"], dtype=object),
                      "grade": [1.0, 2.0, 2.0, 3.0, 1.0], "x": [0.1, 0.2, 0.3, 0.4, 0.5]})
    b = pd.DataFrame({"id": [7, 8, 9, 10], "y": [1, 0, 0, 1],
                      "segment": pd.Series(["corporate", "startup-secret", "retail", "sme"],
                                           dtype=object),
                      "grade": pd.Series(["3", "3", "1", "2"], dtype=object),
                      "x": [1.0, 2.0, 3.0, 4.0]})
    states = {"a": {"data": a}, "b": {"data": b}}
    parties = {p: PartyConfig(p, None, "y", ("id",)) for p in states}
    return states, parties


DECLARED = {"segment": ["sme", "retail", "corporate", None], "grade": [3, 1, 2]}


def test_horizontal_declared_categories_give_identical_columns(tmp_path: Path) -> None:
    states, parties = _horizontal()
    log: list[WireRecord] = []
    out = _run(states, parties, {"layout": "horizontal", "categories": DECLARED}, tmp_path, log)
    (a, a_metrics), (b, b_metrics) = out["a"], out["b"]
    want = ["id", "y", "segment=corporate", "segment=retail", "segment=sme", "segment=nan",
            "grade=1", "grade=2", "grade=3", "x"]
    assert a["data"].columns.tolist() == want == b["data"].columns.tolist()
    enc = OneHotEncoder(categories=[["corporate", "retail", "sme", np.nan], [1, 2, 3]],
                        handle_unknown="ignore", sparse_output=False)
    enc.fit(pd.DataFrame({"segment": ["sme"], "grade": [1]}, dtype=object))
    for party, state in (("a", a), ("b", b)):
        raw = states[party]["data"]
        expected = enc.transform(pd.DataFrame({
            "segment": raw["segment"], "grade": raw["grade"].astype(float).astype(int)},
            dtype=object))
        np.testing.assert_array_equal(state["data"][want[2:9]].to_numpy(), expected)
    assert b["data"].loc[1, want[2:6]].tolist() == [0.0] * 4  # undeclared value: all zero
    assert b_metrics["unknown"] == {"segment": 1, "grade": 0}
    assert a_metrics["unknown"] == {"segment": 0, "grade": 0}
    # Wire: one message per party and peer, with no data value in it.
    assert [(r.frm, r.to) for r in log] in ([("a", "b"), ("b", "a")], [("b", "a"), ("a", "b")])
    for r in log:
        sent = r.as_bytes()
        assert b"startup" not in sent and b"retail" not in sent and b"corporate" not in sent
    # unknown: error refuses the undeclared value at the party holding it
    with pytest.raises(PartyFailed) as info:
        _run(states, parties, {"layout": "horizontal", "categories": DECLARED,
                               "unknown": "error"}, tmp_path)
    assert isinstance(info.value.error, DataError) and info.value.error.party == "b"
    assert "segment" in str(info.value.error) and "startup" not in str(info.value.error)


def test_horizontal_mismatched_categories_fail_naming_the_step(tmp_path: Path) -> None:
    states, parties = _horizontal()
    other = {"segment": ["sme", "retail", "corporate"], "grade": [1, 2, 3]}  # no null
    params = {"a": {"layout": "horizontal", "categories": DECLARED},
              "b": {"layout": "horizontal", "categories": other}}
    with pytest.raises(PartyFailed) as info:
        _run(states, parties, params, tmp_path)
    err = info.value.error
    assert isinstance(err, ConfigError) and err.step == "onehot"
    assert "differ" in err.message and "['segment']" in err.message
    assert "grade" not in err.message  # the same in every way but order
    # a party without a declared column makes every party fail, naming it
    states["b"]["data"] = states["b"]["data"].drop(columns="grade")
    with pytest.raises(PartyFailed) as info:
        _run(states, parties, {"layout": "horizontal", "categories": DECLARED}, tmp_path)
    assert isinstance(info.value.error, DataError) and info.value.error.step == "onehot"
    assert "'b'" in info.value.error.message and "grade" in info.value.error.message


def test_horizontal_job_onehot_then_secure_scaling(shared_data: Path, tmp_path: Path) -> None:
    """onehot (loading each party's CSV itself) then horizontal standard scaling: both
    parties scale the same indicator columns with the pooled mean and deviation,
    which equal StandardScaler's on the pooled encoded rows (tolerance as in
    test_scale_horizontal: 1e-6 relative to the deviation)."""
    declared = {"segment": ["low", "mid", "high"]}
    paths, frames = {}, {}
    for party, seg in (("guest", ["low", "mid", "high"]), ("host", ["low", "mid", "other"])):
        frame = pd.read_csv(shared_data / f"breast_homo_{party}.csv")
        frame["segment"] = np.array(seg, dtype=object)[pd.qcut(frame["x0"], 3, labels=False)]
        paths[party] = tmp_path / f"{party}.csv"
        frame.to_csv(paths[party], index=False)
        frames[party] = frame
    spec = {"name": "onehot-horizontal",
            "parties": {p: {"dataset": str(path), "label": "y"} for p, path in paths.items()},
            "steps": [{"onehot": {"layout": "horizontal", "categories": declared}},
                      {"scale": {"method": "standard", "layout": "horizontal"}}]}
    out = tmp_path / "out"
    result = run_job(spec, out, embedded=True, timeout=60)
    onehot = result["steps"][0]["parties"]
    assert onehot["host"]["metrics"]["unknown"] == {
        "segment": int((frames["host"]["segment"] == "other").sum())}
    saved = {p: json.loads((out / p / "scaler-scale.json").read_text()) for p in paths}
    names = ["segment=high", "segment=low", "segment=mid"]
    assert saved["guest"]["columns"] == saved["host"]["columns"]
    assert saved["guest"]["columns"][-3:] == names
    pooled = pd.concat([pd.get_dummies(f, columns=["segment"], prefix_sep="=", dtype=float)
                        .reindex(columns=names, fill_value=0.0) for f in frames.values()])
    ref = StandardScaler().fit(pooled.to_numpy())
    for doc in saved.values():
        center, scale = np.array(doc["center"][-3:]), np.array(doc["scale"][-3:])
        assert np.abs(center - ref.mean_).max() / ref.scale_.min() < 1e-6
        assert np.abs(scale - ref.scale_).max() / ref.scale_.min() < 1e-6


@pytest.mark.slow
def test_job_psi_split_onehot_scale_train_runs(shared_data: Path, tmp_path: Path,
                                                model_doc: Any) -> None:
    """psi → split → onehot → scale → train(SS logistic regression) → evaluate as mTLS
    processes on breast_hetero with an informative text column at the host; the AUC is
    compared with scikit-learn's logistic regression on the joined, encoded rows."""
    guest = pd.read_csv(shared_data / "breast_hetero_guest.csv")
    host = pd.read_csv(shared_data / "breast_hetero_host.csv")
    quartile = pd.qcut(host["x0"], 4, labels=False).to_numpy()
    host["segment"] = SEGMENTS[quartile]
    host = host.drop(columns="x0")
    paths = {"guest": tmp_path / "guest.csv", "host": tmp_path / "host.csv"}
    guest.to_csv(paths["guest"], index=False)
    host.to_csv(paths["host"], index=False)
    spec = {
        "name": "onehot-e2e",
        "parties": {"guest": {"dataset": str(paths["guest"]), "label": "y"},
                    "host": {"dataset": str(paths["host"])}},
        "steps": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 5, "stratify": "y"}},
                  {"onehot": {}}, {"scale": {"method": "standard"}},
                  {"train": {"model": "logistic_regression", "protocol": "ss", "epochs": 5,
                             "batch_size": 64}},
                  {"evaluate": {"metrics": ["auc"]}}],
    }
    out = tmp_path / "out"
    result = run_job(spec, out, timeout=300)
    steps = {s["id"]: s["parties"] for s in result["steps"]}
    assert steps["onehot"]["host"]["metrics"]["categories"] == {"segment": 4}
    assert steps["onehot"]["guest"]["metrics"]["categories"] == {}
    model = model_doc(steps["train"]["host"]["artifacts"]["model"])
    assert len(model["part"]["coef"]) == 19 + 4  # x1..x19 and four indicators
    auc = steps["evaluate"]["guest"]["metrics"]["auc"]
    # plaintext oracle on the same rows: the split from the guest's predictions file
    scored = pd.read_csv(out / "guest" / "predictions-evaluate.csv")
    joined = guest.merge(host, on="id", suffixes=("_g", "_h"))
    dummies = pd.get_dummies(joined, columns=["segment"], prefix_sep="=", dtype=float)
    test_mask = joined["id"].isin(scored["id"])
    x = dummies.drop(columns=["id", "y"]).to_numpy()
    scaler = StandardScaler().fit(x[~test_mask])
    ref = LogisticRegression(max_iter=1000).fit(scaler.transform(x[~test_mask]),
                                                joined["y"][~test_mask])
    ref_auc = roc_auc_score(joined["y"][test_mask],
                            ref.predict_proba(scaler.transform(x[test_mask]))[:, 1])
    print(f"onehot job: SS logistic regression AUC {auc:.4f}, scikit-learn {ref_auc:.4f}")
    assert abs(auc - ref_auc) < 0.02
