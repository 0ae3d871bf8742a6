"""Job steps that align the data parties' rows: ``psi`` and ``split``.

* ``psi`` loads the party's dataset through the step context's validating
  loader (if ``ctx.state["data"]`` is not there yet), aligns rows with the other data
  parties by PSI (:mod:`sharedml.psi`: OT-based KKRT for two parties, ECDH on
  Curve25519 for more) and keeps the aligned frame in ``ctx.state["data"]``;
  row ``r`` is the same entity at every party.
* ``split`` writes ``ctx.state["train"]`` / ``["test"]``: in vertical data the
  same rows at every party, stratified on the label holder's label without
  revealing it (:mod:`sharedml.learn.preprocessing.split`); in horizontal data
  each party's own rows, split locally.

The preprocessing steps are in :mod:`sharedml.components.preprocess` and
:mod:`sharedml.components.onehot`, the statistics in
:mod:`sharedml.components.stats`; what they share in
:mod:`sharedml.components.frames`.

Reveals: what each protocol's docstring says; as metrics only set sizes and
row counts.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from sharedml.components.base import (
    Component,
    Params,
    RowsUnlessHorizontal,
    StepContext,
    StepResult,
)
from sharedml.components.frames import require_frame, targets
from sharedml.errors import ConfigError, DataError


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
    makes = ("rows",)
    params = PsiParams
    summary = "PSI (OT-based KKRT for two parties, ECDH on Curve25519 for more); rows in a shared order"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.psi import KeyRules, align_rows

        ids = ([params.key] if isinstance(params.key, str) else params.key) or list(
            ctx.party.id_columns)
        frame = ctx.state.get("data")
        if frame is None:
            frame = ctx.load_dataset(ids)
        rules = KeyRules(strip=params.strip, casefold=params.casefold, nfc=params.nfc)
        receivers = None if params.receivers == "all" else params.receivers
        ctx.progress(0.0, f"PSI on {len(frame)} rows")
        aligned, result = align_rows(ctx.session.without_dealer(), frame, ids, rules=rules,
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
    layout: Literal["vertical", "horizontal"] = "vertical"
    by: Literal["random", "id"] = Field("random", description="random (seeded, stratified "
                                        "if asked) or id: the last test_size of the ids "
                                        "(numeric order if every id is a number), vertical only")


class SplitStep(RowsUnlessHorizontal, Component):
    """Train/test rows identical at every party, stratified at the label holder.

    Vertical layout (aligned rows): the same rows go to train and test at every
    party; a stratified split is decided by the label holder and sent as the
    row assignment only (:mod:`sharedml.learn.preprocessing.split`).
    Horizontal layout (each party holds its own rows of the same columns):
    each party splits its own rows with the job's seed, stratified on its own
    labels; nothing is sent, so nothing is revealed.
    """

    name = "split"
    makes = ("split",)
    params = SplitParams
    summary = "shared-seed split; stratified split sent as the row assignment only"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import shared_split

        if params.layout == "horizontal":
            if params.by == "id":
                raise ConfigError("by: id splits aligned (vertical) rows", party=ctx.party.name,
                                  step=ctx.step_id, remedy="drop 'by' for a horizontal split")
            return _split_own_rows(ctx, params)
        frame = require_frame(ctx, "data")
        if params.by == "id":
            return _split_by_id(ctx, frame, params.test_size)
        holder = ctx.label_holder if params.stratify else None
        if isinstance(params.stratify, str) and holder is not None:
            label = ctx.parties[holder].label
            if params.stratify != label:
                raise ConfigError(f"stratify names {params.stratify!r} but the label is {label!r}",
                                  party=ctx.party.name, step=ctx.step_id)
        labels = None
        if holder == ctx.party.name and ctx.party.label:
            labels = frame[ctx.party.label].to_numpy()
        try:
            train, test = shared_split(ctx.session.without_dealer(), len(frame),
                                       test_size=params.test_size, seed=params.seed,
                                       label_holder=holder, labels=labels)
        except DataError as exc:
            if labels is None or exc.column is not None:
                raise
            raise DataError(exc.message, party=exc.party, step=exc.step, remedy=exc.remedy,
                            column=ctx.party.label) from None
        ctx.state["train"] = frame.iloc[train].reset_index(drop=True)
        ctx.state["test"] = frame.iloc[test].reset_index(drop=True)
        return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})


def _split_by_id(ctx: StepContext, frame: Any, test_size: float) -> StepResult:
    """The vertical split by id order (:func:`~sharedml.learn.preprocessing.ordered_split`)."""
    from sharedml.learn.preprocessing import ordered_split

    train, test = ordered_split(ctx.session.without_dealer(),
                                frame[ctx.party.id_columns[0]].to_numpy(), test_size=test_size)
    ctx.state["train"] = frame.iloc[train].reset_index(drop=True)
    ctx.state["test"] = frame.iloc[test].reset_index(drop=True)
    return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})


def _split_own_rows(ctx: StepContext, params: Any) -> StepResult:
    """The horizontal split: this party's rows only, seeded, stratified on its own label."""
    from sklearn.model_selection import train_test_split

    frame, _ = targets(ctx, "horizontal")
    label = ctx.party.label if params.stratify else None
    if isinstance(params.stratify, str) and params.stratify != label:
        raise ConfigError(f"stratify names {params.stratify!r} but the label is {label!r}",
                          party=ctx.party.name, step=ctx.step_id)
    rows = np.arange(len(frame))
    if len(rows) < 2:
        raise DataError(f"{len(rows)} rows cannot be split into train and test",
                        party=ctx.party.name, step=ctx.step_id,
                        remedy="give this party more rows or leave out the split")
    strata = frame[label].to_numpy() if label else None
    try:
        train, test = train_test_split(rows, test_size=params.test_size,
                                       random_state=params.seed, stratify=strata)
    except ValueError as exc:  # e.g. a class with a single row cannot be stratified
        raise DataError(f"cannot split this party's rows: {exc}", party=ctx.party.name,
                        step=ctx.step_id, remedy="set stratify: false") from None
    ctx.state["train"] = frame.iloc[np.sort(train)].reset_index(drop=True)
    ctx.state["test"] = frame.iloc[np.sort(test)].reset_index(drop=True)
    return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})
