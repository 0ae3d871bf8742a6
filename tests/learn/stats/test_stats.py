"""Joint correlation and VIF under MPC equal the plaintext ones on the joined data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sharedml.learn.stats import describe, joint_correlation, vif
from sharedml.mpc import MPC, DealerProvider, serve_dealer
from sharedml.standalone import run_in_threads
from sharedml.transport.recording import RecordingChannel, WireRecord


def test_describe_local() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [1, 1, 1], "c": ["x", "y", "z"]})
    out = describe(frame)
    assert list(out.index) == ["a", "b"]
    assert out.loc["a", "missing"] == 1 and out.loc["a", "mean"] == 1.5


@pytest.mark.slow
def test_joint_correlation_and_vif_on_default_credit(shared_data: Path) -> None:
    guest = pd.read_csv(shared_data / "default_credit_hetero_guest.csv")
    host = pd.read_csv(shared_data / "default_credit_hetero_host.csv")
    joined = guest.merge(host, on="id", suffixes=("_g", "_h"))
    gcols = [f"x{i}" for i in range(13)]
    hcols = [f"x{i}" for i in range(10)]
    xs = {
        "guest": joined[[f"{c}_g" if c in hcols else c for c in gcols]].to_numpy(),
        "host": joined[[f"{c}_h" for c in hcols]].to_numpy(),
    }
    log: list[WireRecord] = []

    def provider(s):
        with MPC(s, DealerProvider(s, dealer="dealer")) as mpc:
            return joint_correlation(mpc, xs[s.party])

    out = run_in_threads(
        {"guest": provider, "host": provider, "dealer": serve_dealer},
        ["guest", "host", "dealer"],
        wrap=lambda c: RecordingChannel(c, log),
    )
    expected = np.corrcoef(np.hstack([xs["guest"], xs["host"]]), rowvar=False)
    for p in ("guest", "host"):
        assert np.abs(out[p] - expected).max() < 1e-3, np.abs(out[p] - expected).max()
    ref_vif = np.diag(np.linalg.inv(expected))
    assert np.allclose(vif(out["guest"]), ref_vif, rtol=1e-2)
    # No raw column of the host reaches the guest: every array it sent is ring shares.
    host_col = xs["host"][:, 0]
    for r in log:
        if r.frm == "host" and isinstance(r.value, np.ndarray) and r.value.size >= len(host_col):
            assert r.value.dtype == np.uint64
            flat = r.value.view(np.int64).astype(np.float64).ravel()[: len(host_col)]
            assert abs(np.corrcoef(flat, host_col)[0, 1]) < 0.05


def test_vif_is_infinite_for_collinear_and_constant_columns() -> None:
    from sharedml.learn.stats.correlation import standardise, vif

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 4))
    x = np.column_stack([x, x[:, 0] - 2 * x[:, 1], np.full(400, 0.1)])
    z = standardise(x)
    assert not z[:, 5].any()  # a constant 0.1 column is exactly zero, not rounding noise
    got = vif(z.T @ z)
    assert np.isinf(got[[0, 1, 4, 5]]).all()
    # the columns outside the linear relation keep their finite VIF
    ref = np.diag(np.linalg.inv(np.corrcoef(x[:, 2:4].T)))
    assert np.allclose(got[2:4], ref, rtol=1e-6)
    full = rng.normal(size=(400, 3))
    zf = standardise(full)
    assert np.allclose(vif(zf.T @ zf), np.diag(np.linalg.inv(np.corrcoef(full.T))))
