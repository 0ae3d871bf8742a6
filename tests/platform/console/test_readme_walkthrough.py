"""The README's A.1 walk-through on a ``sharedml up`` cluster, run verbatim: the
commands are parsed from README.md, run in a fresh folder, and must end with the
job's metrics (issue 15, item 4)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from walkthrough import blocks, environment, start_up, stop, workdir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # processes; slower under load


def test_the_readme_walkthrough_ends_with_the_jobs_metrics(tmp_path: Path) -> None:
    found = blocks()
    assert set(found) == {"up", "steps"}, f"README walk-through blocks: {sorted(found)}"
    cwd, env = workdir(tmp_path), environment(tmp_path)
    up = start_up(found["up"], cwd, env, tmp_path / "up.log")
    try:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", found["steps"]], cwd=cwd,
                             env=env, capture_output=True, text=True, timeout=1200)
    finally:
        stop(up)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert any(ln.startswith("approved: job ") and "bank/credit_bank" in ln for ln in lines)
    assert any(ln.startswith("approved: job ") and "partner/credit_partner" in ln for ln in lines)
    done = next(i for i, ln in enumerate(lines) if ": succeeded" in ln)
    assert re.match(r"job [0-9a-f]+: succeeded$", lines[done])
    # it ends with the metrics: every line after the job's state is "step  party  k=v ..."
    tail = lines[done + 1:]
    assert tail and all(re.match(r"\S+  \S+  (\S+=\S+\s*)+$", ln) for ln in tail), tail
    (evaluate,) = [ln for ln in tail if ln.startswith("evaluate  bank  ")]
    figures = dict(kv.split("=") for kv in evaluate.split()[2:])
    assert set(figures) == {"auc", "ks", "lift", "accuracy"}
    assert 0.5 < float(figures["auc"]) <= 1.0
    # up stored the admin's login, mode 0600; login stored each account's beside it
    config = tmp_path / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "console: https://127.0.0.1:" in (tmp_path / "up.log").read_text()
