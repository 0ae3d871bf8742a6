"""A part of the suite over GrpcChannel (mutual TLS): parties as separate processes."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import MPC, DealerProvider, FixedOperand, serve_dealer
from sharedml.mpc import nonlinear as N
from sharedml.session import Session
from sharedml.standalone import run_in_processes

FP = FixedPoint(16)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    x = FP.decode(FP.encode(rng.normal(scale=3, size=(30, 4))))
    y = FP.decode(FP.encode(rng.normal(scale=3, size=(30, 4))))
    w = FP.decode(FP.encode(rng.normal(size=(4, 2))))
    return x, y, w


def _body(mpc: MPC) -> dict[str, np.ndarray | None]:
    x, y, w = _data()
    sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
    sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
    sw = mpc.share(w if mpc.party == "bob" else None, owner="bob")
    out = {"mul": (sx * sy).reveal(to="alice"), "matmul": (sx @ sw).reveal(to="alice")}
    if mpc.provider.name == "dealer":
        out["lt"] = (sx < sy).reveal(to="alice")
        out["sigmoid"] = N.sigmoid(sx, "accurate").reveal(to="alice")
        out["fixed"] = FixedOperand(sx).matmul(sw, rows=np.arange(5, 15)).reveal(to="alice")
    return out


def dealer_party(session: Session) -> dict[str, np.ndarray | None]:
    with MPC(session, DealerProvider(session)) as mpc:
        return _body(mpc)


def he_party(session: Session) -> dict[str, np.ndarray | None]:
    from sharedml.mpc.he import HEProvider

    with MPC(session, HEProvider(session, key_bits=1024)) as mpc:
        return _body(mpc)


def _check(out: dict[str, np.ndarray | None]) -> None:
    x, y, w = _data()
    ulp = FP.ulp
    assert np.all(np.abs(out["mul"] - x * y) <= (np.abs(x) + np.abs(y) + 2) * ulp)
    assert np.allclose(out["matmul"], x @ w, atol=20 * ulp)
    if "lt" in out:
        assert np.array_equal(out["lt"], (x < y).astype(float))
        assert np.allclose(out["sigmoid"], 0.5 * (1 + np.tanh(x / 2)), atol=5e-4)
        assert np.allclose(out["fixed"], x[5:15] @ w, atol=20 * ulp)


@pytest.mark.slow
def test_dealer_over_grpc_processes() -> None:
    results = run_in_processes(
        {"alice": dealer_party, "bob": dealer_party, "dealer": serve_dealer},
        ["alice", "bob", "dealer"],
        timeout=60,
        dealer="dealer",
    )
    _check(results["alice"])
    assert all(v is None for v in results["bob"].values())


@pytest.mark.slow
def test_he_provider_over_grpc_processes() -> None:
    results = run_in_processes(he_party, ["alice", "bob"], timeout=60)
    _check(results["alice"])
