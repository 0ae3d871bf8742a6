"""Cross-validation and tuning of shared models (8.1.2-3): scikit-learn's
folds and per-fold AUC for SS-LR, a search that keeps the default as its
floor, the same result at every party, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sharedml.components.dealer import end_step_at_dealer, serve_step
from sharedml.errors import ConfigError
from sharedml.learn.linear import SSLogisticRegression
from sharedml.learn.selection import cross_validate, tune
from sharedml.learn.selection.cv import Splitting, run_folds, share_folds
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads

PARTIES = ("guest", "host")


def _run_step(fn: Callable[[Session, Any, Any], Any], data: Any) -> dict[str, Any]:
    """``fn(session, X, y)`` at both data parties as one job step, with a dealer
    that serves however many runtimes the step opens."""

    def party(session: Session) -> Any:
        scoped = Session(
            session.party,
            session.peers,
            session.channel.scope("step"),
            seed=session.seed,
            dealer=session.dealer,
        )
        try:
            y = data.y_train if session.party == "guest" else None
            return fn(scoped, data.train[session.party], y)
        finally:
            if session.party == PARTIES[-1]:  # the party the dealer listens to
                end_step_at_dealer(session, "step", "dealer")

    def dealer(session: Session) -> Any:
        return serve_step(session, "step", PARTIES)

    return run_in_threads(
        {"guest": party, "host": party, "dealer": dealer},
        [*PARTIES, "dealer"],
        timeout=300,
        dealer="dealer",
    )


@pytest.mark.slow
def test_cv_reproduces_sklearns_folds_and_per_fold_auc(vertical: Callable) -> None:
    data = vertical("default_credit")
    seen: dict[str, np.ndarray] = {}

    def step(session: Session, X: Any, y: Any) -> Any:
        make = lambda: SSLogisticRegression(random_state=1)  # noqa: E731
        seen[session.party] = share_folds(
            session, PARTIES, "guest", len(X), y, Splitting(5), classify=True, tag="folds"
        )
        return cross_validate(session, PARTIES, "guest", make, X, y, folds=5)

    out = _run_step(step, data)
    joined = data.joined("train").to_numpy()
    expected = np.empty(len(joined), dtype=np.int64)
    for k, (_, test) in enumerate(StratifiedKFold(5).split(joined, data.y_train)):
        expected[test] = k
    for party in PARTIES:
        np.testing.assert_array_equal(seen[party], expected)
    reference = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        joined,
        data.y_train,
        cv=5,
        scoring="roc_auc",
    )
    got = out["guest"]
    assert got.as_dict() == out["host"].as_dict()  # every party: the same metrics, nothing else
    assert got.metric == "auc" and len(got.values) == 5
    np.testing.assert_allclose(got.values, reference, atol=0.005)


@pytest.mark.slow
def test_tune_keeps_the_default_as_its_floor_on_default_credit(vertical: Callable) -> None:
    data = vertical("default_credit")
    space = {"learning_rate": {"low": 0.2, "high": 4.0, "log": True}, "epochs": [2, 3, 5]}
    default = {"learning_rate": 2.0, "epochs": 5}

    def step(session: Session, X: Any, y: Any) -> Any:
        return tune(
            session,
            PARTIES,
            "guest",
            lambda p: SSLogisticRegression(random_state=1, **p),
            X,
            y,
            space,
            trials=4,
            folds=3,
            seed=0,
            first=default,
        )

    out = _run_step(step, data)
    result = out["guest"]

    def public(r: Any) -> Any:  # what both parties agree on (not their own clocks)
        return [{k: v for k, v in t.items() if k != "seconds"} for t in r.trials]

    assert public(result) == public(out["host"])
    assert [t["number"] for t in result.trials] == [0, 1, 2, 3]
    assert result.trials[0]["params"] == default
    assert any(t["params"] != default for t in result.trials[1:])
    assert result.best["mean"] >= result.trials[0]["mean"]
    for t in result.trials:
        assert 0.2 <= t["params"]["learning_rate"] <= 4.0 and t["params"]["epochs"] in (2, 3, 5)
        assert t["state"] == "pruned" or len(t["folds"]) == 3


def test_a_stop_at_the_label_holder_stops_every_party(vertical: Callable) -> None:
    data = vertical("breast")

    def step(session: Session, X: Any, y: Any) -> Any:
        ids = share_folds(session, PARTIES, "guest", len(X), y, Splitting(4), classify=True)
        make = lambda: SSLogisticRegression(epochs=1, batch_size=32)  # noqa: E731
        return run_folds(
            session, PARTIES, "guest", make, X, y, ids, stop_after=lambda k, r: k == 1
        ).as_dict()

    out = _run_step(step, data)
    assert out["guest"] == out["host"]
    assert out["guest"]["stopped"] and len(out["guest"]["folds"]) == 2


def test_grid_search_runs_every_point_once(vertical: Callable) -> None:
    data = vertical("breast")
    space = {"learning_rate": [0.5, 2.0], "l2": [0.0, 0.01]}

    def step(session: Session, X: Any, y: Any) -> Any:
        make = lambda p: SSLogisticRegression(epochs=1, batch_size=32, **p)  # noqa: E731
        return tune(session, PARTIES, "guest", make, X, y, space, sampler="grid", prune=False)

    out = _run_step(step, data)
    points = {(t["params"]["learning_rate"], t["params"]["l2"]) for t in out["host"].trials}
    assert points == {(0.5, 0.0), (0.5, 0.01), (2.0, 0.0), (2.0, 0.01)}


@pytest.mark.parametrize(
    ("space", "options", "match"),
    [
        ({}, {"trials": 2}, "non-empty space"),
        ({"learning_rate": {"low": 2.0, "high": 1.0}}, {"trials": 2}, "invalid range"),
        ({"epochs": {"low": 1.5, "high": 4, "int": True}}, {"trials": 2}, "non-integer"),
        ({"learning_rate": {"low": 0.1, "high": 1.0}}, {}, "budget"),
        ({"learning_rate": {"low": 0.1, "high": 1.0}}, {"sampler": "grid"}, "grid search needs"),
        ({"epochs": [1, 2]}, {"trials": 2, "sampler": "annealing"}, "sampler"),
    ],
)
def test_bad_search_specs_are_config_errors(space: Any, options: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tune(None, PARTIES, "guest", SSLogisticRegression, np.zeros((4, 2)), None, space, **options)  # type: ignore[arg-type]


def test_parties_with_different_rows_fail_naming_the_label_holder() -> None:
    def party(session: Session) -> Any:
        rows = 40 if session.party == "guest" else 39
        y = np.arange(rows) % 2 if session.party == "guest" else None
        return share_folds(session, PARTIES, "guest", rows, y, Splitting(3), classify=True)

    with pytest.raises(PartyFailed) as info:
        run_in_threads(party, list(PARTIES), timeout=20)
    assert info.value.party == "host" and "psi" in str(info.value.error)
