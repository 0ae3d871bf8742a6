"""Batch scoring sharded over a party's Ray workers: the seam «Model release» plugs into.

A shared model's prediction has a *local part* at each party — its partial
linear score ``X_k w_k``, or the side of every row at each of its tree splits
— and a part between the parties (masked sums, the label holder's leaves),
which is unchanged. :func:`score_shards` runs the local part over row shards
on the workers (at most ``workers`` shards in flight) and returns the rows
in order, so the protocol step that follows sees the single-process array.

Not wired yet: ``predict {model: NAME@ALIAS}`` (from «Model release») scores
in the party's process; its per-party local function is what it will pass
here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from sharedml.scale.runtime import Progress, RayCompute, _no_progress

STEP = "predict/sharded"


def _apply(shard: Any, local_part: Callable[[Any], np.ndarray]) -> np.ndarray:
    return np.asarray(local_part(shard))


def score_shards(
    compute: RayCompute, shards: Iterable[Any], local_part: Callable[[Any], np.ndarray], *,
    total: int | None = None, progress: Progress = _no_progress,
) -> np.ndarray:
    """``local_part`` of every shard (frames or arrays of rows) on the workers, rows in order."""
    parts = compute.map(_apply, shards, args=(local_part,), step=STEP, total=total,
                        progress=progress)
    return np.concatenate(parts) if parts else np.zeros(0)
