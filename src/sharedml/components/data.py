"""Job steps for the data: ``psi``, ``split``, ``scale``, ``fill``, ``binning``, ``woe``.

Each data party's frame lives in ``ctx.state`` and never leaves its process:

* ``psi`` loads the party's dataset through the node's validating loader (if
  ``ctx.state["data"]`` is not there yet), aligns rows with the other data
  parties by ECDH-PSI (:mod:`sharedml.psi`) and keeps the aligned frame in
  ``ctx.state["data"]``; row ``r`` is the same entity at every party.
* ``split`` writes ``ctx.state["train"]`` / ``["test"]``, the same rows at every
  party, stratified on the label holder's label without revealing it
  (:mod:`sharedml.learn.preprocessing.split`).
* ``scale`` and ``fill`` fit on the training rows and transform train and test
  (or the whole frame before a split): locally for vertical data, through
  secure sums for horizontal data.
* ``binning`` replaces feature values by bin indices (edges from the training rows).
* ``woe`` computes WOE/IV of every feature with the label holder's labels
  Paillier-encrypted (:mod:`sharedml.learn.preprocessing.woe`).

Helper parties of the job (a dealer) hold no data and take no part: these
steps talk only to the parties that have a dataset entry in the job spec.

Reveals: what each protocol's docstring says; as metrics only sizes, counts
and (``woe``, at the label holder) information values.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field

from sharedml.components.base import Component, Params, StepContext, StepResult
from sharedml.errors import ConfigError
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value


class _PartiesOnly(Channel):
    """A view of a channel restricted to some of its peers (the data parties)."""

    def __init__(self, inner: Channel, peers: tuple[str, ...]) -> None:
        super().__init__(inner.party, peers, inner.job, inner.timeout)
        self._inner = inner

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._inner._recv(frm, tag, timeout)


def data_session(ctx: StepContext) -> Session:
    """The step's session over the data parties only (helpers left out)."""
    s = ctx.session
    peers = tuple(p for p in s.peers if p in ctx.parties)
    return Session(s.party, peers, _PartiesOnly(s.channel, peers), frac_bits=s.frac_bits,
                   seed=s.seed, extras=s.extras)


def _require(ctx: StepContext, key: str) -> pd.DataFrame:
    frame = ctx.state.get(key)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"no {key!r} data at this party for step {ctx.step_id!r}",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run psi (and split) before this step",
        )
    return frame


def feature_columns(ctx: StepContext, frame: pd.DataFrame) -> list[str]:
    """Numeric columns other than ids and the label."""
    skip = set(ctx.party.id_columns) | ({ctx.party.label} if ctx.party.label else set())
    return [c for c in frame.columns
            if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


class PsiParams(Params):
    key: str | list[str] | None = Field(None, description="id column(s); default: the party's")
    receivers: Literal["all"] | list[str] = "all"
    strip: bool = True
    casefold: bool = False
    nfc: bool = True
    workers: int | None = Field(None, ge=0, le=64)
    protocol: Literal["auto", "kkrt", "ecdh"] = Field(
        "auto", description="kkrt (OT-based, two parties), ecdh (Curve25519, any number); "
        "auto: kkrt for two parties")


class PsiStep(Component):
    """Align rows across the data parties by PSI on their ids (KKRT or ECDH)."""

    name = "psi"
    params = PsiParams
    summary = "PSI (OT-based KKRT for two parties, ECDH on Curve25519 for more); rows in a shared order"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.node.datasets import load_frame
        from sharedml.psi import KeyRules, align_rows

        ids = ([params.key] if isinstance(params.key, str) else params.key) or list(
            ctx.party.id_columns)
        frame = ctx.state.get("data")
        if frame is None:
            if ctx.party.dataset is None:
                raise ConfigError("this party has no dataset to align", party=ctx.party.name,
                                  step=ctx.step_id, remedy="give it a dataset in the job spec")
            frame = load_frame(ctx.party.dataset, ids, ctx.party.label, party=ctx.party.name)
        rules = KeyRules(strip=params.strip, casefold=params.casefold, nfc=params.nfc)
        receivers = None if params.receivers == "all" else params.receivers
        ctx.progress(0.0, f"PSI on {len(frame)} rows")
        aligned, result = align_rows(data_session(ctx), frame, ids, rules=rules,
                                     receivers=receivers, workers=params.workers,
                                     protocol=params.protocol)
        ctx.state["data"] = aligned
        metrics: dict[str, Any] = {"set_sizes": result.set_sizes}
        if result.size is not None:
            metrics["intersection"] = result.size
        return StepResult(metrics=metrics)


class SplitParams(Params):
    test_size: float = Field(0.3, gt=0.0, lt=1.0)
    seed: int = 42
    stratify: bool | str = Field(True, description="true or the label's name: stratify on it")


class SplitStep(Component):
    """Train/test rows identical at every party, stratified at the label holder."""

    name = "split"
    params = SplitParams
    summary = "shared-seed split; stratified split sent as the row assignment only"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import shared_split

        frame = _require(ctx, "data")
        holder = ctx.label_holder if params.stratify else None
        if isinstance(params.stratify, str) and holder is not None:
            label = ctx.parties[holder].label
            if params.stratify != label:
                raise ConfigError(f"stratify names {params.stratify!r} but the label is {label!r}",
                                  party=ctx.party.name, step=ctx.step_id)
        labels = None
        if holder == ctx.party.name and ctx.party.label:
            labels = frame[ctx.party.label].to_numpy()
        train, test = shared_split(data_session(ctx), len(frame), test_size=params.test_size,
                                   seed=params.seed, label_holder=holder, labels=labels)
        ctx.state["train"] = frame.iloc[train].reset_index(drop=True)
        ctx.state["test"] = frame.iloc[test].reset_index(drop=True)
        return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})


def _targets(ctx: StepContext) -> tuple[pd.DataFrame, list[str]]:
    """The frame to fit on and the state keys to transform."""
    if "train" in ctx.state:
        keys = [k for k in ("train", "test") if isinstance(ctx.state.get(k), pd.DataFrame)]
        return ctx.state["train"], keys
    return _require(ctx, "data"), ["data"]


class _Fitted(Protocol):
    """A Scaler or Filler: fitted on local rows or through secure sums, then applied."""

    def fit(self, x: np.ndarray) -> Any: ...
    def fit_horizontal(self, session: Session, x: np.ndarray) -> Any: ...
    def transform(self, x: np.ndarray) -> np.ndarray: ...


def _fit_and_transform(ctx: StepContext, model: _Fitted, layout: str) -> tuple[list[str], int]:
    """Fit ``model`` on the training rows' features and transform every target frame.

    Vertical data fits locally; horizontal data fits through secure sums over
    the data parties. Returns the feature columns and how many of their cells
    were missing (NaN) before the transform, over all target frames.
    """
    fit_on, keys = _targets(ctx)
    cols = feature_columns(ctx, fit_on)
    x = fit_on[cols].to_numpy(dtype=np.float64)
    if layout == "vertical":
        model.fit(x)
    else:
        model.fit_horizontal(data_session(ctx), x)
    missing = 0
    for key in keys:
        frame = ctx.state[key].copy()
        vals = frame[cols].to_numpy(dtype=np.float64)
        missing += int(np.isnan(vals).sum())
        frame[cols] = model.transform(vals)
        ctx.state[key] = frame
    return cols, missing


class ScaleParams(Params):
    method: Literal["standard", "minmax"] = "standard"
    layout: Literal["vertical", "horizontal"] = "vertical"


class ScaleStep(Component):
    """Scale feature columns, fitted on the training rows."""

    name = "scale"
    params = ScaleParams
    summary = "standard or min-max scaling; local (vertical) or secure sums (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import Scaler

        scaler = Scaler(params.method)
        cols, _ = _fit_and_transform(ctx, scaler, params.layout)
        ctx.state["scaler"] = scaler
        return StepResult(metrics={"columns": len(cols)})


class FillParams(Params):
    strategy: Literal["mean", "median", "constant"] = "mean"
    value: float = 0.0
    layout: Literal["vertical", "horizontal"] = "vertical"


class FillStep(Component):
    """Fill missing feature values, fitted on the training rows."""

    name = "fill"
    params = FillParams
    summary = "mean/median/constant filling; joint mean through secure sums (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import Filler

        cols, filled = _fit_and_transform(ctx, Filler(params.strategy, params.value), params.layout)
        return StepResult(metrics={"columns": len(cols), "filled_cells": filled})


class WoeParams(Params):
    n_bins: int = Field(10, ge=2, le=256)
    method: Literal["frequency", "width"] = "frequency"
    reveal: Literal["label_holder", "both"] = "label_holder"
    key_bits: int = Field(2048, ge=1024)


class WoeStep(Component):
    """WOE/IV of every party's features against the label holder's encrypted labels."""

    name = "woe"
    params = WoeParams
    summary = "vertical WOE/IV with Paillier-encrypted labels"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges, vertical_woe

        frame, _ = _targets(ctx)
        holder = ctx.label_holder
        if holder is None:
            raise ConfigError("woe needs a label holder", party=ctx.party.name, step=ctx.step_id,
                              remedy="declare a label at one party")
        cols = feature_columns(ctx, frame)
        bins = {c: apply_bins(frame[c], bin_edges(frame[c], params.n_bins, params.method))
                for c in cols}
        labels = frame[ctx.party.label].to_numpy() if ctx.party.name == holder else None
        out = vertical_woe(data_session(ctx), holder, bins, labels, reveal=params.reveal,
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
    params = BinParams
    summary = "equal-frequency or equal-width binning of each party's own features"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges

        fit_on, keys = _targets(ctx)
        cols = params.columns if params.columns is not None else feature_columns(ctx, fit_on)
        cols = [c for c in cols if c in fit_on.columns]
        edges = {c: bin_edges(fit_on[c], params.n_bins, params.method) for c in cols}
        for key in keys:
            frame = ctx.state[key].copy()
            for c in cols:
                frame[c] = apply_bins(frame[c], edges[c]).astype(np.float64)
            ctx.state[key] = frame
        ctx.state["bin_edges"] = edges
        return StepResult(metrics={"columns": len(cols)})
