"""The truncation bounds of sharedml.mpc.truncation, checked on 10^7 samples."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto import ring
from sharedml.crypto.prg import Prg
from sharedml.mpc import truncate

SAMPLES = 10_000_000
CHUNK = 2_000_000
F = 16


def _inputs(bits: int) -> np.ndarray:
    """Signed ring elements spread over magnitudes up to 2^bits, both signs, incl. edges."""
    words = Prg.fresh().uint64(0, SAMPLES)
    mags = words >> np.uint64(64 - bits)  # uniform in [0, 2^bits)
    # spread the magnitudes over every scale, not just the top one
    mags >>= words & np.uint64(31)
    signed = ring.to_signed(mags).copy()
    signed[1::2] *= -1
    signed[:6] = [0, 1, -1, (1 << bits) - 1, -(1 << bits), -(1 << bits) + 1]
    return signed


def _run(x: np.ndarray, mode: str) -> np.ndarray:
    def body(mpc):
        enc = ring.from_signed(x)
        out = []
        for lo in range(0, SAMPLES, CHUNK):
            part = enc[lo : lo + CHUNK] if mpc.party == "alice" else None
            sx = mpc.share(part, owner="alice", encoded=True, scale=2 * F)
            out.append(truncate(sx, F).reveal(to="alice", raw=True))
        return np.concatenate(out) if mpc.party == "alice" else None

    return ring.to_signed(run_mpc(body, trunc=mode)["alice"])


@pytest.mark.slow
def test_pair_truncation_is_floor_plus_at_most_one_ulp_always() -> None:
    x = _inputs(62)  # the whole documented range |x| < 2^62
    y = _run(x, "pair")
    err = y - (x >> F)  # floor division by 2^F
    assert set(np.unique(err).tolist()) <= {0, 1}
    assert (err == 1).mean() > 0.1  # the borrow is really probabilistic


@pytest.mark.slow
def test_local_truncation_failure_rate_matches_bound() -> None:
    bits = 44  # e.g. |x·y| < 2^12 at f = 16
    x = _inputs(bits)
    y = _run(x, "local")
    err = y - (x >> F)
    ok = np.abs(err) <= 1
    failures = int((~ok).sum())
    # documented: P[failure] ≤ 2^(l+1-64) per element
    bound = SAMPLES * 2.0 ** (bits + 1 - 64)
    assert failures <= 3 * bound + 5
    # the failures are the catastrophic kind, of size about 2^(64-F)
    if failures:
        assert np.all(np.abs(err[~ok]) > 2 ** (64 - F - 2))
