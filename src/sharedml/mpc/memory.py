"""Keep freed memory for reuse: a party process allocates and frees the same
large arrays (shares, masked values, openings) on every operation.

glibc serves arrays above its mmap threshold with fresh ``mmap`` pages and
gives freed heap tops back to the OS above its trim threshold, so every
1M-element product page-faults (and the kernel zeroes) tens of megabytes
anew. :func:`keep_freed_memory` raises both thresholds for this process:
arrays up to 32 MB come from the heap and freed ones are reused. Cost: the
process keeps its peak heap (it is not returned to the OS until exit).

Measured (``bench/mpc.py``'s 1M-element product, three processes over gRPC
with mTLS): a tenth to a fifth less wall time and party CPU.

Where it is applied: every party process of
``sharedml.standalone.run_in_processes`` (so ``sharedml run``'s parties and dealer) and a node agent's own process
(``sharedml.node.agent.serve`` on its main thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
#: glibc's largest accepted mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
_applied = False  # process-wide, as the malloc setting it mirrors


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring).

    Returns whether it took effect (False off glibc, e.g. macOS or musl).
    Calling it again is harmless (the same values are set again).
    """
    global _applied
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the mmap threshold first: setting either fixes both (no dynamic threshold)
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    _applied = _applied or ok
    return ok


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has taken effect in this process."""
    return _applied
