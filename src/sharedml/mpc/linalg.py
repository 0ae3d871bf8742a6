"""Small-matrix linear algebra on shared matrices (for statistics such as VIF).

``inv_spd(a, bound)`` inverts a shared symmetric positive definite d×d matrix
by the Newton–Schulz iteration

1. X_0 = I / bound, where ``bound`` ≥ λ_max(A) is public (for a correlation
   matrix, ``bound = d`` always holds since λ_max ≤ trace = d);
2. X_{k+1} = X_k (2I - A X_k): two Beaver matrix products per step.

Convergence: the residual R_k = I - A X_k satisfies R_{k+1} = R_k², and
‖R_0‖ = 1 - λ_min/bound, so after k steps ‖R_k‖ = (1 - λ_min/bound)^(2^k).
``iterations`` defaults to the least k making that ≤ 2^-20 for a condition
bound ``cond`` ≥ bound/λ_min (default 1000): k = ⌈log2(cond · 20·ln 2)⌉.
Fixed-point rounding adds about d·(‖X‖ + 1) ulps per step; ``tests/mpc``
checks the result against numpy.

Reveals nothing beyond the Beaver openings. Semi-honest, as the provider.
Reference: Schulz, "Iterative Berechnung der reziproken Matrix", ZAMM 1933;
used for MPC by e.g. Mohassel & Rindal, ABY3 (CCS 2018) §5.
"""

from __future__ import annotations

import math

import numpy as np

from sharedml.errors import DataError
from sharedml.mpc.tensor import SharedTensor


def inv_spd(
    a: SharedTensor, bound: float | None = None, cond: float = 1000.0, iterations: int | None = None
) -> SharedTensor:
    """The inverse of a shared SPD matrix (see module docstring)."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise DataError(
            f"inv_spd: needs a square matrix, got shape {a.shape}", party=a.mpc.party, step="inv_spd"
        )
    d = a.shape[0]
    bound = float(d) if bound is None else float(bound)
    if iterations is None:
        iterations = max(1, math.ceil(math.log2(cond * 20 * math.log(2))))
    x = a.mpc.public(np.eye(d) / bound)
    two_i = 2.0 * np.eye(d)
    for _ in range(iterations):
        x = x @ (two_i - a @ x)
    return x
