"""Horizontal ``predict`` and ``evaluate``: each party scores its own rows with the whole
model (steps 4 and 5 of :mod:`sharedml.components.horizontal`, which says what they
reveal).

* :func:`predict_own` — the job's model (``ctx.state["model"]``); nothing is sent.
* :func:`predict_saved` — ``model: NAME@ALIAS``: this party opens its own sealed
  part of that version (:mod:`sharedml.fl.part`); the parties exchange only
  whether each could (:func:`~sharedml.components.saved_models.load_part_for`).
* :func:`evaluate_here` — one secure sum of metric statistics
  (:mod:`sharedml.fl.evaluate`); a named data party also aggregates it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sharedml.components.base import StepContext, StepResult
from sharedml.components.horizontal import (
    aggregator_of,
    agree_schema,
    both_roles,
    config_of,
    labels_of,
    rounded,
    tell_schema,
)
from sharedml.components.saved_models import load_part_for
from sharedml.errors import ConfigError, DataError
from sharedml.fl.evaluate import evaluate_as_client, evaluate_as_server
from sharedml.fl.model import HorizontalModel
from sharedml.fl.part import HorizontalPart


def evaluate_here(ctx: StepContext, params: Any, y: np.ndarray | None) -> StepResult:
    """A data party's part in a horizontal evaluate (both sides when it is named)."""
    if aggregator_of(ctx, params) != ctx.party.name:
        return evaluate_client(ctx, params, y)
    return both_roles(ctx, lambda c: evaluate_client(c, params, y),
                      lambda c: evaluate_aggregator(c, params))


def model_of(ctx: StepContext) -> HorizontalModel:
    model = ctx.state.get("model")
    if isinstance(model, HorizontalPart):  # opened from the registry (predict: {model:})
        model = model.horizontal
    if not isinstance(model, HorizontalModel):
        raise ConfigError("no model trained with layout: horizontal at this party",
                          party=ctx.party.name, step=ctx.step_id,
                          remedy="run train with layout: horizontal first")
    return model


def predict_saved(ctx: StepContext, params: Any) -> StepResult:
    """Step 4 with a registered version: this party opens its own part (the store checks
    the registry's fingerprint; every party learns whether all could) and scores its
    own rows — those of an earlier step, else its dataset."""
    if "data" not in ctx.state and ctx.party.dataset is not None:
        ctx.state["data"] = ctx.load_dataset()
    frame = ctx.state.get("data") if params.rows == "data" else ctx.state.get(params.rows)
    if frame is None:
        raise ConfigError(f"no {params.rows!r} rows to score", party=ctx.party.name,
                          step=ctx.step_id, remedy="give this party a dataset")
    X = load_part_for(ctx, params, frame)
    if not isinstance(ctx.state["model"], HorizontalPart):
        raise ConfigError(f"model {params.model} is vertical: score it without layout: "
                          "horizontal", party=ctx.party.name, step=ctx.step_id)
    return predict_own(ctx, frame, X, params.rows)


def predict_own(ctx: StepContext, frame: pd.DataFrame, X: pd.DataFrame, on: str) -> StepResult:
    """Step 4: this party's scores of its own rows, kept and written (nothing is sent)."""
    model = model_of(ctx)
    if tuple(str(c) for c in X.columns) != model.columns:
        raise DataError(f"the rows' columns {list(X.columns)[:8]} are not the model's "
                        f"{list(model.columns)[:8]}", party=ctx.party.name, step=ctx.step_id,
                        remedy="predict on data with the training columns, in their order")
    scores = model.predict(X.to_numpy(np.float64))
    ctx.state["predictions"], ctx.state["predictions_on"] = scores, on
    out = frame[[c for c in ctx.party.id_columns if c in frame.columns]].copy()
    out["score"] = scores
    path = ctx.out_dir / f"predictions-{ctx.step_id}.csv"
    out.to_csv(path, index=False)
    return StepResult(metrics={"rows": len(scores)}, artifacts={"predictions": str(path)})


def evaluate_client(ctx: StepContext, params: Any, y: np.ndarray | None) -> StepResult:
    """Step 5 at a data party (its scores are in ``ctx.state["predictions"]``)."""
    model = model_of(ctx)
    labels = labels_of(ctx, y, model.task)
    config = config_of(ctx, params, {})
    tell_schema(ctx, config.server, list(model.columns), model.task)
    pooled = evaluate_as_client(ctx.session, config, model.task, labels,
                                np.asarray(ctx.state["predictions"]))
    return StepResult(metrics=_chosen(ctx, pooled or {}, params.metrics))


def evaluate_aggregator(ctx: StepContext, params: Any) -> StepResult:
    """Step 5 at the aggregator: one secure sum, the pooled metrics to everyone."""
    config = config_of(ctx, params, {})
    task, _ = agree_schema(ctx, config.clients)
    pooled = evaluate_as_server(ctx.session, config, task)
    return StepResult(metrics=_chosen(ctx, pooled, params.metrics))


def _chosen(ctx: StepContext, pooled: dict[str, float], wanted: list[str] | None) -> dict[str, Any]:
    unknown = sorted(set(wanted or ()) - set(pooled))
    if unknown:
        raise ConfigError(f"horizontal evaluation has no metric {unknown}", party=ctx.party.name,
                          step=ctx.step_id, remedy=f"use some of {sorted(pooled)}")
    keep = set(wanted) | {"rows", "parties"} if wanted else set(pooled)
    return rounded({k: v for k, v in pooled.items() if k in keep})
