"""n ≥ 2: the same protocols with three computing parties and a dealer."""

from __future__ import annotations

import numpy as np
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import functions as F

FP = FixedPoint(16)


def test_three_party_sharing_products_and_comparisons() -> None:
    rng = np.random.default_rng(31)
    x, y, z = (FP.decode(FP.encode(rng.normal(scale=4, size=128))) for _ in range(3))
    w = FP.decode(FP.encode(rng.normal(size=(128, 3))))
    owners = {"alice": x, "bob": y, "carol": z}

    def body(mpc):
        sx, sy, sz = (mpc.share(v if mpc.party == p else None, owner=p) for p, v in owners.items())
        sw = mpc.share(w if mpc.party == "carol" else None, owner="carol")
        return {
            "sum": (sx + sy - sz).reveal(raw=True),
            "mul": (sx * sy).reveal(),
            "matmul": (sz @ sw).reveal(),
            "lt": (sx < sz).reveal(to="carol"),
            "relu": F.relu(sy).reveal(to="carol"),
        }

    out = run_mpc(body, parties=("alice", "bob", "carol"))
    a, c = out["alice"], out["carol"]
    assert np.array_equal(a["sum"], FP.encode(x) + FP.encode(y) - FP.encode(z))
    assert np.all(np.abs(a["mul"] - x * y) <= (np.abs(x) + np.abs(y) + 2) * FP.ulp)
    assert np.allclose(a["matmul"], z @ w, atol=150 * FP.ulp)
    assert np.array_equal(c["lt"], (x < z).astype(float))
    assert np.array_equal(c["relu"], np.maximum(y, 0))
    assert a["lt"] is None and out["bob"]["relu"] is None


def test_two_runtimes_in_one_job_use_separate_scopes() -> None:
    from sharedml.mpc import MPC, DealerProvider, serve_dealer
    from sharedml.standalone import run_in_threads

    def party(session):
        out = []
        for name in ("first", "second"):
            provider = DealerProvider(session, scope=f"dealer/{name}")
            with MPC(session, provider, scope=f"mpc/{name}") as mpc:
                x = mpc.share(np.arange(4.0) if mpc.party == "alice" else None, owner="alice")
                out.append((x * x).reveal())
        return out

    def dealer(session):
        return [serve_dealer(session, scope=f"dealer/{n}").requests for n in ("first", "second")]

    res = run_in_threads({"alice": party, "bob": party, "dealer": dealer}, ["alice", "bob", "dealer"],
                      dealer="dealer")
    for got in res["alice"]:
        assert np.allclose(got, np.arange(4.0) ** 2, atol=1e-4)
    assert res["dealer"] == [2, 2]  # a triple and a truncation pair each


def test_inverse_of_a_correlation_matrix() -> None:
    from sharedml.mpc.linalg import inv_spd

    rng = np.random.default_rng(41)
    z = rng.normal(size=(400, 5))
    z[:, 4] = z[:, 0] * 0.9 + z[:, 1] * 0.3 + rng.normal(scale=0.2, size=400)  # collinear
    corr = np.corrcoef(z, rowvar=False)
    want = np.linalg.inv(corr)
    assert np.linalg.cond(corr) < 1000

    def body(mpc):
        sc = mpc.share(corr if mpc.party == "alice" else None, owner="alice")
        return inv_spd(sc).reveal()

    got = run_mpc(body)["alice"]
    # VIFs are the diagonal: within 1% of numpy's
    assert np.allclose(np.diag(got), np.diag(want), rtol=1e-2)
    assert np.allclose(got, want, atol=0.05 * np.abs(want).max())
