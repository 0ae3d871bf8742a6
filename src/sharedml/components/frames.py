"""What every data step shares: its frames and their feature columns.

Each data party's frame lives in ``ctx.state`` (``"data"`` after alignment,
``"train"``/``"test"`` after a split) and never leaves its process. The job's
dealer holds no data: a step's protocols among the data parties take
``ctx.session.without_dealer()``, and a step that computes on secret shares
gets its MPC runtime from :meth:`StepContext.mpc_runtime
<sharedml.components.base.StepContext.mpc_runtime>` (the session's choice of
randomness, dealer or Paillier).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sharedml.components.base import StepContext
from sharedml.errors import ConfigError


def require_frame(ctx: StepContext, key: str) -> pd.DataFrame:
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


def targets(ctx: StepContext, layout: str = "vertical") -> tuple[pd.DataFrame, list[str]]:
    """The frame to fit on and the state keys to transform.

    Horizontal data needs no alignment: if no earlier step left a frame, the
    party's dataset is loaded here (validated as ``psi`` does)."""
    if "train" in ctx.state:
        keys = [k for k in ("train", "test") if isinstance(ctx.state.get(k), pd.DataFrame)]
        return ctx.state["train"], keys
    if layout == "horizontal" and "data" not in ctx.state and ctx.party.dataset is not None:
        frame = ctx.load_dataset()
        if frame.empty:  # no rows, no types: read the columns as numbers so the schema
            # check compares names and the fit reports the empty party by name
            skip = set(ctx.party.id_columns)
            frame = frame.astype({c: np.float64 for c in frame.columns if c not in skip})
        ctx.state["data"] = frame
    return require_frame(ctx, "data"), ["data"]
