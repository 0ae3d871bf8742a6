"""Job steps ``train``, ``predict`` and ``evaluate`` for the vertical learners.

Input: ``ctx.state["train"]`` / ``ctx.state["test"]`` — each party's own
aligned pandas frames, as the ``psi``/``split``/``scale`` steps leave them.
A party's feature columns are all its columns but its id columns and, at the
label holder, the label.

* ``train`` fits one :class:`~sharedml.learn.base.VerticalModel` part per party
  (``model: logistic_regression | linear_regression | secureboost | mlp``,
  ``protocol: ss | he``, for ``mlp`` ``ss | split``), keeps it in ``ctx.state["model"]`` and writes this
  party's part (and nothing else) to ``ctx.out_dir``.
* ``predict`` scores ``ctx.state[on]`` jointly; the scores exist at the label
  holder only (``ctx.state["predictions"]`` and a CSV of ids and scores in its
  ``out_dir``).
* ``evaluate`` computes the requested metrics at the label holder, writes the
  ROC/KS curve data there, and returns the metric values (public by design of
  this step, 9.4-3); the other parties return no metrics.

Reveals: what the chosen protocol reveals (see each learner's docstring); the
metric values to the platform. Security model: that of the learner.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from sharedml.components.base import DATA, DEALER, Component, Params, StepContext, StepResult
from sharedml.components.train_params import (
    MODELS,
    SHARED_PROTOCOLS,
    TrainParams,
    build_model,
    model_class,
)
from sharedml.errors import ConfigError, DataError

__all__ = [
    "MODELS", "EvaluateStep", "PredictStep", "TrainParams", "TrainStep", "build_model",
    "model_class",
]

class PredictParams(Params):
    on: Literal["test", "train"] = "test"


class EvaluateParams(Params):
    metrics: list[str] | None = Field(None, description="default: every metric of the task")
    on: Literal["test", "train"] = "test"


def _features(ctx: StepContext, frame: Any) -> tuple[Any, Any | None]:
    """(feature frame, label column or None) of this party's frame."""
    drop = [c for c in ctx.party.id_columns if c in frame.columns]
    label = ctx.party.label
    y = None
    if label:
        if label not in frame.columns:
            raise DataError(
                f"label column {label!r} is missing from the data",
                party=ctx.party.name,
                step=ctx.step_id,
            )
        if not pd.api.types.is_numeric_dtype(frame[label]):
            raise DataError(
                "the label column holds values that are not numbers",
                party=ctx.party.name, step=ctx.step_id, column=label,
                remedy="encode the label as 0/1 (classification) or numbers (regression)",
            )
        y = frame[label].to_numpy()
        drop.append(label)
    X = frame.drop(columns=drop)
    non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if non_numeric:
        raise DataError(
            f"non-numeric feature columns {non_numeric[:5]}",
            party=ctx.party.name,
            step=ctx.step_id,
            column=str(non_numeric[0]),
            remedy="encode them (onehot) or drop them before training",
        )

    return X, y


def _frame(ctx: StepContext, key: str) -> Any:
    if key not in ctx.state:
        raise ConfigError(
            f"no {key!r} data for this step",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run psi and split before train/predict/evaluate",
        )
    return ctx.state[key]


class TrainStep(Component):
    """Fit a vertical model; each party keeps and writes its own part."""

    name = "train"
    needs = ("split",)
    makes = ("model",)
    params = TrainParams
    summary = "vertical SS/HE logistic or linear regression, SecureBoost, or an MLP (ss or split)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        model = build_model(params)
        if params.protocol in SHARED_PROTOCOLS:  # no dealer: fail before any message
            ctx.mpc_runtime(params.provider,
                            purpose=f"train: {params.model} with protocol {params.protocol!r}",
                            otherwise=" or use 'protocol: he'")
        X, y = _features(ctx, _frame(ctx, "train"))
        if len(X) < 2:
            raise DataError(
                f"{len(X)} row(s) to learn from", party=ctx.party.name, step=ctx.step_id,
                remedy="check the parties' ids overlap (psi's intersection) and the split",
            )
        ctx.progress(0.0, f"training {params.model} ({params.protocol})")
        model.fit(ctx.session, X, y)
        ctx.state["model"] = model
        ctx.state.pop("predictions_on", None)  # earlier predictions are not this model's
        ctx.state["task"] = getattr(model, "task", "classification")
        path = ctx.artifact("model", ".json")
        model.save(path)
        ctx.progress(1.0, "trained")
        return StepResult(
            metrics={
                "model": params.model,
                "protocol": params.protocol,
                "rows": len(X),
                "features": int(X.shape[1]),
            },
            artifacts={"model": str(path)},
        )


class PredictStep(Component):
    """Joint scores on the test (or train) rows, at the label holder only."""

    name = "predict"
    needs = ("model", "split")

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """The dealer takes part (when the job has one): the trained model may be a
        secret-shared one, whose prediction opens an MPC runtime."""
        return (DATA, DEALER)
    params = PredictParams
    summary = "joint prediction; scores reach the label holder only"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        if "model" not in ctx.state:
            raise ConfigError(
                "no trained model", party=ctx.party.name, step=ctx.step_id, remedy="run train first"
            )
        frame = _frame(ctx, params.on)
        X, _ = _features(ctx, frame)
        scores = ctx.state["model"].predict(ctx.session, X)
        ctx.state["predictions"] = scores
        ctx.state["predictions_on"] = params.on
        if scores is None:
            return StepResult(metrics={"rows": len(X)})

        out = frame[[c for c in ctx.party.id_columns if c in frame.columns]].copy()
        out["score"] = scores
        path = ctx.artifact("predictions", ".csv")
        pd.DataFrame(out).to_csv(path, index=False)
        return StepResult(metrics={"rows": len(X)}, artifacts={"predictions": str(path)})


class EvaluateStep(Component):
    """Metrics of the predictions at the label holder (public values only)."""

    name = "evaluate"
    needs = ("model", "split")

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """The dealer takes part (when the job has one): the trained model may be a
        secret-shared one, whose prediction opens an MPC runtime."""
        return (DATA, DEALER)
    params = EvaluateParams
    summary = "AUC/KS/lift/accuracy/F1 or RMSE/MAE/R² at the label holder"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn import metrics

        if ctx.state.get("predictions_on") != params.on:
            PredictStep().run(ctx, PredictParams(on=params.on))
        scores = ctx.state.get("predictions")
        if scores is None:
            return StepResult()
        _, y = _features(ctx, _frame(ctx, params.on))
        task = ctx.state.get("task", "classification")
        values = metrics.evaluate(np.asarray(y), np.asarray(scores), task, params.metrics)
        artifacts = {}
        if task == "classification":
            roc = metrics.roc_curve(np.asarray(y), np.asarray(scores))
            ks = metrics.ks_curve(np.asarray(y), np.asarray(scores))
            curves = {
                "roc": {"fpr": roc.fpr.tolist(), "tpr": roc.tpr.tolist()},
                "ks": {
                    "population": ks.population.tolist(),
                    "tpr": ks.tpr.tolist(),
                    "fpr": ks.fpr.tolist(),
                },
            }
            path = ctx.artifact("curves", ".json")
            path.write_text(json.dumps(curves), encoding="utf-8")
            artifacts["curves"] = str(path)
        return StepResult(
            metrics={k: round(float(v), 6) for k, v in values.items()}, artifacts=artifacts
        )
