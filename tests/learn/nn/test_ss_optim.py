"""Adam's pieces on shares against numpy: the inverse square root over its
whole range (and its cap), and one optimiser step."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.learn.nn._core import U_MAX, Adam
from sharedml.learn.nn._ss_optim import SharedAdam, rsqrt_capped
from sharedml.mpc import MPC, DealerProvider, SharedTensor, serve_dealer
from sharedml.standalone import run_in_threads

PARTIES = ["alice", "bob", "dealer"]


def _on_shares(fn: Any) -> np.ndarray:
    def party(session: Any) -> Any:
        with MPC(session, DealerProvider(session)) as mpc:
            return fn(mpc)

    out = run_in_threads(
        {"alice": party, "bob": party, "dealer": serve_dealer},
        PARTIES,
        seed=b"o" * 16,
        dealer="dealer",
    )
    return np.asarray(out["alice"])


def test_rsqrt_capped_over_its_range() -> None:
    u = np.concatenate(
        [np.geomspace(1.0, 2.0**29, 400), [1.0, 4.0, 4.0 + 2**-16, 16.0, U_MAX, U_MAX + 1, 2.0**29]]
    )
    got = _on_shares(
        lambda mpc: rsqrt_capped(mpc.share(u if mpc.party == "alice" else None, "alice")).reveal()
    )
    want = 1.0 / np.sqrt(np.minimum(u, U_MAX))
    # relative 2e-4: the normalised Newton result carries about 3 ulp at f = 16
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_one_adam_step_on_shares_is_the_plaintext_step() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=50)
    # batch sums of 64 rows: mean gradients from 1e-4 to well past the clip (4)
    g_sum = 64 * rng.normal(size=50) * np.geomspace(1e-4, 40, 50)
    decay = (np.arange(50) % 3 != 0).astype(float)

    def shared(mpc: MPC) -> Any:
        ws = mpc.public(w)
        raw = mpc.fp.encode(g_sum) << np.uint64(mpc.frac_bits)  # 2f bits, as a product
        gs = SharedTensor(mpc, raw if mpc.index == 0 else np.zeros_like(raw), 2 * mpc.frac_bits)
        opt = SharedAdam(mpc, 50, 0.9, 0.999, 1e-3)
        for _ in range(3):
            ws = opt.step(ws, gs, decay, 0.01, 64, 0.1)
        return ws.reveal()

    got = _on_shares(shared)
    want = [w.copy()]
    opt = Adam(0.9, 0.999, 1e-3)
    for _ in range(3):
        opt.step(want, [g_sum], [decay], 0.01, 64, 0.1)
    np.testing.assert_allclose(got, want[0], atol=2e-4)
