"""Gradient histograms over row shards on a party's Ray workers, summed exactly.

SecureBoost's per-(feature, bin) sums are ring values: fixed-point gradients
and hessians (``he``: the plaintexts the label holder encrypts) or their
secret shares (``ss``), all in Z_2^64. Each shard's histogram is computed on a
worker (:func:`~sharedml.scale.moments.ring_histogram`) and the node adds
them mod 2^64, which is the whole table's histogram bit for bit, whatever
the shard order. Only this party's own bins and values go to its workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sharedml.scale.moments import ring_histogram
from sharedml.scale.runtime import Progress, RayCompute, _no_progress

STEP = "secureboost/histograms"


def _shards(bins: np.ndarray, values: np.ndarray, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(bins), rows):
        yield bins[start : start + rows], values[start : start + rows]


def _shard_histogram(shard: tuple[np.ndarray, np.ndarray], offsets: np.ndarray, total: int) -> np.ndarray:
    bins, values = shard
    return ring_histogram(bins, offsets, total, values)


def sharded_histogram(
    compute: RayCompute, bins: np.ndarray, offsets: np.ndarray, total: int, values: np.ndarray,
    shard_rows: int, progress: Progress = _no_progress,
) -> np.ndarray:
    """:func:`ring_histogram` of all rows, computed ``shard_rows`` at a time on the workers."""
    n_shards = max(1, -(-len(bins) // shard_rows))
    parts = compute.map(_shard_histogram, _shards(bins, np.asarray(values, np.uint64), shard_rows),
                        args=(offsets, total), step=STEP, total=n_shards, progress=progress)
    out = np.zeros((total, np.asarray(values).shape[1]), np.uint64)
    for part in parts:
        out += part  # wraps mod 2^64, as the ring does
    return out
