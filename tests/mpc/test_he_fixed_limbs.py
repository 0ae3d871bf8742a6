"""HEProvider splits each fixed mask share into limbs once and reuses the split."""

from __future__ import annotations

import numpy as np
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import FixedOperand

ULP = FixedPoint(16).ulp


def test_fixed_operand_limbs_are_split_once() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(24, 4))
    ws = [rng.normal(size=(4, 1)) for _ in range(2)]
    g = rng.normal(size=(8, 1))

    def body(mpc):
        masks = mpc.provider._fixed
        fx = FixedOperand(mpc.share(x if mpc.party == "alice" else None, owner="alice"))
        cached = [masks.cached_bytes]  # the mask is dealt, not yet split
        outs = []
        for i, w in enumerate(ws):
            sw = mpc.share(w if mpc.party == "bob" else None, owner="bob")
            outs.append(fx.matmul(sw, rows=np.arange(8 * i, 8 * i + 8)).reveal())
            cached.append(masks.cached_bytes)
        limbs = masks.limbs(fx.id)
        sg = mpc.share(g if mpc.party == "bob" else None, owner="bob")
        outs.append(fx.matmul(sg, rows=slice(2, 10), transpose=True).reveal())
        cached.append(masks.cached_bytes)
        return outs, cached, masks.limbs(fx.id) is limbs

    out = run_mpc(body, "he")
    for party in ("alice", "bob"):
        outs, cached, same = out[party]
        assert cached[0] == 0  # the first product splits the mask share ...
        assert cached[1] > 0 and cached[1:] == [cached[1]] * 3  # ... and later ones reuse it
        assert same
    outs = out["alice"][0]
    for i, w in enumerate(ws):
        assert np.allclose(outs[i], x[8 * i : 8 * i + 8] @ w, atol=10 * ULP)
    assert np.allclose(outs[2], x[2:10].T @ g, atol=20 * ULP)
