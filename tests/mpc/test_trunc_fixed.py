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


@pytest.mark.parametrize(
    ("provider", "parties"),
    [("dealer", ("alice", "bob")), ("dealer", ("alice", "bob", "carol")), ("he", ("alice", "bob"))],
)
def test_segments_give_one_product_per_mini_batch_from_one_opening(
    provider: str, parties: tuple[str, ...]
) -> None:
    """Three mini-batches' X[S]ᵀ t[S] as three columns, opening the truncation once."""
    from sharedml.transport.traffic import TrafficMeter

    rng = np.random.default_rng(7)
    n, d = 150, 5
    X = FP.decode(FP.encode(rng.normal(scale=2.0, size=(n, d))))
    v = rng.normal(scale=4.0, size=(n, 1))
    rows = rng.permutation(n)[:100]
    segments = (34, 33, 33)

    def body(mpc):
        owner, other = mpc.parties[0], mpc.parties[-1]
        fx = FixedOperand(mpc.share(X if mpc.party == owner else None, owner=owner))
        sv = mpc.share(v if mpc.party == other else None, owner=other)
        wide = type(sv)(mpc, sv.share * np.uint64(1 << 16), 32)  # v at scale 2f
        before = len(mpc.session.channel.events)
        folded = fx.truncated_matmul_t(wide[rows], 16, rows=rows, offset=0.5, segments=segments)
        opened = [e.tag for e in mpc.session.channel.events[before:] if e.kind == "send"]
        return folded.reveal(), opened

    out = run_mpc(body, provider, parties=parties, wrap=TrafficMeter)
    got, opened = out[parties[0]]
    assert got.shape == (d, 3)
    t = FP.decode(FP.encode(v))[rows] + 0.5
    at = 0
    for j, size in enumerate(segments):
        seg = slice(at, at + size)
        want = X[rows][seg].T @ t[seg]
        assert np.all(np.abs(got[:, j : j + 1] - want) <= size * np.abs(X).max() * FP.ulp + 1e-9)
        at += size
    if provider == "dealer":  # the dealer's material arrives too; the parties open once
        assert sum("trunc_fixed" in tag for tag in opened) == len(parties) - 1


def test_segments_that_do_not_split_the_rows_are_refused() -> None:
    from sharedml.errors import DataError

    def body(mpc):
        x = mpc.share(np.ones((6, 2)) if mpc.party == "alice" else None, owner="alice")
        fx = FixedOperand(x)
        v = mpc.share(np.ones((6, 1)) if mpc.party == "bob" else None, owner="bob")
        with pytest.raises(DataError, match=r"segments \[4, 4\] do not split 6 rows"):
            fx.truncated_matmul_t(v, 16, segments=(4, 4))
        return True

    assert run_mpc(body, "dealer")["alice"]
