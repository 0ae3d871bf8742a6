"""Plaintext-oracle tests for sharing, linear ops and Beaver products."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import FixedOperand, concatenate

FP = FixedPoint(16)
ULP = FP.ulp


def _values(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 10.0) -> np.ndarray:
    v = rng.normal(scale=scale, size=shape)
    flat = v.reshape(-1)
    flat[:3] = 0.0  # zeros
    flat[3:6] = -np.abs(flat[3:6])  # negatives
    return v


def test_share_reveal_linear_ops_are_ring_exact() -> None:
    rng = np.random.default_rng(1)
    x, y = _values(rng, (6, 5)), _values(rng, (6, 5))
    big = np.array([FP.limit - 1.0, -FP.limit, 0.0, -1.0])  # range limits
    ex, ey, eb = FP.encode(x), FP.encode(y), FP.encode(big)

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        sb = mpc.share(big if mpc.party == "bob" else None, owner="bob")
        return {
            "x": sx.reveal(raw=True),
            "big": sb.reveal(raw=True),
            "add": (sx + sy).reveal(raw=True),
            "sub": (sx - sy).reveal(raw=True),
            "neg": (-sx).reveal(raw=True),
            "pub": (sx + y).reveal(raw=True),
            "rsub": (1.5 - sx).reveal(raw=True),
            "int": (sx * np.int64(-3)).reveal(raw=True),
            "sum": sx.sum(axis=0).reveal(raw=True),
            "idx": sx[1:4, ::2].reveal(raw=True),
            "reshape": sx.reshape(5, 6).T.reveal(raw=True),
            "cat": concatenate([sx, sy], axis=1).reveal(raw=True),
            "only_alice": sx.reveal(to="alice"),
        }

    out = run_mpc(body)
    a = out["alice"]
    assert np.array_equal(a["x"], ex)
    assert np.array_equal(a["big"], eb)
    assert np.array_equal(a["add"], ex + ey)
    assert np.array_equal(a["sub"], ex - ey)
    assert np.array_equal(a["neg"], -ex)
    assert np.array_equal(a["pub"], ex + ey)
    assert np.array_equal(a["rsub"], FP.encode(1.5) - ex)
    assert np.array_equal(a["int"], ex * np.uint64(2**64 - 3))
    assert np.array_equal(a["sum"], ex.sum(axis=0, dtype=np.uint64))
    assert np.array_equal(a["idx"], ex[1:4, ::2])
    assert np.array_equal(a["reshape"], ex.reshape(5, 6).T)
    assert np.array_equal(a["cat"], np.concatenate([ex, ey], axis=1))
    assert np.allclose(a["only_alice"], x, atol=ULP)
    assert out["bob"]["only_alice"] is None


@pytest.mark.parametrize("trunc", ["pair", "local"])
def test_products_within_fixed_point_bound(provider: str, trunc: str) -> None:
    rng = np.random.default_rng(2)
    x, y = _values(rng, (8, 6)), _values(rng, (8, 6))
    w = _values(rng, (6, 3), scale=1.0)
    if trunc == "pair":
        x[0, 0], y[0, 0] = 3.0e4, -3.0e4  # near the product limit 2^30 (|xy| = 9e8)
    # local truncation fails with probability ~|xy|·2^(2f+1-64): keep |xy| small there

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        sw = mpc.share(w if mpc.party == "bob" else None, owner="bob")
        return {
            "mul": (sx * sy).reveal(),
            "pubmul": (sx * -0.37).reveal(),
            "matmul": (sx @ sw).reveal(),
            "pubmatmul": (sx @ w).reveal(),
            "rpubmatmul": (x.T @ sy).reveal(),
            "mean": sx.mean(axis=1).reveal(),
        }

    a = run_mpc(body, provider, trunc=trunc)["alice"]
    # Inputs carry ≤ ½ ulp each; a product adds |x|+|y| half-ulps plus ≤ 1 ulp of truncation.
    bound = (np.abs(x) + np.abs(y) + 2) * ULP
    x = FP.decode(FP.encode(x))
    y = FP.decode(FP.encode(y))
    w = FP.decode(FP.encode(w))
    assert np.all(np.abs(a["mul"] - x * y) <= bound)
    # the public factor is encoded too (½ ulp), so the error scales with |x|
    assert np.all(np.abs(a["pubmul"] - x * -0.37) <= (np.abs(x) / 2 + 2) * ULP)
    k = x.shape[1]
    mm_bound = (np.abs(x) @ np.ones((k, 3)) * ULP / 2) + 2 * ULP
    assert np.all(np.abs(a["matmul"] - x @ w) <= mm_bound)
    assert np.all(np.abs(a["pubmatmul"] - x @ w) <= mm_bound)
    assert np.allclose(a["rpubmatmul"], x.T @ y, atol=x.shape[0] * 20 * ULP, rtol=0)
    # 1/k is a public real encoded with ½ ulp: relative error ≤ k·2^-(f+1)
    k = x.shape[1]
    assert np.all(np.abs(a["mean"] - x.mean(axis=1)) <= np.abs(x).sum(1) * ULP / 2 + 2 * ULP)


def test_fixed_operand_reuses_one_mask(provider: str) -> None:
    rng = np.random.default_rng(3)
    x = _values(rng, (40, 5), scale=1.0)
    ws = [_values(rng, (5, 1), scale=1.0) for _ in range(3)]
    g = _values(rng, (16, 1), scale=1.0)

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        fx = FixedOperand(sx)
        outs = []
        for i, w in enumerate(ws):
            sw = mpc.share(w if mpc.party == "bob" else None, owner="bob")
            outs.append(fx.matmul(sw, rows=np.arange(8 * i, 8 * i + 16)).reveal())
        sg = mpc.share(g if mpc.party == "bob" else None, owner="bob")
        outs.append(fx.matmul(sg, rows=slice(4, 20), transpose=True).reveal())
        step = fx.matmul(sg, rows=slice(4, 20), transpose=True, truncate=False) * (0.1 / 16)
        outs.append(step.reveal())
        return outs, mpc.provider.requests

    out = run_mpc(body, provider)
    outs, requests = out["alice"]
    for i, w in enumerate(ws):
        assert np.allclose(outs[i], x[8 * i : 8 * i + 16] @ w, atol=10 * ULP)
    assert np.allclose(outs[3], x[4:20].T @ g, atol=30 * ULP)
    assert np.allclose(outs[4], x[4:20].T @ g * (0.1 / 16), atol=4 * ULP)
    # one mask for X, one material request per product plus truncation
    kinds_per_product = 2 if provider == "dealer" else 3
    assert requests <= 1 + 5 * kinds_per_product


def test_module_usage_example_runs() -> None:
    """The usage example in sharedml.mpc's docstring is real code."""
    import sharedml.mpc

    doc = sharedml.mpc.__doc__ or ""
    block = doc[doc.index("    import numpy") : doc.index("Every party runs")]
    code = "\n".join(line[4:] for line in block.splitlines())
    namespace: dict = {}
    exec(code, namespace)
    out = namespace["out"]
    assert out["bob"] is None
    want = 1 / (1 + np.exp(-((1.5 * 0.5 - 2.0 * 0.25) * 2 - 1)))
    assert abs(out["alice"][0, 0] - want) <= 0.024


def test_share_of_a_shape_the_protocol_fixes_sends_nothing() -> None:
    from sharedml.transport.recording import RecordingChannel

    x = _values(np.random.default_rng(3), (4, 3))
    log: list = []

    def body(mpc):
        before = len(log)
        s = mpc.share(x if mpc.party == "alice" else None, owner="alice", shape=(4, 3))
        sent = [r.tag for r in log[before:] if r.frm == mpc.party and "share" in r.tag]
        return s.reveal(raw=True), sent

    out = run_mpc(body, wrap=lambda ch: RecordingChannel(ch, log))
    for party in ("alice", "bob"):
        opened, sent = out[party]
        np.testing.assert_array_equal(opened, FP.encode(x))
        assert sent == []  # no shape header


def test_share_of_the_wrong_shape_is_refused_at_its_owner() -> None:
    from sharedml.errors import DataError
    from sharedml.standalone import PartyFailed

    def body(mpc):
        value = np.zeros((2, 2)) if mpc.party == "alice" else None
        return mpc.share(value, owner="alice", shape=(3, 2))

    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    assert isinstance(info.value.error, DataError) and "(3, 2)" in str(info.value.error)
    assert info.value.error.party == "alice"
