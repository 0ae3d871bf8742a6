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
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from sharedml.components import horizontal
from sharedml.components.base import Component, Params, PartyConfig, StepContext, StepResult
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

_LAYOUT_SAYS = "horizontal: the model was trained with layout: horizontal (each party scores its own rows)"


class PredictParams(Params):
    on: Literal["test", "train"] = "test"
    layout: Literal["vertical", "horizontal"] = Field("vertical", description=_LAYOUT_SAYS)


class EvaluateParams(Params):
    metrics: list[str] | None = Field(None, description="default: every metric of the task")
    on: Literal["test", "train"] = "test"
    layout: Literal["vertical", "horizontal"] = Field("vertical", description=_LAYOUT_SAYS)


class _EitherLayout:
    """Needs, makes and roles of a learning step in either layout: a horizontal one
    works on each party's own rows and a horizontal model, and (train, evaluate)
    is aggregated by the job's helper (:mod:`sharedml.components.horizontal`)."""

    needs: ClassVar[tuple[str, ...]]
    makes: ClassVar[tuple[str, ...]]
    #: Whether the horizontal step sums across the parties (the aggregator takes part).
    summed: ClassVar[bool] = True

    @classmethod
    def requires(cls, params: Params) -> tuple[str, ...]:
        if getattr(params, "layout", "vertical") != "horizontal":
            return cls.needs
        return (*(HORIZONTAL_NEEDS.get(n, n) for n in cls.needs), "own_rows")

    @classmethod
    def provides(cls, params: Params) -> tuple[str, ...]:
        if getattr(params, "layout", "vertical") != "horizontal":
            return cls.makes
        return tuple(HORIZONTAL_NEEDS.get(n, n) for n in cls.makes)


    @classmethod
    def check_parties(cls, params: Params, parties: dict[str, PartyConfig]) -> None:
        if getattr(params, "layout", "vertical") == "horizontal" and cls.aggregates(params):
            horizontal.check_parties(params, parties)

    @classmethod
    def aggregates(cls, params: Params) -> bool:
        return cls.summed and getattr(params, "layout", "vertical") == "horizontal"


#: What a vertical step's product is called in a horizontal job.
HORIZONTAL_NEEDS = {"model": "horizontal_model"}


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
        y = frame[label].to_numpy()
        drop.append(label)
    X = frame.drop(columns=drop)
    non_numeric = [c for c in X.columns if not np.issubdtype(X[c].dtype, np.number)]
    if non_numeric:
        raise DataError(
            f"non-numeric feature columns {non_numeric[:5]}",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="encode or drop them before training",
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


class TrainStep(_EitherLayout, Component):
    """Fit a model. Vertical: each party keeps and writes its own part. Horizontal
    (``layout: horizontal``): every party trains the whole model on its own rows
    with the others, by FedAvg or federated trees over secure aggregation
    (:mod:`sharedml.components.horizontal`)."""

    name = "train"
    needs = ("split",)
    makes = ("model",)
    params = TrainParams
    summary = ("vertical SS/HE logistic or linear regression, SecureBoost, or an MLP (ss or "
               "split); horizontal FedAvg logistic/linear regression or MLP, or federated trees")

    def aggregate(self, ctx: StepContext, params: Any) -> StepResult:
        return horizontal.train_aggregator(ctx, params)

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        if params.layout == "horizontal":
            X, y = _features(ctx, _frame(ctx, "train"))
            return horizontal.train_client(ctx, params, X, y)
        model = build_model(params)
        if params.protocol in SHARED_PROTOCOLS:  # no dealer: fail before any message
            ctx.mpc_runtime(params.provider,
                            purpose=f"train: {params.model} with protocol {params.protocol!r}",
                            otherwise=" or use 'protocol: he'")
        X, y = _features(ctx, _frame(ctx, "train"))
        ctx.progress(0.0, f"training {params.model} ({params.protocol})")
        model.fit(ctx.session, X, y)
        ctx.state["model"] = model
        ctx.state.pop("predictions_on", None)  # earlier predictions are not this model's
        ctx.state["task"] = getattr(model, "task", "classification")
        path = ctx.out_dir / f"model-{ctx.step_id}.json"
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


class PredictStep(_EitherLayout, Component):
    """Joint scores on the test (or train) rows, at the label holder only; horizontal:
    each party scores its own rows with the model every party holds (nothing is sent)."""

    name = "predict"
    summed = False  # horizontal: each party scores its own rows
    needs = ("model", "split")
    params = PredictParams
    summary = "joint prediction; scores reach the label holder only (horizontal: each its own)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        if params.layout == "horizontal":
            frame = _frame(ctx, params.on)
            return horizontal.predict_own(ctx, frame, _features(ctx, frame)[0], params.on)
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
        import pandas as pd

        out = frame[[c for c in ctx.party.id_columns if c in frame.columns]].copy()
        out["score"] = scores
        path = ctx.out_dir / f"predictions-{ctx.step_id}.csv"
        pd.DataFrame(out).to_csv(path, index=False)
        return StepResult(metrics={"rows": len(X)}, artifacts={"predictions": str(path)})


class EvaluateStep(_EitherLayout, Component):
    """Metrics of the predictions at the label holder (public values only); horizontal:
    each party scores its own rows and one secure sum gives everyone the pooled metrics."""

    name = "evaluate"
    needs = ("model", "split")
    params = EvaluateParams
    summary = ("AUC/KS/lift/accuracy/F1 or RMSE/MAE/R² at the label holder; horizontal: "
               "AUC/KS/log-loss/accuracy or RMSE/MAE/R² from secure sums")

    def aggregate(self, ctx: StepContext, params: Any) -> StepResult:
        return horizontal.evaluate_aggregator(ctx, params.metrics)

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn import metrics

        if ctx.state.get("predictions_on") != params.on:
            PredictStep().run(ctx, PredictParams(on=params.on, layout=params.layout))
        if params.layout == "horizontal":
            _, y = _features(ctx, _frame(ctx, params.on))
            return horizontal.evaluate_client(ctx, y, params.metrics)
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
            path = ctx.out_dir / f"curves-{ctx.step_id}.json"
            path.write_text(json.dumps(curves), encoding="utf-8")
            artifacts["curves"] = str(path)
        return StepResult(
            metrics={k: round(float(v), 6) for k, v in values.items()}, artifacts=artifacts
        )
