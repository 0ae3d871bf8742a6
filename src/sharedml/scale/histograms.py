"""Gradient histograms over row shards on a party's Ray workers, combined exactly.

SecureBoost's per-(feature, bin) sums are ring values: fixed-point gradients
and hessians (``he``: the plaintexts the label holder encrypts) or their
secret shares (``ss``), all in Z_2^64. Each shard's histogram is computed on a
worker (:func:`~sharedml.scale.moments.ring_histogram`) and the node adds
them mod 2^64, which is the whole table's histogram bit for bit, whatever
the shard order. Under Paillier (SecureBoost ``he``), a feature holder's
root sums are made per chunk of ciphertexts on the workers
(:func:`add_ciphertexts`) and multiplied together mod ``n^2``: the same
ciphertexts as one process makes. Only this party's own bins and values (or
the ciphertexts it received) go to its workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.scale.moments import ring_histogram
from sharedml.scale.runtime import Progress, RayCompute, _no_progress

if TYPE_CHECKING:
    from gmpy2 import mpz

    from sharedml.crypto.paillier import PaillierPublicKey
    from sharedml.learn.tree.he_histograms import _Accumulator

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


def _chunk_sums(job: tuple[Any, bytes], pk_bytes: bytes) -> Any:
    """A Ray task: one chunk's homomorphic sums per cell (an accumulator :meth:`part`)."""
    from sharedml.crypto.paillier import PaillierPublicKey

    part, packed = job
    part.add(0, PaillierPublicKey.from_bytes(pk_bytes).unpack(packed))
    return part


def add_ciphertexts(
    compute: RayCompute, acc: _Accumulator, pk: PaillierPublicKey,
    chunks: Iterable[tuple[int, bytes, list[mpz]]], progress: Progress = _no_progress,
) -> None:
    """Every chunk's sums made on a worker and merged into ``acc`` (chunks are read as
    workers free up: at most ``workers`` chunks in flight)."""
    jobs = ((acc.part(start, start + len(cts)), packed) for start, packed, cts in chunks)
    for part in compute.map(_chunk_sums, jobs, args=(pk.to_bytes(),), step=STEP,
                            progress=progress):
        acc.merge(part)
