"""Job steps ``cv`` and ``tune``: model optimisation around any ``train`` (8.1.2-3).

Input: the ``split`` step's training rows (``ctx.state["train"]``); the model
is given as the parameters of a ``train`` step (``train: {model: ...}``),
checked as that step checks them when the spec loads.

* ``cv`` trains and scores the model on every fold of the training rows
  (:func:`sharedml.learn.selection.cross_validate`: scikit-learn's folds,
  ``cross_val_score``'s assignment without ``shuffle``) and returns the
  per-fold metric, its mean and spread.
* ``tune`` searches ``space`` (:func:`sharedml.learn.selection.tune`: TPE or
  random from Optuna, or a grid; a budget in trials and/or seconds; median
  pruning), the ``train`` parameters given (the model's defaults for the
  rest) being the first trial — so the result is never worse than them on the
  cross-validated metric — and, with
  ``retrain``, trains the best configuration on all training rows as a
  ``train`` step would: its model parts are the step's ``model`` artifacts
  and later ``predict``/``evaluate`` steps use it, and the model registry
  (``sharedml run``'s models folder, or the platform's) registers it as a
  version named like a train step's model (``<job>.<step id>``).

Reveals: the fold ids (stratified ones depend on the labels: see
:mod:`sharedml.learn.selection.cv`), every trial's configuration and
per-fold metric values to every party and the platform; never a row's
score. Each training reveals what its protocol does. Security model: that
of the model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from sharedml.components.base import Component, Params, StepContext, StepResult
from sharedml.components.learn import TrainStep, _features, _frame
from sharedml.components.train_params import TrainParams, build_model, model_class
from sharedml.errors import ConfigError


class _Folding(Params):
    train: dict[str, Any] = Field(description="the model, as a train step's parameters")
    folds: int = Field(5, ge=2, le=20, description="number of folds")
    stratify: str | None = Field(
        None, description="the label column: keep each class's share in every fold"
    )
    shuffle: bool = Field(
        False, description="shuffle before cutting (false: scikit-learn's default)"
    )
    seed: int | None = Field(None, description="the shuffle's seed")
    metric: str = Field("auto", description="auto: AUC (classification) or RMSE")

    @model_validator(mode="after")
    def _train_is_a_train_step(self) -> _Folding:
        try:
            TrainParams.model_validate(self.train)
        except ValueError as exc:
            raise ValueError(f"train: {exc}") from None
        return self

    def trainer(self) -> Any:
        return TrainParams.model_validate(self.train)

    @property
    def protocol(self) -> str:
        """The model's protocol (whether the job needs a dealer, as for ``train``)."""
        return str(self.trainer().protocol)

    @property
    def provider(self) -> str | None:
        return getattr(self.trainer(), "provider", None)


class CVParams(_Folding):
    pass


class TuneParams(_Folding):
    folds: int = Field(3, ge=2, le=20, description="number of folds of every trial")
    space: dict[str, Any] = Field(
        description="parameter -> {low, high, log, int} or {choices: [...]} (or a list)"
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="Optuna's TPE, random, or a grid"
    )
    trials: int | None = Field(None, ge=1, description="budget: number of trials")
    seconds: float | None = Field(None, gt=0, description="budget: seconds (at the label holder)")
    prune: bool = Field(True, description="stop a trial whose running mean is below the median")
    retrain: bool = Field(True, description="train the best configuration on all training rows")

    @model_validator(mode="after")
    def _space_names_model_parameters(self) -> TuneParams:
        trainer = self.trainer()
        cls = model_class(trainer.model, trainer.protocol, trainer.task)
        settable = {n for n, p in cls.params.items() if p.job}  # type: ignore[attr-defined]
        unknown = sorted(set(self.space) - settable)
        if unknown:
            raise ValueError(
                f"space: {trainer.model} ({trainer.protocol}) has no parameters {unknown}"
            )
        return self


def _rows(ctx: StepContext) -> tuple[Any, Any]:
    return _features(ctx, _frame(ctx, "train"))


def _label_holder(ctx: StepContext) -> str:
    holder = ctx.label_holder
    if holder is None:
        raise ConfigError(
            "cross-validation needs a label",
            step=ctx.step_id,
            remedy="give one party a label in the job spec",
        )
    return holder


class CVStep(Component):
    """K-fold cross-validation of a model on the training rows (metrics only)."""

    name = "cv"
    needs = ("split",)
    params = CVParams
    summary = "k-fold cross-validation of any train step: per-fold metrics"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.selection import cross_validate

        X, y = _rows(ctx)
        trainer = params.trainer()
        ctx.progress(0.0, f"cross-validating {trainer.model} ({params.folds} folds)")
        result = cross_validate(
            ctx.session,
            ctx.session.data_parties,
            _label_holder(ctx),
            lambda: build_model(trainer),
            X,
            y,
            folds=params.folds,
            stratify=params.stratify is not None,
            shuffle=params.shuffle,
            seed=params.seed,
            metric=params.metric,
            tag=f"{ctx.step_id}/cv",
        )
        return StepResult(metrics=result.as_dict())


class TuneStep(Component):
    """Hyper-parameter search by cross-validation; the best retrained."""

    name = "tune"
    needs = ("split",)
    params = TuneParams
    summary = "hyper-parameter search (TPE, random, grid) by cross-validation; best retrained"

    @classmethod
    def provides(cls, params: Params) -> tuple[str, ...]:
        return ("model",) if getattr(params, "retrain", False) else ()

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.selection import tune

        X, y = _rows(ctx)
        base = params.train

        def make(trial: dict[str, Any]) -> Any:
            return build_model(TrainParams.model_validate({**base, **trial}))

        trainer = params.trainer()
        cls = model_class(trainer.model, trainer.protocol, trainer.task)
        declared = cls.params  # type: ignore[attr-defined]
        # the configuration given (the model's defaults where not given) is trial 0
        first = {k: base.get(k, declared[k].default) for k in params.space}
        ctx.progress(0.0, f"tuning {base['model']}")
        result = tune(
            ctx.session,
            ctx.session.data_parties,
            _label_holder(ctx),
            make,
            X,
            y,
            params.space,
            sampler=params.sampler,
            metric=params.metric,
            trials=params.trials,
            seconds=params.seconds,
            folds=params.folds,
            stratify=params.stratify is not None,
            shuffle=params.shuffle,
            seed=params.seed,
            prune=params.prune,
            first=first,
            tag=f"{ctx.step_id}/tune",
        )
        summary = result.as_dict()
        if not params.retrain:
            return StepResult(metrics=summary)
        best = TrainParams.model_validate({**base, **summary["best_params"]})
        trained = TrainStep().run(ctx, best)
        part = {k: trained.metrics[k] for k in ("model_uid", "fingerprint")}
        # the part's uid and fingerprint at the top, as a train step's: the run's or
        # the platform's model registry registers the retrained model (MODEL_STEPS)
        return StepResult(
            metrics={**summary, "retrained": trained.metrics, **part}, artifacts=trained.artifacts
        )
