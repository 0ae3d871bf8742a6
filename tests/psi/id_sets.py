"""Random id sets with a chosen overlap, for the PSI tests of every protocol."""

from __future__ import annotations

import numpy as np


def overlapping_sets(
    rng: np.random.Generator, n: int, overlap: float
) -> tuple[list[str], list[str]]:
    """Two sets of ``n`` distinct string ids sharing ``round(n * overlap)``; B shuffled."""
    common = round(n * overlap)
    pool = rng.choice(10 * n + 10, size=2 * n - common, replace=False)
    a = [f"id-{v}" for v in pool[:n]]
    b = [f"id-{v}" for v in np.concatenate([pool[:common], pool[n:]])]
    rng.shuffle(b)
    return a, b
