"""The train/predict/evaluate job steps, run by every party as the runner does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sharedml.components import jobspec, registry
from sharedml.components.base import PartyConfig, StepContext, execute
from sharedml.components.learn import EvaluateStep, PredictStep, TrainStep
from sharedml.errors import ConfigError
from sharedml.mpc import serve_dealer
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads


def _frames(folder: Path, name: str, label: str, id_col: str, stratify: bool) -> dict[str, Any]:
    guest = pd.read_csv(folder / f"{name}_hetero_guest.csv")
    host = pd.read_csv(folder / f"{name}_hetero_host.csv")
    idx = np.arange(len(guest))
    train, test = train_test_split(
        idx, test_size=0.3, random_state=42, stratify=guest[label] if stratify else None
    )
    out = {}
    for party, frame in (("guest", guest), ("host", host)):
        out[party] = {
            "train": frame.iloc[train].reset_index(drop=True),
            "test": frame.iloc[test].reset_index(drop=True),
        }
    return out


def _run_steps(
    frames: dict[str, Any],
    steps: list[tuple[str, dict[str, Any]]],
    out: Path,
    label: str,
    id_col: str,
) -> dict[str, Any]:
    configs = {
        "guest": PartyConfig("guest", None, label, (id_col,)),
        "host": PartyConfig("host", None, None, (id_col,)),
    }

    def party(session: Any) -> Any:
        state = dict(frames[session.party])
        results = {}
        for step_id, (name, raw) in enumerate(steps):
            cls = registry.get(name)
            params = cls.parse(raw, name)
            ctx = StepContext(
                session,
                configs[session.party],
                configs,
                state,
                out / session.party,
                f"{name}{step_id}",
            )
            (out / session.party).mkdir(parents=True, exist_ok=True)
            results[name] = results[f"{name}{step_id}"] = execute(cls(), ctx, params)
        return results

    def dealer(session: Any) -> None:
        # the dealer serves each training step under that step's channel scope
        for step_id, (name, _) in enumerate(steps):
            if name == "train":
                scoped = Session(
                    session.party,
                    session.peers,
                    session.channel.scope(f"{name}{step_id}"),
                    seed=session.seed,
                )
                serve_dealer(scoped)

    return run_in_threads(
        {"guest": party, "host": party, "dealer": dealer}, ["guest", "host", "dealer"], timeout=60,
        dealer="dealer",
    )


def test_steps_are_registered() -> None:
    assert registry.get("train") is TrainStep
    assert registry.get("predict") is PredictStep
    assert registry.get("evaluate") is EvaluateStep


def test_train_predict_evaluate_logistic_regression(shared_data: Path, tmp_path: Path,
                                                   model_doc: Any) -> None:
    frames = _frames(shared_data, "breast", "y", "id", stratify=True)
    out = _run_steps(
        frames,
        [
            (
                "train",
                {"model": "logistic_regression", "protocol": "ss", "epochs": 3, "batch_size": 64},
            ),
            ("predict", {}),
            ("evaluate", {"metrics": ["auc", "ks", "accuracy"]}),
        ],
        tmp_path,
        "y",
        "id",
    )
    guest, host = out["guest"], out["host"]
    metrics = guest["evaluate"].metrics
    assert set(metrics) == {"auc", "ks", "accuracy", "charts"}  # charts: the console's summary

    # plaintext model on the joined data, same split
    def joined(part: str) -> np.ndarray:
        g, h = frames["guest"][part], frames["host"][part]
        return np.hstack([g.drop(columns=["id", "y"]).to_numpy(), h.drop(columns="id").to_numpy()])

    X, Xt = joined("train"), joined("test")
    mean, std = X.mean(0), X.std(0)
    sk = LogisticRegression(max_iter=2000).fit((X - mean) / std, frames["guest"]["train"]["y"])
    sk_auc = roc_auc_score(frames["guest"]["test"]["y"], sk.predict_proba((Xt - mean) / std)[:, 1])
    assert metrics["auc"] == pytest.approx(sk_auc, abs=0.01)
    assert host["evaluate"].metrics == {}
    assert guest["train"].metrics["features"] == 10 and host["train"].metrics["features"] == 20
    # each party wrote its own part, and only its own
    guest_file = Path(guest["train"].artifacts["model"])
    host_file = Path(host["train"].artifacts["model"])
    assert guest_file.is_relative_to(tmp_path / "guest")
    assert host_file.is_relative_to(tmp_path / "host")
    gdoc, hdoc = model_doc(guest_file), model_doc(host_file)
    assert gdoc["model_type"] == "SSLogisticRegression" and gdoc["format_version"] == 1
    assert len(gdoc["part"]["coef"]) == 10 and len(hdoc["part"]["coef"]) == 20
    assert hdoc["part"]["intercept"] is None and gdoc["part"]["intercept"] is not None
    # predictions and curves only at the label holder
    preds = pd.read_csv(guest["predict"].artifacts["predictions"])
    assert list(preds.columns) == ["id", "score"] and len(preds) == len(frames["guest"]["test"])
    assert "predictions" not in host["predict"].artifacts
    curves = json.loads(Path(guest["evaluate"].artifacts["curves"]).read_text())
    assert curves["roc"]["fpr"][0] == 0 and curves["ks"]["population"][-1] == pytest.approx(1)


def test_a_second_model_is_evaluated_on_its_own_predictions(
    shared_data: Path, tmp_path: Path
) -> None:
    frames = _frames(shared_data, "breast", "y", "id", stratify=True)
    weak = {
        "model": "logistic_regression",
        "epochs": 1,
        "batch_size": 64,
        "sigmoid": "taylor1",
        "learning_rate": 0.001,
        "lr_schedule": "constant",
    }
    out = _run_steps(
        frames,
        [
            ("train", {"model": "logistic_regression", "epochs": 3, "batch_size": 64}),
            ("evaluate", {"metrics": ["accuracy"]}),
            ("train", weak),
            ("evaluate", {"metrics": ["accuracy"]}),
        ],
        tmp_path,
        "y",
        "id",
    )
    guest = out["guest"]
    first, second = guest["evaluate1"].metrics["accuracy"], guest["evaluate3"].metrics["accuracy"]
    assert first > 0.9 and second < first


def test_train_linear_regression_step(shared_data: Path, tmp_path: Path) -> None:
    frames = _frames(shared_data, "student", "y", "id", stratify=False)
    out = _run_steps(
        frames,
        [("train", {"model": "linear_regression"}), ("evaluate", {"metrics": ["rmse", "r2"]})],
        tmp_path,
        "y",
        "id",
    )
    rmse = out["guest"]["evaluate"].metrics["rmse"]
    gtr, htr = frames["guest"]["train"], frames["host"]["train"]
    gte, hte = frames["guest"]["test"], frames["host"]["test"]
    X = np.hstack([gtr.drop(columns=["id", "y"]).to_numpy(), htr.drop(columns="id").to_numpy()])
    Xt = np.hstack([gte.drop(columns=["id", "y"]).to_numpy(), hte.drop(columns="id").to_numpy()])
    baseline = float(
        np.sqrt(np.mean((LinearRegression().fit(X, gtr["y"]).predict(Xt) - gte["y"]) ** 2))
    )
    assert rmse <= 1.02 * baseline


def test_bad_train_parameters_are_rejected_when_the_spec_loads() -> None:
    """The schema comes from the learners' declarations, and the chosen model's own
    rules apply when the spec loads: each error names the step's path."""
    spec = {
        "parties": {"bank": {"dataset": "a.csv", "label": "y"}, "shop": {"dataset": "b.csv"}},
        "steps": [{"train": {"model": "logistic_regression", "epochs": 0}}],
    }
    with pytest.raises(ConfigError, match="epochs"):
        jobspec.load(spec)
    bad = {
        "no 'he' protocol": {"model": "linear_regression", "protocol": "he"},
        r"does not take \['n_estimators'\]": {"model": "logistic_regression", "n_estimators": 3},
        r"does not take \['sigmoid'\]": {"model": "logistic_regression", "protocol": "he",
                                         "sigmoid": "pwl"},
        r"learning_rate of secureboost must be a number in \(0, 1\]":
            {"model": "secureboost", "learning_rate": 2.0},
    }
    for message, params in bad.items():
        spec["steps"] = [{"train": params}]
        with pytest.raises(ConfigError, match=message) as info:
            jobspec.load(spec)
        assert "steps[0].train" in str(info.value)
    from sharedml.components.learn import TrainParams, build_model

    # the randomness is the session's choice (tests/test_session.py) unless the step names it
    assert build_model(TrainParams(model="logistic_regression", protocol="ss")).provider is None
    assert build_model(TrainParams(model="linear_regression", provider="he")).provider == "he"
    # a provider means nothing without secret sharing, as before: it is left out
    assert "provider" not in build_model(
        TrainParams(model="logistic_regression", protocol="he", provider="he")).get_params()
    tree = build_model(TrainParams(model="secureboost", protocol="he", n_estimators=3))
    assert type(tree).__name__ == "SecureBoostClassifier" and tree.protocol == "he"
    assert tree.n_estimators == 3 and tree.max_depth == 3  # the learner's own default


def test_the_train_schema_is_the_learners_declarations() -> None:
    from sharedml.components.learn import TrainParams
    from sharedml.learn.linear import SSLinearRegression, SSLogisticRegression
    from sharedml.learn.tree import SecureBoostClassifier

    schema = TrainParams.model_json_schema()["properties"]
    declared = {n for cls in (SSLogisticRegression, SSLinearRegression, SecureBoostClassifier)
                for n, p in cls.params.items() if p.job}
    assert declared - {"protocol"} <= set(schema)
    epochs = schema["epochs"]["anyOf"][0]
    assert (epochs["minimum"], epochs["maximum"]) == (1, SSLogisticRegression.params["epochs"].high)
    assert "5 (logistic_regression (ss))" in schema["epochs"]["description"]
    assert "20 (linear_regression)" in schema["epochs"]["description"]
    # a learner built outside a job checks the same declaration at fit
    with pytest.raises(ConfigError, match=r"batch_size must be an integer in \[16, 4194304\], got 8"):
        SSLinearRegression(batch_size=8)._check_params()


def test_train_without_label_column_is_a_clear_error(shared_data: Path, tmp_path: Path) -> None:
    frames = _frames(shared_data, "breast", "y", "id", stratify=True)
    frames["guest"]["train"] = frames["guest"]["train"].drop(columns="y")
    with pytest.raises(PartyFailed, match="label column 'y' is missing"):
        _run_steps(frames, [("train", {"model": "logistic_regression"})], tmp_path, "y", "id")


def test_train_ss_without_a_dealer_fails_before_any_message(
    shared_data: Path, tmp_path: Path
) -> None:
    """No dealer in the job: the train step says so at every party, naming the step,
    before it sends anything (the session's runtime choice is checked up front)."""
    frames = _frames(shared_data, "breast", "y", "id", stratify=True)
    configs = {"guest": PartyConfig("guest", None, "y", ("id",)),
               "host": PartyConfig("host", None, None, ("id",))}
    log: list[Any] = []
    failures: dict[str, ConfigError] = {}

    def party(session: Session) -> None:
        ctx = StepContext(session, configs[session.party], configs,
                          dict(frames[session.party]), tmp_path, "train")
        params = TrainStep.parse({"model": "logistic_regression"}, "train")
        try:
            execute(TrainStep(), ctx, params)
        except ConfigError as exc:
            failures[session.party] = exc

    from sharedml.transport.recording import RecordingChannel

    run_in_threads(party, ["guest", "host"], timeout=20, wrap=lambda c: RecordingChannel(c, log))
    assert set(failures) == {"guest", "host"}
    for name, exc in failures.items():
        assert "needs a dealer" in exc.message and exc.step == "train" and exc.party == name
    assert log == []


def test_a_tree_train_step_reports_splits_per_own_feature_only(
    shared_data: Path, tmp_path: Path
) -> None:
    """SecureBoost's feature importance by use (the console's job page draws it): each
    party counts the splits in its own split table, by its own column names only."""
    frames = _frames(shared_data, "breast", "y", "id", stratify=True)
    out = _run_steps(
        frames, [("train", {"model": "secureboost", "protocol": "ss", "n_estimators": 3,
                            "max_depth": 2})],
        tmp_path, "y", "id")
    own = {p: set(frames[p]["train"].columns) - {"id", "y"} for p in ("guest", "host")}
    total = 0
    for party in ("guest", "host"):
        splits = out[party]["train"].metrics["feature_splits"]
        assert set(splits) <= own[party], party  # never another party's column
        assert list(splits.values()) == sorted(splits.values(), reverse=True)
        assert all(isinstance(n, int) and n > 0 for n in splits.values())
        total += sum(splits.values())
    # 3 trees of depth 2: at most 3 internal nodes each, and the label holder's table
    # plus the feature holder's hold every split made
    assert 3 <= total <= 9
