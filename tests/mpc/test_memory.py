"""keep_freed_memory: glibc accepts the thresholds, arrays still work after, and
run_in_processes's party processes apply it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from sharedml.session import Session
from sharedml.standalone import run_in_processes


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_accepted_in_a_fresh_process() -> None:
    # a subprocess: the setting is process-wide and must not leak into other tests
    code = (
        "import numpy as np\n"
        "from sharedml.mpc.memory import keep_freed_memory\n"
        "assert keep_freed_memory()\n"
        "for _ in range(3):\n"
        "    a = np.arange(2_000_000, dtype=np.uint64); b = a * a; assert int(b[3]) == 9\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _kept(session: Session) -> bool:
    from sharedml.mpc.memory import freed_memory_kept

    return freed_memory_kept()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_cluster_party_processes_keep_freed_memory() -> None:
    # spawned processes: each answers for itself, whatever this process did
    out = run_in_processes(_kept, ["alice", "bob"], timeout=60)
    assert out == {"alice": True, "bob": True}
