"""Preprocessing job steps: ``scale``, ``fill``, ``woe`` and ``binning``.

* ``scale`` and ``fill`` fit on the training rows and transform train and test
  (or the whole frame before a split): locally for vertical data, jointly for
  horizontal data (secure sums; min-max scaling's extremes under MPC with the
  job's dealer). Horizontal data needs no alignment: with no earlier step,
  they load the party's dataset themselves.
* ``binning`` replaces feature values by bin indices (edges from the training rows).
* ``woe`` computes WOE/IV of every feature with the label holder's labels
  Paillier-encrypted (:mod:`sharedml.learn.preprocessing.woe`).

These steps talk only to the parties that have a dataset entry in the job
spec, except that horizontal min-max scaling asks the dealer for correlated
randomness.

Reveals: what each step's docstring says; as metrics only counts and
(``woe``, at the label holder) information values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from sharedml.components.base import (
    Component,
    Params,
    RowsUnlessHorizontal,
    StepContext,
    StepResult,
)
from sharedml.components.frames import feature_columns, targets
from sharedml.errors import ConfigError
from sharedml.learn.params import MAX_KEY_BITS
from sharedml.modelpart.pipeline import record
from sharedml.session import Session


class _Fitted(Protocol):
    """A Scaler or Filler: fitted on local rows (its joint fit is passed separately)."""

    def fit(self, x: np.ndarray) -> Any: ...
    def transform(self, x: np.ndarray) -> np.ndarray: ...


#: A joint fit over the data parties: ``(data session, rows, column names)``.
JointFit = Callable[[Session, np.ndarray, list[str]], object]


def _fit_and_transform(
    ctx: StepContext, model: _Fitted, layout: str, fit_horizontal: JointFit
) -> tuple[list[str], int]:
    """Fit ``model`` on the training rows' features and transform every target frame.

    Vertical data fits locally; horizontal data first agrees the feature
    columns with the other data parties (a schema fingerprint,
    :func:`sharedml.psi.features.agree_horizontal`), then fits jointly with
    ``fit_horizontal``. Returns the feature columns and how many of their
    cells were missing (NaN) before the transform, over all target frames.
    """
    fit_on, keys = targets(ctx, layout)
    cols = feature_columns(ctx, fit_on)
    x = fit_on[cols].to_numpy(dtype=np.float64)
    if layout == "vertical":
        _fit_own(ctx.session, model, x)
    else:
        from sharedml.psi.features import agree_horizontal

        session = ctx.session.without_dealer()
        agree_horizontal(session, dict.fromkeys(cols, "float"))
        fit_horizontal(session, x, cols)
    missing = 0
    for key in keys:
        frame = ctx.state[key].copy()
        vals = frame[cols].to_numpy(dtype=np.float64)
        missing += int(np.isnan(vals).sum())
        frame[cols] = model.transform(vals)
        ctx.state[key] = frame
    return cols, missing


def _fit_own(session: Session, model: _Fitted, x: np.ndarray) -> None:
    """A local fit; on the party's Ray cluster (``session.compute``) from per-shard
    statistics of the rows, which give the same centre, scale or fill (8.5-2)."""
    if session.compute is not None:
        from sharedml.scale.data import fit_on_shards

        if fit_on_shards(session.compute, model, x):  # type: ignore[arg-type]
            return
    model.fit(x)


class ScaleParams(Params):
    method: Literal["standard", "minmax"] = "standard"
    layout: Literal["vertical", "horizontal"] = "vertical"
    provider: Literal["dealer", "he"] | None = Field(
        None, description="horizontal min-max only, randomness of its secure maximum: the "
        "job's dealer (default) or Paillier between two parties"
    )

    @model_validator(mode="after")
    def _provider_for_minmax_only(self) -> ScaleParams:
        if self.provider is not None and self.protocol != "ss":
            raise ValueError("provider applies to method 'minmax' with layout 'horizontal' only")
        return self

    @property
    def protocol(self) -> Literal["ss"] | None:
        """``ss`` when the step computes on secret shares (horizontal min-max), which
        is how :func:`sharedml.components.dealer.needs_dealer` sees that the job
        needs a dealer (unless ``provider: he``), as for a ``train`` step."""
        return "ss" if self.method == "minmax" and self.layout == "horizontal" else None


class ScaleStep(RowsUnlessHorizontal, Component):
    """Scale feature columns, fitted on the training rows.

    Vertical layout: each party scales its own columns locally; nothing is
    sent. Horizontal layout (every party holds rows of the same columns):

    1. The parties agree on the feature columns (schema fingerprint).
    2. Each party tells the others whether its rows can be fitted on; a party
       with no rows, NaN/infinite values or values beyond the fixed-point
       range makes every party fail with the same error naming it.
    3. ``standard``: two secure sums give the pooled mean and standard
       deviation. ``minmax``: each party secret-shares its column minima and
       maxima, and the element-wise extremes over parties are computed with
       secure comparisons and opened
       (:mod:`sharedml.learn.preprocessing.scaling`). The MPC runtime gets
       its correlated randomness from the job's dealer (``sharedml run`` and
       the platform add one because :attr:`ScaleParams.protocol` is ``ss``),
       or with ``provider: he`` from Paillier between two parties.

    Reveals, to every data party: the feature column names; for
    ``standard`` the pooled mean and standard deviation per column and the
    total row count; for ``minmax`` the pooled minimum and maximum per
    column — never another party's rows, row count, sums or own extremes.
    The dealer learns only the number and shapes of the randomness requests.
    If the step fails in 2, the failing party's reason (no rows, or which
    columns hold NaN/too large values). Security model: semi-honest; the
    dealer must not collude with a data party.

    Each party writes its fitted centre and scale to its own
    ``out_dir/scaler-<step>.json`` (to scale new rows the same way later).
    """

    name = "scale"
    params = ScaleParams
    summary = "standard or min-max scaling; local (vertical) or secure sums / MPC max (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS, Scaler

        scaler = Scaler(params.method)
        runtime = ctx.mpc_runtime(
            params.provider, frac_bits=MINMAX_FRAC_BITS,
            purpose="horizontal min-max scaling's secure maximum",
            otherwise=" or use method 'standard'",
        ) if params.protocol == "ss" else None

        def joint(session: Session, x: np.ndarray, cols: list[str]) -> object:
            if runtime is not None:  # the check must know the runtime's precision
                session = runtime.session.without_dealer()
            opener = None if runtime is None else runtime.open
            return scaler.fit_horizontal(session, x, opener, columns=cols, step=ctx.step_id)

        cols, _ = _fit_and_transform(ctx, scaler, params.layout, joint)
        ctx.state["scaler"] = scaler
        record(ctx.state, {"op": "scale", "method": params.method, "columns": cols,
                           "center": scaler.center_.tolist(), "scale": scaler.scale_.tolist()})
        path = ctx.artifact("scaler", ".json")
        path.write_text(json.dumps({
            "method": params.method, "layout": params.layout, "columns": cols,
            "center": scaler.center_.tolist(), "scale": scaler.scale_.tolist(),
        }), encoding="utf-8")
        return StepResult(metrics={"columns": len(cols)}, artifacts={"scaler": str(path)})


class FillParams(Params):
    strategy: Literal["mean", "median", "constant"] = "mean"
    value: float = 0.0
    layout: Literal["vertical", "horizontal"] = "vertical"


class FillStep(RowsUnlessHorizontal, Component):
    """Fill missing feature values, fitted on the training rows.

    Horizontal layout: the parties agree on the feature columns, then
    ``mean`` is the pooled mean of the present values from two secure sums
    (reveals per column the pooled mean and the count of present values);
    ``constant`` needs no traffic; ``median`` is refused (a pooled median
    would need a secure sort).
    """

    name = "fill"
    params = FillParams
    summary = "mean/median/constant filling; joint mean through secure sums (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import Filler

        if params.layout == "horizontal" and params.strategy == "median":
            raise ConfigError(
                "fill: a pooled median over horizontally split rows is not supported",
                party=ctx.party.name,
                step=ctx.step_id,
                remedy="use strategy 'mean' (pooled, through secure sums) or 'constant'",
            )
        filler = Filler(params.strategy, params.value)

        def joint(session: Session, x: np.ndarray, cols: list[str]) -> object:
            return filler.fit_horizontal(session, x)

        cols, filled = _fit_and_transform(ctx, filler, params.layout, joint)
        record(ctx.state, {"op": "fill", "columns": cols, "values": filler.fill_.tolist()})
        return StepResult(metrics={"columns": len(cols), "filled_cells": filled})


class WoeParams(Params):
    n_bins: int = Field(10, ge=2, le=256)
    method: Literal["frequency", "width"] = "frequency"
    reveal: Literal["label_holder", "both"] = "label_holder"
    key_bits: int = Field(2048, ge=1024, le=MAX_KEY_BITS)


class WoeStep(Component):
    """WOE/IV of every party's features against the label holder's encrypted labels."""

    name = "woe"
    needs = ("rows",)
    params = WoeParams
    summary = "vertical WOE/IV with Paillier-encrypted labels"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges, vertical_woe

        frame, _ = targets(ctx)
        holder = ctx.label_holder
        if holder is None:
            raise ConfigError("woe needs a label holder", party=ctx.party.name, step=ctx.step_id,
                              remedy="declare a label at one party")
        cols = feature_columns(ctx, frame)
        bins = {c: apply_bins(frame[c], bin_edges(frame[c], params.n_bins, params.method))
                for c in cols}
        labels = frame[ctx.party.label].to_numpy() if ctx.party.name == holder else None
        out = vertical_woe(ctx.session.without_dealer(), holder, bins, labels, reveal=params.reveal,
                           key_bits=params.key_bits)
        ctx.state["woe"] = out
        if ctx.party.name != holder or out is None:
            return StepResult(metrics={"features": len(cols)})
        ivs = {f"{p}.{f}": round(r.iv, 6) for p, res in out.items()
               for f, r in res.items()}  # type: ignore[union-attr]
        return StepResult(metrics={"iv": ivs})


class BinParams(Params):
    n_bins: int = Field(10, ge=2, le=256)
    method: Literal["frequency", "width"] = "frequency"
    columns: list[str] | None = Field(None, description="default: every numeric feature")


class BinStep(Component):
    """Replace feature values by bin indices, edges fitted on the training rows (local)."""

    name = "binning"
    needs = ("rows",)
    params = BinParams
    summary = "equal-frequency or equal-width binning of each party's own features"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges

        fit_on, keys = targets(ctx)
        cols = params.columns if params.columns is not None else feature_columns(ctx, fit_on)
        cols = [c for c in cols if c in fit_on.columns]
        edges = {c: bin_edges(fit_on[c], params.n_bins, params.method) for c in cols}
        for key in keys:
            frame = ctx.state[key].copy()
            for c in cols:
                frame[c] = apply_bins(frame[c], edges[c]).astype(np.float64)
            ctx.state[key] = frame
        ctx.state["bin_edges"] = edges
        record(ctx.state, {"op": "binning", "edges": {c: e.tolist() for c, e in edges.items()}})
        return StepResult(metrics={"columns": len(cols)})
