"""What a Ray worker process has used so far (for benchmarks and a step's metrics).

Its own module, importing nothing of sharedml: a randomiser pool or a task
should not import the PSI lane's gRPC and KKRT to report its CPU (a worker's
imports are start-up CPU its party pays, ``bench/scale.py``).

Runs in: a party's Ray worker processes; reads this process's own counters only.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any


def usage() -> dict[str, float]:
    """This process's CPU-seconds and peak RSS (MB) so far, and its pid (a warm
    actor reports again: benchmarks count the difference)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024.0,
            "pid": float(os.getpid())}


def measured(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """A Ray task: ``fn(*args)``, its CPU-seconds and this worker's peak RSS (MB)."""
    start = time.process_time()
    out = fn(*args)
    return out, time.process_time() - start, usage()["peak_rss_mb"]
