"""Job steps ``train``, ``predict`` and ``evaluate`` for the vertical learners.

Input: ``ctx.state["train"]`` / ``ctx.state["test"]`` — each party's own
aligned pandas frames, as the ``psi``/``split``/``scale`` steps leave them.
A party's feature columns are all its columns but its id columns and, at the
label holder, the label.

* ``train`` fits one :class:`~sharedml.learn.base.VerticalModel` part per party
  (``model: logistic_regression | linear_regression | secureboost | mlp``,
  ``protocol: ss | he``, for ``mlp`` ``ss | split``), keeps it in
  ``ctx.state["model"]`` and saves this party's part (and nothing else) with
  its feature pipeline as a new model version, sealed in the party's part
  store (:mod:`sharedml.modelpart`); the label holder draws the version's uid
  and sends it to the others. The uid and the part's fingerprint are the
  step's metrics: the registry records them (:mod:`sharedml.modelpart.registry`,
  the platform's registry).
* ``predict`` scores ``ctx.state[on]`` jointly; the scores exist at the label
  holder only (``ctx.state["predictions"]`` and a CSV of ids and scores in its
  ``out_dir``, mode 0600). With ``model:`` (a uid, resolved from
  ``NAME@ALIAS`` before the job starts) it needs no ``train``: each party
  loads its own part of that version, refusing any other
  (:meth:`~sharedml.modelpart.PartStore.load`), checks its new rows against
  the part's schema, applies its own fitted pipeline and scores the aligned
  rows (``on: data``); the label holder's scores are sealed with its node key
  (``predictions-<step>.csv.sealed``; ``sharedml model open`` reads them).
* ``evaluate`` computes the requested metrics at the label holder, writes the
  ROC/KS curve data there, and returns the metric values (public by design of
  this step, 9.4-3); the other parties return no metrics.

Reveals: what the chosen protocol reveals (see each learner's docstring); the
metric values to the platform; for ``secureboost``, each party's count of
splits per own feature (``feature_splits``; no threshold, no other party's
feature). Security model: that of the learner.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from sharedml.components import horizontal, horizontal_use
from sharedml.components.base import (
    DATA,
    DEALER,
    Component,
    Params,
    PartyConfig,
    StepContext,
    StepResult,
)
from sharedml.components.saved_models import load_part_for, save_part, write_scores
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
    layout: Literal["vertical", "horizontal"] = Field("vertical", description=_LAYOUT_SAYS)
    on: Literal["test", "train", "data"] | None = Field(
        None, description="the rows to score: default test, or data (every aligned row) "
        "with a saved model")
    model: str | None = Field(
        None, description="a saved model: NAME@ALIAS, NAME@VERSION or a version id; each "
        "party loads its own part (no train step)")
    fingerprints: dict[str, str] | None = Field(
        None, description="set when the reference is resolved: each party's registered "
        "part fingerprint")
    provider: Literal["dealer"] | None = Field(
        None, description="with model: a saved model whose prediction computes on shares "
        "(a split MLP; an ss model with reveal_weights: none, unless trained with provider: "
        "he) needs the job's dealer: 'dealer' adds it")

    def deals(self) -> bool:
        """Whether the job needs its dealer for this step (``provider: dealer``)."""
        return self.provider == "dealer"

    @property
    def rows(self) -> str:
        return self.on or ("data" if self.model else "test")


class EvaluateParams(Params):
    metrics: list[str] | None = Field(None, description="default: every metric of the task "
                                      "(a multi-class model: accuracy, auc, log_loss)")
    on: Literal["test", "train", "data"] = "test"
    layout: Literal["vertical", "horizontal"] = Field("vertical", description=_LAYOUT_SAYS)
    aggregator: str | None = Field(
        None, description="layout: horizontal: the data party that sums the metric statistics "
        "(it learns the pooled statistics only); default: the job's helper")


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
        if cls.summed and getattr(params, "layout", "vertical") == "horizontal":
            horizontal.check_parties(params, parties)

    @classmethod
    def aggregates(cls, params: Params) -> bool:
        """Whether the job's helper aggregates: a horizontal sum naming no data party."""
        return (cls.summed and getattr(params, "layout", "vertical") == "horizontal"
                and getattr(params, "aggregator", None) is None)

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """A horizontal step the helper aggregates reaches it (the aggregator is the dealer)."""
        if cls.aggregates(params):
            return (DATA, DEALER)
        return super().roles(params)  # type: ignore[misc]


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
        if not pd.api.types.is_numeric_dtype(frame[label]):
            raise DataError(
                "the label column holds values that are not numbers",
                party=ctx.party.name, step=ctx.step_id, column=label,
                remedy="encode the label as 0/1 (classification) or numbers (regression)",
            )
        y = frame[label].to_numpy()
        drop.append(label)
    X = frame.drop(columns=drop)
    non_numeric = [c for c, t in X.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if non_numeric:
        raise DataError(
            f"non-numeric feature columns {non_numeric[:5]}",
            party=ctx.party.name,
            step=ctx.step_id,
            column=str(non_numeric[0]),
            remedy="encode them (onehot) or drop them before training",
        )

    return X, y


def _label(ctx: StepContext, frame: Any) -> Any:
    """The label column of this party's frame (the label holder's), else ``None``."""
    label = ctx.party.label
    if not label:
        return None
    if label not in frame.columns:
        raise DataError(f"label column {label!r} is missing from the data",
                        party=ctx.party.name, step=ctx.step_id)
    return frame[label].to_numpy()


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
            return horizontal.train_here(ctx, params, X, y)
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
        part = save_part(ctx, model, list(X.columns))
        ctx.progress(1.0, "trained")
        metrics: dict[str, Any] = {
            "model": params.model, "protocol": params.protocol, "rows": len(X),
            "features": int(X.shape[1]), "model_uid": part.uid, "fingerprint": part.fingerprint,
        }
        if hasattr(model, "split_counts"):  # trees: splits per own feature (its Reveals:)
            metrics["feature_splits"] = model.split_counts([str(c) for c in X.columns])
        return StepResult(metrics=metrics,
                          artifacts={"model": str(ctx.part_store().path(part.uid))})


class PredictStep(_EitherLayout, Component):
    """Joint scores on the test (or train, or all) rows, at the label holder only;
    from the job's trained model or, with ``model:``, a saved model version."""

    name = "predict"
    needs = ("model", "split")

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """The dealer takes part (when the job has one): the trained model may be a
        secret-shared one, whose prediction opens an MPC runtime."""
        return (DATA, DEALER)
    params = PredictParams
    summary = ("joint prediction (trained here or a saved model); scores reach the label holder "
               "only (horizontal: each party scores its own rows)")
    summed = False  # horizontal: each party scores its own rows

    @classmethod
    def requires(cls, params: Any) -> tuple[str, ...]:
        if params.layout == "horizontal":  # a saved model: each party's own dataset will do
            return () if params.model else super().requires(params)
        if params.model:
            return ("rows",)
        return ("model",) if params.rows == "data" else ("model", "split")

    @classmethod
    def provides(cls, params: Any) -> tuple[str, ...]:
        return ("model",) if params.model and params.layout != "horizontal" else ()

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        if params.layout == "horizontal" and params.model:
            return horizontal_use.predict_saved(ctx, params)
        frame = _frame(ctx, params.rows)
        if params.layout == "horizontal":
            return horizontal_use.predict_own(ctx, frame, _features(ctx, frame)[0], params.rows)
        if params.rows == "data" and "train" in ctx.state and not params.model:
            raise ConfigError("after a split, the steps transform 'train' and 'test' only: "
                              "'data' holds the rows as loaded", party=ctx.party.name,
                              step=ctx.step_id, remedy="predict on: test or on: train")
        if params.model:
            X = load_part_for(ctx, params, frame)
        elif "model" not in ctx.state:
            raise ConfigError(
                "no trained model", party=ctx.party.name, step=ctx.step_id,
                remedy="run train first, or name a saved model (predict: {model: NAME@ALIAS})"
            )
        else:
            X, _ = _features(ctx, frame)
        scores = ctx.state["model"].predict(ctx.session, X)
        ctx.state["predictions"] = scores
        ctx.state["predictions_on"] = params.rows
        if scores is None or not ctx.files:
            return StepResult(metrics={"rows": len(X)})
        path = write_scores(ctx, frame, scores, sealed=bool(params.model))
        return StepResult(metrics={"rows": len(X)}, artifacts={"predictions": str(path)})


class EvaluateStep(_EitherLayout, Component):
    """Metrics of the predictions at the label holder (public values only); horizontal:
    each party scores its own rows and one secure sum gives everyone the pooled metrics."""

    name = "evaluate"
    needs = ("model", "split")

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """The dealer takes part (when the job has one): the trained model may be a
        secret-shared one, whose prediction opens an MPC runtime."""
        return (DATA, DEALER)
    params = EvaluateParams
    summary = ("AUC/KS/lift/accuracy/F1 (multi-class: accuracy, macro one-vs-rest AUC, log "
               "loss) or RMSE/MAE/R² at the label holder; horizontal: "
               "AUC/KS/log-loss/accuracy or RMSE/MAE/R² from secure sums")

    @classmethod
    def requires(cls, params: Any) -> tuple[str, ...]:
        if params.layout == "horizontal":
            return super().requires(params)
        return ("model",) if params.on == "data" else cls.needs

    def aggregate(self, ctx: StepContext, params: Any) -> StepResult:
        return horizontal_use.evaluate_aggregator(ctx, params)

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn import metrics

        if ctx.state.get("predictions_on") != params.on:
            PredictStep().run(ctx, PredictParams(on=params.on, model=None, fingerprints=None,
                                                 layout=params.layout, provider=None))
        if params.layout == "horizontal":
            _, y = _features(ctx, _frame(ctx, params.on))
            return horizontal_use.evaluate_here(ctx, params, y)
        scores = ctx.state.get("predictions")
        if scores is None:
            return StepResult()
        y = _label(ctx, _frame(ctx, params.on))
        if y is None:
            raise ConfigError("evaluate needs the label at the label holder",
                              party=ctx.party.name, step=ctx.step_id,
                              remedy="declare the label column of the new data in the job spec")
        task = ctx.state.get("task", "classification")
        values = metrics.evaluate(np.asarray(y), np.asarray(scores), task, params.metrics)
        artifacts = {}
        public: dict[str, Any] = {k: round(float(v), 6) for k, v in values.items()}
        binary = task == "classification" and np.ndim(scores) == 1
        if binary:  # charts and curves rank one score (a multi-class model: metrics only)
            public["charts"] = metrics.chart_summary(np.asarray(y), np.asarray(scores))
        if binary and ctx.files:
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
        return StepResult(metrics=public, artifacts=artifacts)
