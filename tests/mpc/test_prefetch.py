"""Prefetched dealer material: one message each way for many requests, same results."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import FixedOperand
from sharedml.standalone import PartyFailed
from sharedml.transport.recording import RecordingChannel, WireRecord

FP = FixedPoint(16)


def _step(mpc, fx, w, rows):
    z = fx.matmul(w, rows=rows)  # FIXED_MATMUL + TRUNC
    p = z * z  # MUL + TRUNC
    return (p < 1.0).reveal(), z.reveal()  # comparison material, then reveal


def test_prefetched_batches_match_and_use_one_message_each_way() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    w = rng.normal(size=(5, 1)) * 0.3
    batches = [rng.permutation(200)[:64] for _ in range(4)]
    log: list[WireRecord] = []

    def body(mpc):
        fx = FixedOperand(mpc.share(X if mpc.party == "alice" else None, owner="alice"))
        sw = mpc.share(w if mpc.party == "bob" else None, owner="bob")
        provider = mpc.provider
        with provider.recording() as plan:
            first = _step(mpc, fx, sw, batches[0])
        out = [first]
        for rows in batches[1:]:
            provider.prefetch([(k, d, None if r is None else rows) for k, d, r in plan])
            out.append(_step(mpc, fx, sw, rows))
        return out, len(plan)

    res = run_mpc(body, wrap=lambda ch: RecordingChannel(ch, log))
    out, n_requests = res["alice"]
    assert n_requests >= 8
    for rows, (bits, z) in zip(batches, out, strict=True):
        want = FP.decode(FP.encode(X))[rows] @ FP.decode(FP.encode(w))
        assert np.allclose(z, want, atol=1e-3)
        assert np.array_equal(bits[np.abs(z * z - 1) > 1e-2], (z * z < 1)[np.abs(z * z - 1) > 1e-2])
    from sharedml.mpc.material import Kind, Request

    requests = [Request.decode(r.value) for r in log if r.to == "dealer" and r.tag.endswith("req")]
    bundles = [r for r in requests if r.kind == Kind.BUNDLE]
    single = [r for r in requests if r.kind not in (Kind.BUNDLE, Kind.STOP)]
    # three prefetched batches: one bundle each; one request each only for the
    # fixed mask and the recorded batch
    assert len(bundles) == 3 and len(single) == n_requests + 1
    replies = {r.tag.rsplit("/", 1)[-1] for r in log if r.frm == "dealer"}
    assert {str(b.counter) for b in bundles} <= replies


def test_a_request_that_does_not_match_the_prefetch_is_refused() -> None:
    def body(mpc):
        x = mpc.share(np.ones(4) if mpc.party == "alice" else None, owner="alice")
        from sharedml.mpc.material import Kind

        mpc.provider.prefetch([(Kind.MUL, (5,), None)])
        return (x * x).reveal()  # asks for MUL (4,) and a truncation pair

    with pytest.raises(PartyFailed, match="prefetched MUL"):
        run_mpc(body)
