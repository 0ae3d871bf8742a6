"""Bucketing of key digests for bucketed PSI (pure numpy, no I/O).

A bucket is ``floor(AES_k(d[:16])[0:4] · B / 2^32)``: AES under the run's
agreed 128-bit key as a pseudorandom function of the digest, so both parties
put an id in the same bucket and neither can aim an id at a bucket before
the key is fixed. Every bucket is padded to a public capacity that depends
only on the party's set size and ``B`` (:func:`capacity`), with random
digests that match nothing, so the bucket sizes the peer sees say nothing of
the set beyond its size.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: Standard deviations of head-room per bucket: an overflow (which redraws
#: the key) has probability below 1e-15 per bucket.
HEADROOM_SIGMAS = 8.0
HEADROOM_ROWS = 16


def bucket_count(sizes: dict[str, int], bucket_rows: int) -> int:
    """Buckets for the run: enough that the larger set has ``bucket_rows`` per bucket."""
    return max(1, math.ceil(max(sizes.values(), default=0) / bucket_rows))


def capacity(n: int, buckets: int) -> int:
    """Public padded size of each of a party's buckets: mean plus 8 σ plus 16."""
    mean = n / buckets
    return math.ceil(mean + HEADROOM_SIGMAS * math.sqrt(mean) + HEADROOM_ROWS)


def bucket_of(digests: np.ndarray, key: bytes, buckets: int) -> np.ndarray:
    """Bucket index of each ``(n, 32)`` digest, uint32 in ``[0, buckets)``."""
    if not len(digests):
        return np.zeros(0, np.uint32)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = np.ascontiguousarray(digests[:, :16]).tobytes()
    words = np.frombuffer(enc.update(blocks), np.uint32).reshape(-1, 4)[:, 0].astype(np.uint64)
    return ((words * np.uint64(buckets)) >> np.uint64(32)).astype(np.uint32)


def members(which: np.ndarray, buckets: int) -> list[np.ndarray]:
    """Row indices of each bucket, ascending within a bucket."""
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(buckets + 1))
    return [order[bounds[b] : bounds[b + 1]] for b in range(buckets)]


def padded(digests: np.ndarray, cap: int) -> np.ndarray:
    """``digests`` followed by random 32-byte digests up to ``cap`` rows (from :mod:`secrets`)."""
    extra = cap - len(digests)
    if extra < 0:
        raise ValueError(f"bucket of {len(digests)} rows exceeds its capacity {cap}")
    filler = np.frombuffer(secrets.token_bytes(32 * extra), np.uint8).reshape(extra, 32)
    return np.concatenate([np.ascontiguousarray(digests, np.uint8), filler])
