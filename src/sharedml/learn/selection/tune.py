"""Hyper-parameter search for a vertical model (8.1.2-3): grid, random or
Optuna's TPE sampler over a declared space, every trial a cross-validated
shared training on the same aligned rows (:mod:`sharedml.learn.selection.cv`).

Protocol (label holder ``L``, data parties ``P``):

1. ``L`` shares the fold ids once (every trial uses the same folds).
2. ``L`` owns the Optuna study (the metric exists only there). Per trial it
   asks the sampler for a configuration — the ``first`` one given (e.g. the
   model's defaults) before any — and sends it to every party with the
   decision whether a trial follows at all (the budget: a number of trials
   and/or seconds on ``L``'s clock; a grid ends when exhausted).
3. Every party trains and scores the folds with that configuration; after
   each fold ``L`` reports the running mean to the study and, with
   ``prune``, Optuna's median rule (stop a trial whose running mean is worse
   than the median of earlier trials' at the same fold) decides whether the
   trial stops; every party learns the decision with the fold's value.
4. ``L`` tells the study the trial's mean (or that it was pruned).

Every party ends with the same :class:`TuneResult`: each trial's
configuration, per-fold values and state, and the best configuration
(retraining it is the caller's step).

Reveals: the configurations and per-fold metric values to every party, the
fold ids (see cv), and what each training reveals; nothing per row.
Security model: that of the model; semi-honest. Reference: Akiba et al.,
"Optuna", KDD 2019; Bergstra et al., "Algorithms for hyper-parameter
optimization" (TPE), NeurIPS 2011.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.base import VerticalModel
from sharedml.learn.selection.cv import (
    CVResult,
    Splitting,
    _recv,
    _send,
    resolve_metric,
    run_folds,
    share_folds,
)
from sharedml.learn.selection.space import Space
from sharedml.session import Session

SAMPLERS = ("tpe", "random", "grid")


@dataclass
class TuneResult:
    metric: str
    higher_is_better: bool
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any]:
        done = [t for t in self.trials if t["state"] == "complete"]
        if not done:
            raise ConfigError(
                "no trial completed within the budget", remedy="raise trials or seconds"
            )
        pick = max if self.higher_is_better else min
        return pick(done, key=lambda t: t["mean"])

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "metric": self.metric,
            "best_params": best["params"],
            "best_value": best["mean"],
            "trials": self.trials,
        }


class _Study:
    """``L``'s side: the Optuna study, its sampler, pruner and budget."""

    def __init__(
        self,
        space: Space,
        sampler: str,
        higher: bool,
        budget: tuple[int | None, float | None],
        prune: bool,
        seed: int | None,
        first: dict[str, Any] | None,
    ) -> None:
        try:
            import optuna
        except ImportError:
            raise ConfigError("tune needs optuna", remedy="pip install 'sharedml[tune]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.optuna = space, optuna
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            # the grid's points are enqueued below; Optuna's GridSampler stops
            # its study from inside tell(), which ask/tell use does not allow
            "grid": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=2) if prune else optuna.pruners.NopPruner()
        )
        self.study = optuna.create_study(
            direction="maximize" if higher else "minimize",
            sampler=samplers[sampler](),
            pruner=pruner,
        )
        points = space.grid_points() if sampler == "grid" else []
        for point in [*([first] if first else []), *points]:
            self.study.enqueue_trial(space.encode(point), skip_if_exists=True)
        self.trials, self.seconds = budget
        if sampler == "grid":
            size = len(points) + (1 if first and first not in points else 0)
            self.trials = size if self.trials is None else min(self.trials, size)
        self.start = time.monotonic()

    def more(self, done: int) -> bool:
        if self.trials is not None and done >= self.trials:
            return False
        return self.seconds is None or time.monotonic() - self.start < self.seconds

    def ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        return trial, self.space.suggest(trial)

    def prune_after(self, trial: Any) -> Callable[[int, CVResult], bool]:
        def decide(k: int, result: CVResult) -> bool:
            trial.report(result.mean, k)
            return bool(trial.should_prune())

        return decide

    def tell(self, trial: Any, result: CVResult) -> None:
        if result.stopped:
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, result.mean)


def tune(
    session: Session,
    parties: Sequence[str],
    label_holder: str,
    make_model: Callable[[dict[str, Any]], VerticalModel],
    X: Any,
    y: np.ndarray | None,
    space: dict[str, Any],
    *,
    sampler: str = "tpe",
    metric: str = "auto",
    trials: int | None = None,
    seconds: float | None = None,
    folds: int = 3,
    stratify: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    prune: bool = True,
    first: dict[str, Any] | None = None,
    tag: str = "tune",
) -> TuneResult:
    """The search (see the module docstring); the same result at every party."""
    declared = Space.parse(space, first)
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}", step=tag)
    if trials is None and seconds is None and sampler != "grid":
        raise ConfigError("tune needs a budget: trials, seconds or both", step=tag)
    if sampler == "grid":
        declared.grid()  # every parameter must list its choices
    task = make_model(dict(first or {})).task
    name, _, higher = resolve_metric(metric, task)
    split = Splitting(folds, stratify, shuffle, seed)
    classify = task == "classification"
    ids = share_folds(session, parties, label_holder, len(X), y, split, classify=classify, tag=tag)
    is_label = session.party == label_holder
    study = (
        _Study(declared, sampler, higher, (trials, seconds), prune, seed, first)
        if is_label
        else None
    )
    out = TuneResult(name, higher)
    number = 0
    while True:
        trial, params = None, None
        if study is not None:
            go = study.more(number)
            if go:
                trial, params = study.ask()
            _send(session, parties, f"{tag}/trial{number}", {"go": go, "params": params})
        else:
            doc = _recv(session, label_holder, f"{tag}/trial{number}")
            go, params = bool(doc.get("go")), doc.get("params")
        if not go or params is None:
            break
        started = time.monotonic()
        result = run_folds(
            session,
            parties,
            label_holder,
            functools.partial(make_model, params),
            X,
            y,
            ids,
            metric=name,
            tag=f"{tag}/{number}",
            stop_after=None if study is None or not prune else study.prune_after(trial),
        )
        if study is not None:
            study.tell(trial, result)
        out.trials.append(
            {
                "number": number,
                "params": params,
                **result.as_dict(),
                "state": "pruned" if result.stopped else "complete",
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        number += 1
    return out
