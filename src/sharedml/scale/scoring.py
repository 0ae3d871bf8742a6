"""Batch scoring sharded over a party's Ray workers: the seam «Model release» plugs into.

A shared model's prediction has a *local part* at each party — its partial
linear score ``X_k w_k``, or the side of every row at each of its tree splits
— and a part between the parties (masked sums, the label holder's leaves),
which is unchanged. :func:`score_shards` runs the local part over row shards
on the workers (at most ``workers`` shards in flight) and returns the rows
in order, so the protocol step that follows sees the single-process array.

Wired through :meth:`Session.local_rows <sharedml.session.Session.local_rows>`:
a model's ``predict`` (a job's ``predict`` step, ``predict {model: NAME@ALIAS}``
included) hands it its local part — SecureBoost's split sides, a linear
model's own partial score — and :func:`score_rows` cuts the party's rows into
``shard_rows`` shards. The shards are row slices and the local parts are row
by row, so the array is the single-process one.
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
    total: int | None = None, progress: Progress = _no_progress, axis: int = 0,
) -> np.ndarray:
    """``local_part`` of every shard (frames or arrays of rows) on the workers, rows in
    order (along ``axis`` of its output)."""
    parts = compute.map(_apply, shards, args=(local_part,), step=STEP, total=total,
                        progress=progress)
    return np.concatenate(parts, axis=axis) if parts else np.zeros(0)


def score_rows(compute: RayCompute, X: np.ndarray, local_part: Callable[[Any], np.ndarray],
               *, axis: int = 0, progress: Progress = _no_progress) -> np.ndarray:
    """``local_part(X)``, computed ``shard_rows`` rows of ``X`` per Ray task."""
    rows = compute.config.shard_rows
    shards = (X[i : i + rows] for i in range(0, len(X), rows))
    return score_shards(compute, shards, local_part, total=-(-len(X) // rows),
                        progress=progress, axis=axis)
