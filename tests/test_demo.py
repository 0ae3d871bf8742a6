"""``sharedml demo``: two processes exchange and check a large array over mutual TLS."""

from __future__ import annotations

import subprocess
import sys

from sharedml.demo import exchange
from sharedml.simulation import run_parties


def test_demo_command_runs_and_reports() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from sharedml.cli import main; main()", "demo", "-m", "16"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "mutual TLS" in out and "bank" in out and "shop" in out
    assert "both arrays arrived intact" in out
    assert "16 MiB" in out


def test_exchange_is_reusable_in_process() -> None:
    out = run_parties(exchange, ["p", "q", "r"], extras={p: {"nbytes": 1 << 16} for p in "pqr"})
    for party, res in out.items():
        assert res["sent_bytes"] == 2 * (1 << 16)
        assert set(res["received"]) == {"p", "q", "r"} - {party}
        assert all(r["intact"] for r in res["received"].values())
        assert all(res["confirmed_by_peers"].values())
    # what p received from q is what q sent
    assert out["p"]["received"]["q"]["sha256"] == out["q"]["sha256"]
