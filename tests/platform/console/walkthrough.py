"""The README's walk-through blocks, parsed from README.md so the test and the README
cannot drift: ``<!-- walkthrough:NAME ... -->`` followed by a fenced bash block."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- walkthrough:(\w+)[^>]*-->\s*```bash\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer((ROOT / "README.md").read_text())}


def environment(tmp: Path) -> dict[str, str]:
    """The venv's ``sharedml`` first on PATH; the CLI's login file inside ``tmp``."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SHAREDML_CONFIG"] = str(tmp / "config.json")
    env.pop("SHAREDML_URL", None)
    env.pop("SHAREDML_TOKEN", None)
    return env


def workdir(tmp: Path) -> Path:
    """A copy of what the walk-through reads from the repository root (examples/)."""
    shutil.copytree(ROOT / "examples", tmp / "examples",
                    ignore=shutil.ignore_patterns("data", "out"))
    return tmp


def start_up(up_block: str, cwd: Path, env: dict[str, str], log: Path,
             within: float = 180.0) -> subprocess.Popen[bytes]:
    """Run the ``up`` block: every line but the last to completion, the last (the
    long-running ``sharedml up``) in the background until it prints the console URL."""
    lines = [ln for ln in up_block.strip().splitlines() if ln.strip()]
    if lines[:-1]:
        subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines[:-1])], cwd=cwd,
                       env=env, check=True, timeout=300)
    out = log.open("wb")
    proc = subprocess.Popen(["bash", "-c", f"exec {lines[-1]}"], cwd=cwd, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + within
    while b"console:" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"sharedml up did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the ``up`` we started (it stops its children), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
