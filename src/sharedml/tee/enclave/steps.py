"""The job's steps inside the enclave: the component registry, run on the joined plaintext.

The enclave is the only party of its own job: one :class:`StepContext` whose
party (``enclave``) holds the joined table (:func:`.learners.join`: columns
``owner.column``, the label ``holder.label``) over a one-party session, so the
registry's own components run unchanged where their vertical form is local —
``split``, ``fill``, ``scale``, ``onehot``, ``binning``, ``predict``,
``evaluate``. Where the MPC form is a cryptographic protocol, the enclave
computes what that protocol computes, in plaintext:

* ``psi`` — the uploads are already inner-joined on the id column;
* ``woe`` — the per-bin counts the Paillier protocol decrypts, then the same
  :func:`~sharedml.learn.preprocessing.woe.woe_iv`;
* ``correlation`` — ``Zᵀ Z / n`` of the standardised columns, then the MPC
  step's own VIF and summary (:mod:`sharedml.components.stats`);
* ``train`` — :mod:`.trainers` (the linear learners' SGD, XGBoost, a torch MLP);
  the model is a :class:`~sharedml.tee.model.ReleasedModel`, which ``predict``
  and ``evaluate`` score rows with, exactly as a recipient would.

A column a spec names (``onehot``/``binning`` ``columns``, ``categories``) may
be given as the owner wrote it (``age``: every provider's ``age``) or
qualified (``bank.age``); ``correlation``'s per-party ``columns`` are
qualified with their party.

Reveals: nothing by itself — it returns every step's metrics, the models and
the scores to the runtime, which releases them as the owners' policies allow
(:meth:`~.runtime.Enclave.run`).
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sharedml.components import registry
from sharedml.components.base import Component, PartyConfig, StepContext, execute
from sharedml.components.frames import feature_columns, require_frame, targets
from sharedml.errors import ConfigError, DataError
from sharedml.session import Session
from sharedml.tee import scheme
from sharedml.tee.enclave import trainers
from sharedml.tee.model import ReleasedModel
from sharedml.transport.local import LocalHub

PARTY = "enclave"
#: Steps the registry's component runs as is (its vertical form is local to one party).
AS_IS = ("split", "fill", "scale", "onehot", "binning", "predict", "evaluate")


@functools.cache
def class_of(name: str) -> type[Component]:
    """The registry's component class (looked up once per process: the image's packages do not change)."""
    return registry.get(name)


@dataclass
class InsideModel:
    """A trained model as the ``predict``/``evaluate`` components call it."""

    released: ReleasedModel

    @property
    def task(self) -> str:
        return self.released.task

    def predict(self, session: Session, X: pd.DataFrame) -> np.ndarray:
        return self.released.predict(X)


@dataclass(frozen=True)
class Scores:
    """A step's scores by id, kept as arrays; written as Parquet only when released."""

    ids: pd.DataFrame
    score: np.ndarray

    def to_parquet(self) -> bytes:
        out = self.ids.copy()
        out["score"] = self.score
        buf = io.BytesIO()
        out.to_parquet(buf, index=False)
        return buf.getvalue()


@dataclass
class Outcome:
    """Every step's metrics, the model of each ``train`` and the scores of each ``predict``/``evaluate``."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, ReleasedModel] = field(default_factory=dict)
    scores: dict[str, Scores] = field(default_factory=dict)


def parse(wire: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """``(id, component, params)`` of the ``Run`` request's steps, validated as a spec's are."""
    out = []
    for i, raw in enumerate(wire):
        if not isinstance(raw, dict) or not isinstance(raw.get("component"), str):
            raise ConfigError(f"steps[{i}] of the run request is malformed", step="run")
        component, step_id = raw["component"], str(raw.get("id") or raw["component"])
        params = class_of(component).parse(raw.get("params") or {}, f"steps[{i}].{component}")
        scheme.check_step(step_id, component, params)
        out.append((step_id, component, params))
    return out


class InsideRun:
    """One run of a job's steps over the joined table (module docstring)."""

    def __init__(self, joined: pd.DataFrame, *, job: str, label: str, id_column: str, workdir: Path,
                 saved: dict[str, ReleasedModel] | None = None) -> None:
        self.saved = saved or {}
        if label not in joined.columns and not self.saved:
            raise ConfigError(f"label {label!r} is not among the joined columns", step="run")
        workdir.mkdir(parents=True, exist_ok=True)
        party = PartyConfig(PARTY, None, label if label in joined.columns else None, (id_column,))
        session = Session(PARTY, (PARTY,), LocalHub([PARTY]).channel(PARTY, job))
        self.job = job
        self.ctx = StepContext(session, party, {PARTY: party}, {"data": joined}, workdir, "", files=False)
        self.outcome = Outcome()
        self._own: dict[str, Callable[[StepContext, Any], dict[str, Any]]] = {
            "psi": self._psi, "woe": _woe, "correlation": _correlation, "train": self._train}

    def run(self, steps: list[tuple[str, str, Any]]) -> Outcome:
        for step_id, component, params in steps:
            start = time.perf_counter()
            ctx = replace(self.ctx, step_id=step_id)
            if component == "predict" and params.model:
                params = self._saved(ctx, params)
            if component in AS_IS:
                params = _qualified(component, params, self._frame())
                metrics = execute(class_of(component)(), ctx, params).metrics
            else:
                metrics = self._own[component](ctx, params)
            self.outcome.steps.append({"id": step_id, "component": component, "metrics": metrics,
                                       "seconds": round(time.perf_counter() - start, 4)})
            if component in ("predict", "evaluate") and ctx.state.get("predictions") is not None:
                self.outcome.scores[step_id] = self._scores(ctx)
        return self.outcome

    def _saved(self, ctx: StepContext, params: Any) -> Any:
        """A registered model's ``predict``: the model opened from its sealed blob (:mod:`.saved`)
        becomes the step's model; the registry's own predict then scores the rows asked for."""
        released = self.saved[str(params.model)]
        ctx.state["model"] = InsideModel(released)
        ctx.state["task"] = released.task
        return params.model_copy(update={"model": None, "fingerprints": None, "on": params.rows})

    def _frame(self) -> pd.DataFrame:
        frame = self.ctx.state.get("train", self.ctx.state["data"])
        return frame if isinstance(frame, pd.DataFrame) else self.ctx.state["data"]

    def _psi(self, ctx: StepContext, params: Any) -> dict[str, Any]:
        ids = [params.key] if isinstance(params.key, str) else list(params.key or ctx.party.id_columns)
        if ids != list(ctx.party.id_columns):
            raise ConfigError(f"psi key {ids} is not the id column {ctx.party.id_columns[0]!r} the uploads "
                              "are joined on", step=ctx.step_id, remedy="use the parties' id column")
        return {"intersection": len(ctx.state["data"])}

    def _train(self, ctx: StepContext, params: Any) -> dict[str, Any]:
        from sharedml.components.learn import _features

        x, labels = _features(ctx, require_frame(ctx, "train"))
        y = np.asarray(labels)
        task = {"logistic_regression": "classification", "linear_regression": "regression"}.get(
            params.model, params.task or "classification")
        if task == "classification" and not np.isin(y, (0, 1)).all():
            raise DataError("classification needs 0/1 labels", step=ctx.step_id, remedy="encode the label as 0/1")
        given = {k: v for k, v in params.model_dump().items()
                 if k in params.model_fields_set and k not in ("model", "task")}
        released = trainers.fit(params.model, task, x.to_numpy(dtype=np.float64), y,
                                list(x.columns), given, trainers.public_seed(self.job, ctx.step_id))
        ctx.state["model"] = InsideModel(released)
        ctx.state["task"] = task
        ctx.state.pop("predictions_on", None)
        self.outcome.models[ctx.step_id] = released
        return {"model": params.model, "protocol": "tee", "rows": len(x), "features": int(x.shape[1])}

    def _scores(self, ctx: StepContext) -> Scores:
        frame = ctx.state[ctx.state["predictions_on"]]
        return Scores(frame[list(ctx.party.id_columns)], np.asarray(ctx.state["predictions"], dtype=np.float64))


def _qualified(component: str, params: Any, frame: pd.DataFrame) -> Any:
    """``columns``/``categories`` as the joined table names them (module docstring)."""
    if component not in ("onehot", "binning"):
        return params

    def names(name: str) -> list[str]:
        if name in frame.columns:
            return [name]
        return [c for c in frame.columns if c.partition(".")[2] == name] or [name]

    update: dict[str, Any] = {}
    if getattr(params, "columns", None) is not None:
        update["columns"] = [q for n in params.columns for q in names(n)]
    if getattr(params, "categories", None) is not None:
        update["categories"] = {q: v for n, v in params.categories.items() for q in names(n)}
    return params.model_copy(update=update)


def _woe(ctx: StepContext, params: Any) -> dict[str, Any]:
    from sharedml.learn.preprocessing import apply_bins, bin_edges
    from sharedml.learn.preprocessing.woe import bin_counts, woe_iv

    frame, _ = targets(ctx)
    y = frame[ctx.party.label].to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise DataError("WOE needs binary 0/1 labels", step=ctx.step_id, remedy="encode the label as 0/1")
    ivs = {}
    for c in feature_columns(ctx, frame):
        bins = apply_bins(frame[c], bin_edges(frame[c], params.n_bins, params.method))
        pos, neg = bin_counts(bins, y, int(bins.max(initial=0)) + 1)
        ivs[c] = round(woe_iv(pos, neg).iv, 6)
    return {"iv": ivs}


def _correlation(ctx: StepContext, params: Any) -> dict[str, Any]:
    from sharedml.components.stats import _finish, _summary

    frame, _ = targets(ctx)
    cols = feature_columns(ctx, frame)
    if params.columns:
        chosen = {f"{p}.{c}" for p, names in params.columns.items() for c in names}
        listed = {c.partition(".")[0] for c in chosen}
        cols = [c for c in cols if c in chosen or c.partition(".")[0] not in listed]
        missing = sorted(chosen - set(frame.columns))
        if missing:
            raise ConfigError(f"correlation columns {missing[:10]} are not among the joined columns",
                              step=ctx.step_id, remedy="list each party's own feature columns")
    x = frame[cols].to_numpy(dtype=np.float64)
    if len(x) < 2 or not np.isfinite(x).all():
        raise DataError("the correlation needs two or more rows without missing values", step=ctx.step_id,
                        remedy="add a 'fill' step before the correlation")
    std = x.std(axis=0)
    constant = std == 0
    z = (x - x.mean(axis=0)) / np.where(constant, 1.0, std)
    r, v = _finish(z.T @ z / len(z), constant)
    owner = [c.partition(".")[0] for c in cols]
    return {"columns": len(cols), **_summary(r, v, owner, constant)}
