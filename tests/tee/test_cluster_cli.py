"""``sharedml tee cluster up`` as a running service, steered by ``status``, ``upgrade`` and ``down``."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.tee.test_cli import app
from typer.testing import CliRunner

from sharedml.errors import PolicyDenied


def sharedml(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sharedml.cli import main; main()", *args]


@pytest.mark.slow
def test_cluster_up_status_upgrade_down(tmp_path: Path) -> None:
    home = tmp_path / "tee"
    proc = subprocess.Popen(sharedml("tee", "cluster", "up", "--home", str(home), "--members", "2", "--svn", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline and not line.startswith("cluster up"):
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline() if proc.stdout else ""
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert line.startswith("cluster up: 2 members"), line
        runner = CliRunner()
        status = json.loads(runner.invoke(app(), ["tee", "cluster", "status", "--home", str(home)]).stdout)
        assert status["floor"] == 1 and len(status["members"]) == 2
        assert all(m["member"] and m["alive"] and m["svn"] == 1 for m in status["members"])

        out = runner.invoke(app(), ["tee", "upgrade", "--home", str(home), "--svn", "2"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["floor"] == 2
        status = json.loads(runner.invoke(app(), ["tee", "cluster", "status", "--home", str(home)]).stdout)
        assert {m["svn"] for m in status["members"]} == {2} and all(m["member"] for m in status["members"])

        refused = runner.invoke(app(), ["tee", "upgrade", "--home", str(home), "--svn", "1"])
        assert isinstance(refused.exception, PolicyDenied) and "floor" in str(refused.exception)
        refused = runner.invoke(app(), ["tee", "upgrade", "--home", str(home), "--svn", "3", "--debug"])
        assert isinstance(refused.exception, PolicyDenied)  # rolled back: the v2 members keep serving
        status = json.loads(runner.invoke(app(), ["tee", "cluster", "status", "--home", str(home)]).stdout)
        assert {m["svn"] for m in status["members"]} == {2} and status["floor"] == 2

        assert runner.invoke(app(), ["tee", "cluster", "down", "--home", str(home)]).exit_code == 0
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    audit = (home / "platform" / "audit.jsonl").read_text()
    assert audit.count('"enclave.upgrade"') == 2 and audit.count('"enclave.rollback"') == 1
