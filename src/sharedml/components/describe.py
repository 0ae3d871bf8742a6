"""``describe``: each party's public summary of its own dataset.

Every party reads its own table and computes its row count, column count,
numeric column count and number of missing cells; the parties then exchange
their (row, column) counts so each one can check, before aligning samples,
that the others hold data of the expected size.

Steps:
    1. Each party loads its dataset locally (never sent anywhere).
    2. Each party computes its counts.
    3. ``all_gather`` of the pair (rows, columns) under tag ``sizes``.

Reveals: each party's row and column counts to every party of the job and,
as metrics, to the platform, with its numeric column count and number of
missing cells. Nothing about any row or value.
Security model: semi-honest; nothing here needs non-collusion.

``sleep_s`` spreads the step over that many seconds, reporting progress as it
goes (a slow, cancellable step for demos and for the scheduler's fault tests).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from sharedml.components.base import Component, Params, StepContext, StepResult
from sharedml.errors import DataError


class DescribeParams(Params):
    sleep_s: float = Field(0.0, ge=0.0, le=3600.0, description="spread the step over this long")


def _summary(path: Path, party: str, step: str) -> dict[str, int]:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read dataset {path}: {exc}",
            party=party,
            step=step,
            remedy="check the node's dataset registration points at a readable CSV file",
        ) from None
    return {
        "rows": int(frame.shape[0]),
        "columns": int(frame.shape[1]),
        "numeric_columns": int(frame.select_dtypes("number").shape[1]),
        "missing_cells": int(frame.isna().to_numpy().sum()),
    }


class DescribeStep(Component):
    """Public sizes of every party's dataset (rows, columns, missing cells)."""

    name = "describe"
    params = DescribeParams
    summary = "each party's row/column counts, exchanged between parties"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        if ctx.party.dataset is None:
            stats = {"rows": 0, "columns": 0, "numeric_columns": 0, "missing_cells": 0}
        else:
            path = ctx.datasets.path(ctx.party.dataset, party=ctx.party.name, step=ctx.step_id)
            stats = _summary(path, ctx.party.name, ctx.step_id)
        _pace(ctx, float(params.sleep_s))
        sizes = ctx.session.channel.all_gather(
            "sizes", np.array([stats["rows"], stats["columns"]], dtype=np.int64)
        )
        by_party = {p: [int(x) for x in np.asarray(v)] for p, v in sizes.items()}
        ctx.state["sizes"] = by_party
        ctx.progress(1.0, "described")
        metrics: dict[str, Any] = dict(stats)
        metrics["rows_by_party"] = {p: v[0] for p, v in by_party.items()}
        return StepResult(metrics=metrics)


def _pace(ctx: StepContext, seconds: float) -> None:
    """Take ``seconds``, reporting progress about ten times a second."""
    if seconds <= 0:
        return
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        ctx.progress(min(elapsed / seconds, 0.99), f"describing ({elapsed:.1f}/{seconds:g} s)")
        time.sleep(min(0.1, seconds - elapsed))
