"""Row helpers every PSI protocol uses: fixed-width keys as scalars, distinct keys,
and the secret permutation that hides where a party's rows sit.

Pure numpy, no I/O; the secret permutation draws from :mod:`secrets`, never
numpy's generator (STYLE.md 9).
"""

from __future__ import annotations

import secrets

import numpy as np


def as_void(rows: np.ndarray) -> np.ndarray:
    """An ``(n, w)`` byte array as ``n`` opaque ``w``-byte scalars (sortable, comparable)."""
    return np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").ravel()


def unique_first(digests: np.ndarray) -> np.ndarray:
    """Row index of the first occurrence of each distinct digest, ascending."""
    _, first = np.unique(as_void(digests), return_index=True)
    return np.sort(first)


def secret_permutation(m: int) -> np.ndarray:
    """A uniformly random permutation from :mod:`secrets` (argsort of 64-bit draws)."""
    draws = np.frombuffer(secrets.token_bytes(8 * m), dtype=np.uint64) if m else np.zeros(0)
    return np.argsort(draws, kind="stable")
