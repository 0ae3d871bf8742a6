"""Comparisons, selections and nonlinear functions against plaintext oracles."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import functions as F
from sharedml.mpc import nonlinear as N

FP = FixedPoint(16)
ULP = FP.ulp


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=5.0, size=n)
    y = rng.normal(scale=5.0, size=n)
    x[:4] = [0.0, -0.0, 1.0, -1.0]
    y[:4] = [0.0, 0.0, 1.0, 1.0]  # ties and sign flips
    x[4:8] = [FP.limit / 4, -FP.limit / 4, ULP, -ULP]  # near the comparison range limits
    y[4:8] = [-FP.limit / 4, FP.limit / 4, 0.0, 0.0]
    return FP.decode(FP.encode(x)), FP.decode(FP.encode(y))


def test_comparisons_are_exact() -> None:
    x, y = _inputs(400, 5)

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        return {
            "lt": (sx < sy).reveal(),
            "gt": (sx > sy).reveal(),
            "ge": (sx >= 0.0).reveal(),
            "eq": F.eq(sx, sy).reveal(),
            "sign": F.sign(sx).reveal(),
            "relu": F.relu(sx).reveal(),
            "abs": F.absolute(sx).reveal(),
            "select": F.select(sx < sy, sx, sy).reveal(),
            "max": F.maximum(sx, sy).reveal(),
        }

    a = run_mpc(body)["alice"]
    assert np.array_equal(a["lt"], (x < y).astype(float))
    assert np.array_equal(a["gt"], (x > y).astype(float))
    assert np.array_equal(a["ge"], (x >= 0).astype(float))
    assert np.array_equal(a["eq"], (x == y).astype(float))
    assert np.array_equal(a["sign"], np.where(x >= 0, 1.0, -1.0))
    # products with a 0/1 bit need no truncation: ring exact
    assert np.array_equal(a["relu"], np.maximum(x, 0))
    assert np.array_equal(a["abs"], np.abs(x))
    assert np.array_equal(a["select"], np.minimum(x, y))
    assert np.array_equal(a["max"], np.maximum(x, y))


def test_a2b_gives_the_ring_value_in_bits() -> None:
    from sharedml.mpc.boolean import a2b

    x, _ = _inputs(300, 10)

    def body(mpc):
        sx = mpc.share(x if mpc.party == "bob" else None, owner="bob")
        return a2b(sx).reveal()

    assert np.array_equal(run_mpc(body)["alice"], FP.encode(x))


@pytest.mark.slow
def test_comparisons_with_he_material() -> None:
    """The HE provider makes AND triples bit by bit (slow): a small batch."""
    x, y = _inputs(8, 9)

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        return {"lt": (sx < sy).reveal(), "relu": F.relu(sx).reveal()}

    a = run_mpc(body, "he")["alice"]
    assert np.array_equal(a["lt"], (x < y).astype(float))
    assert np.array_equal(a["relu"], np.maximum(x, 0))


def test_max_argmax_clip() -> None:
    rng = np.random.default_rng(6)
    x = FP.decode(FP.encode(rng.normal(size=(9, 7))))
    x[0] = 0.0  # all ties: argmax picks the first

    def body(mpc):
        sx = mpc.share(x if mpc.party == "bob" else None, owner="bob")
        return {
            "max": F.max(sx, axis=1).reveal(),
            "max0": F.max(sx, axis=0).reveal(),
            "argmax": F.argmax(sx, axis=1).reveal(),
            "clip": F.clip(sx, -0.5, 0.75).reveal(),
        }

    a = run_mpc(body)["alice"]
    assert np.array_equal(a["max"], x.max(axis=1))
    assert np.array_equal(a["max0"], x.max(axis=0))
    assert np.array_equal(a["argmax"], np.eye(7)[x.argmax(axis=1)])
    assert np.array_equal(a["clip"], np.clip(x, -0.5, 0.75))


CASES = {
    "sigmoid_poly": (np.linspace(-4, 4, 801), lambda t: N.sigmoid(t, "poly"), "sigmoid", 0, 0.024),
    "sigmoid_clipped": (
        np.linspace(-60, 60, 1201),
        lambda t: N.sigmoid(t, "clipped"),
        "sigmoid",
        0,
        0.024,
    ),
    "sigmoid_accurate": (
        np.linspace(-40, 40, 1601),
        lambda t: N.sigmoid(t, "accurate"),
        "sigmoid",
        0,
        5e-4,
    ),
    "exp": (np.linspace(-20, 10, 1201), N.exp, "exp", 1e-3, 5e-5),
    "reciprocal": (np.geomspace(0.05, 500, 1201), N.reciprocal, "reciprocal", 1e-3, 5e-5),
    "rsqrt": (np.geomspace(0.05, 100, 801), N.rsqrt, "rsqrt", 2e-3, 5e-5),
    "sqrt": (np.geomspace(0.05, 100, 801), N.sqrt, "sqrt", 2e-3, 5e-5),
    "sqrt_wide": (
        np.geomspace(1.0, 1600, 801),
        lambda t: N.sqrt(t, max_value=1600),
        "sqrt",
        2e-3,
        5e-5,
    ),
    "log": (np.geomspace(0.05, 100, 801), N.log, "log", 0, 2e-3),
    "log_wide": (np.geomspace(0.5, 1000, 801), lambda t: N.log(t, max_value=1000), "log", 0, 2e-3),
}
ORACLES = {
    "sigmoid": lambda x: 0.5 * (1 + np.tanh(x / 2)),
    "exp": lambda x: np.exp(np.clip(x, -16, 10)),
    "reciprocal": lambda x: 1 / x,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "sqrt": np.sqrt,
    "log": np.log,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_nonlinear_within_stated_bound(name: str) -> None:
    grid, fn, oracle, rel, abs_ = CASES[name]
    rng = np.random.default_rng(7)
    lo, hi = grid.min(), grid.max()
    extra = rng.uniform(lo, hi, size=200)
    x = FP.decode(FP.encode(np.concatenate([grid, extra])))

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        return fn(sx).reveal()

    got = run_mpc(body)["alice"]
    want = ORACLES[oracle](x)
    err = np.abs(got - want)
    allowed = np.maximum(rel * np.abs(want), abs_)
    assert np.all(err <= allowed), f"{name}: worst error {err.max():.3g} at x={x[err.argmax()]:.4g}"


def test_division() -> None:
    rng = np.random.default_rng(8)
    y = FP.decode(FP.encode(rng.uniform(0.05, 500, size=300)))
    x = FP.decode(FP.encode(rng.normal(scale=3, size=300)))

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        return (sx / sy).reveal()

    got = run_mpc(body)["alice"]
    want = x / y
    assert np.all(np.abs(got - want) <= 1e-3 * np.abs(want) + np.abs(x) * 5e-5 + 2 * ULP)


@pytest.mark.parametrize("bits", [32, 16, 8])
def test_narrow_comparisons_exact_within_promised_range(bits: int) -> None:
    rng = np.random.default_rng(bits)
    limit = 2.0 ** (bits - 1 - 16)  # |x - y| < 2^(bits-1) ring units at f = 16
    x = FP.decode(FP.encode(rng.uniform(-limit, limit, size=640) * 0.98))
    x[:4] = [0.0, ULP, -ULP, -limit + ULP]
    y = np.zeros_like(x)
    y[4:8] = x[4:8]  # ties

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        return {
            "lt": F.lt(sx, y, bits=bits).reveal(),
            "gt": F.gt(sx, y, bits=bits).reveal(),
            "small": F.lt(sx[:10], 0.0, bits=bits).reveal(),  # the full-adder path
        }

    a = run_mpc(body)["alice"]
    assert np.array_equal(a["lt"], (x < y).astype(float))
    assert np.array_equal(a["gt"], (x > y).astype(float))
    assert np.array_equal(a["small"], (x[:10] < 0).astype(float))


def test_sigmoid_with_narrow_comparisons() -> None:
    x = FP.decode(
        FP.encode(np.concatenate([np.linspace(-30000, 30000, 641), np.linspace(-8, 8, 641)]))
    )

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        return {m: N.sigmoid(sx, m, bits=32).reveal() for m in ("clipped", "accurate")}

    out = run_mpc(body)["alice"]
    want = ORACLES["sigmoid"](x)
    assert np.all(np.abs(out["clipped"] - want) <= 0.024)
    assert np.all(np.abs(out["accurate"] - want) <= 5e-4)


@pytest.mark.parametrize("parties", [("alice", "bob"), ("alice", "bob", "carol")])
def test_sign_after_dropping_low_bits(parties: tuple[str, ...]) -> None:
    """``drop``: exact outside the one-sided band [0, (n-1)·2^drop) ring units."""
    from sharedml.mpc.boolean import ltz

    drop, n = 24, len(parties)
    rng = np.random.default_rng(11)
    ring_x = np.concatenate(
        [
            rng.integers(-(1 << 54), 1 << 54, size=700),  # within the promise for 32 bits
            np.arange(-3, 4) * (1 << drop) // 2,  # in and around the band
            [0, 1, -1, (n - 1) << drop, ((n - 1) << drop) - 1, -(1 << drop)],
        ]
    ).astype(np.int64)

    def body(mpc):
        owner = mpc.parties[0]
        sx = mpc.share(
            ring_x.view(np.uint64) if mpc.party == owner else None,
            owner=owner,
            encoded=True,
            scale=0,
        )
        return {
            "narrow": ltz(sx, 32, drop=drop).reveal(),
            "small": ltz(sx[:20], 32, drop=drop).reveal(),  # the full-adder path
        }

    got = run_mpc(body, parties=parties)[parties[0]]
    band = (ring_x >= 0) & (ring_x < (n - 1) << drop)
    want = (ring_x < 0).astype(float)
    assert np.array_equal(got["narrow"][~band], want[~band])
    assert np.all(got["narrow"][band] >= 0)  # inside the band either reading
    assert np.array_equal(got["small"][~band[:20]], want[:20][~band[:20]])
    assert np.all(got["narrow"][ring_x >= (n - 1) << drop] == 0)


@pytest.mark.parametrize(
    ("provider", "parties"),
    [("dealer", ("alice", "bob")), ("dealer", ("alice", "bob", "carol")), ("he", ("alice", "bob"))],
)
def test_bit_mul_matches_b2a_then_product(provider: str, parties: tuple[str, ...]) -> None:
    """One round with DABIT_MUL material (dealer), b2a + Beaver otherwise (HE)."""
    from sharedml.mpc.boolean import bit_mul, msb_bits

    x, y = _inputs(300 if provider == "dealer" else 40, 9)

    def body(mpc):
        owner, other = mpc.parties[0], mpc.parties[-1]
        sx = mpc.share(x if mpc.party == owner else None, owner=owner)
        sy = mpc.share(y if mpc.party == other else None, owner=other)
        return bit_mul(msb_bits(sx - sy), sy).reveal()

    got = run_mpc(body, provider, parties=parties)[parties[0]]
    assert np.array_equal(got, np.where(x < y, y, 0.0))
