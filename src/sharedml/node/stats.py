"""The node agent's own process figures, sent with each heartbeat (``control.NodeStats``):
its version, CPU use since the previous sample, resident memory and the host's load.

Standard library only (``os.times``, ``/proc/self/statm`` where it exists, else the
peak from ``resource``). No data value is involved: these describe the process.
"""

from __future__ import annotations

import os
import time

from sharedml.control import NodeStats


def _rss_mb() -> float:
    """Resident memory now (Linux), else the process's peak (other Unixes)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class ProcessStats:
    """CPU percent over the interval between two :meth:`sample` calls."""

    def __init__(self) -> None:
        self._cpu, self._wall = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return t.user + t.system, time.monotonic()

    def sample(self) -> NodeStats:
        from sharedml import __version__

        cpu, wall = self._now()
        spent, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        percent = 100.0 * spent / elapsed if elapsed > 0 else 0.0
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return NodeStats(version=__version__, cpu_percent=round(max(percent, 0.0), 1),
                         rss_mb=round(_rss_mb(), 1), load1=round(load1, 2))
