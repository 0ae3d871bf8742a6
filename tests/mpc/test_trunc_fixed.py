"""A truncation folded into the fixed operand's product that follows it."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import FixedOperand

FP = FixedPoint(16)


@pytest.mark.parametrize(
    ("provider", "parties"),
    [("dealer", ("alice", "bob")), ("dealer", ("alice", "bob", "carol")), ("he", ("alice", "bob"))],
)
def test_truncated_matmul_t_matches_truncate_then_product(
    provider: str, parties: tuple[str, ...]
) -> None:
    rng = np.random.default_rng(5)
    n, d, m = 120, 6, 40
    X = FP.decode(FP.encode(rng.normal(scale=3.0, size=(n, d))))
    v = rng.normal(scale=4.0, size=(n, 1))
    v[:4] = [[0.0], [-1e-5], [1e-5], [-7.5]]
    rows = rng.permutation(n)[:m]

    def body(mpc):
        owner, other = mpc.parties[0], mpc.parties[-1]
        fx = FixedOperand(mpc.share(X if mpc.party == owner else None, owner=owner))
        sv = mpc.share(v if mpc.party == other else None, owner=other)
        wide = type(sv)(mpc, sv.share * np.uint64(3 << 16), 32)  # 3v at scale 2f
        got = fx.truncated_matmul_t(wide[rows], 16, rows=rows, offset=0.25).reveal()
        full = fx.truncated_matmul_t(wide, 16, offset=-0.5).reveal()
        return got, full

    got, full = run_mpc(body, provider, parties=parties)[parties[0]]
    t = FP.decode(FP.encode(v)) * 3.0
    want = X[rows].T @ (t[rows] + 0.25)
    # t is exact to one ulp per element; the product sums m of them
    assert np.all(np.abs(got - want) <= m * np.abs(X).max() * FP.ulp + 1e-9)
    want_full = X.T @ (t - 0.5)
    assert np.all(np.abs(full - want_full) <= n * np.abs(X).max() * FP.ulp + 1e-9)
