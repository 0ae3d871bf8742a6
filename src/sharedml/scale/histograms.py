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

SecureBoost ``ss`` (:mod:`sharedml.learn.tree.ss_histograms`) computes its
histograms as Beaver products ``B_jᵀ Y`` on the feature holders' masked
bin matrices (:class:`sharedml.mpc.FixedOperand`); each party's local part
of a product, ``Eᵀ b_i + X_iᵀ f`` over all rows, is a sum over row shards.
:class:`ShardedProducts` keeps the row shards of ``E`` (opened once, known to
every party) and of the party's share ``X_i`` in its Ray object store and
sums the shards' products mod 2^64 — the same shares bit for bit, so the same
revealed histograms. Its workers see what the party holds anyway: ``E``, its
own share, its mask share ``b_i`` and the opened ``f``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.crypto import ring
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


def _batches(chunks: Iterable[tuple[int, bytes, list[mpz]]],
             rows: int) -> Iterator[tuple[int, bytes, int]]:
    """Consecutive chunks joined (packed ciphertexts are fixed-width, so their bytes
    concatenate) until a task has ``rows`` of them: (first row, packed, count)."""
    first, count = 0, 0
    packed: list[bytes] = []
    for start, data, cts in chunks:
        if not packed:
            first = start
        packed.append(data)
        count += len(cts)
        if count >= rows:
            yield first, b"".join(packed), count
            packed, count = [], 0
    if packed:
        yield first, b"".join(packed), count


def add_ciphertexts(
    compute: RayCompute, acc: _Accumulator, pk: PaillierPublicKey,
    chunks: Iterable[tuple[int, bytes, list[mpz]]], progress: Progress = _no_progress,
) -> None:
    """Every chunk's sums made on a worker and merged into ``acc``: chunks are read as
    workers free up and joined into tasks of up to ``shard_rows`` rows, at least a
    ``workers``-th of the node's rows each (a task per 2048-row chunk cost more CPU
    in Ray's overhead than the sums it moved)."""
    per_task = min(compute.config.shard_rows, -(-len(acc.cells) // compute.workers))
    jobs = ((acc.part(start, start + count), packed)
            for start, packed, count in _batches(chunks, max(1, per_task)))
    for part in compute.map(_chunk_sums, jobs, args=(pk.to_bytes(),), step=STEP,
                            progress=progress):
        acc.merge(part)


def _shard_products(e: np.ndarray, xs: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
    """A Ray task: one row shard's ``Eᵀ b + X_iᵀ f`` in Z_2^64."""
    z = ring.matmul(e.T, b)
    z += ring.matmul(xs.T, f)  # wraps mod 2^64
    return z


class ShardedProducts:
    """A fixed operand's local products over row shards on the party's workers
    (see the module docstring); :meth:`FixedOperand.offload` takes it."""

    def __init__(self, compute: RayCompute, e: np.ndarray, xs: np.ndarray,
                 shard_rows: int) -> None:
        if e.shape != xs.shape or e.ndim != 2:
            raise ValueError(f"E {e.shape} and the share {xs.shape} must be one matrix shape")
        self.compute = compute
        self.bounds = [(s, min(s + shard_rows, len(e))) for s in range(0, len(e), shard_rows)]
        # each shard of E and X_i goes to the object store once, for every product
        self.kept = [(compute.put(e[s:t]), compute.put(xs[s:t])) for s, t in self.bounds]

    def __call__(self, b: np.ndarray, f: np.ndarray) -> np.ndarray:
        shards = ((e, xs, b[s:t], f[s:t]) for (e, xs), (s, t) in zip(self.kept, self.bounds,
                                                                        strict=True))
        parts = self.compute.map(_shard_products, shards, step="secureboost/ss-products",
                                 total=len(self.bounds), spread=True)
        out = np.array(parts[0])  # Ray's results are read-only views of its store
        for part in parts[1:]:
            out += part  # wraps mod 2^64, as the ring does
        return out
