"""Running a job's parties on this machine without a platform.

Which to use when:

* :func:`run_in_threads` — party functions as threads over in-memory
  channels: unit tests, notebooks, ``sharedml demo --embedded``. Fastest; no
  TLS, no processes.
* :func:`run_in_processes` — the same functions, each party its own process,
  talking gRPC over mutual TLS on loopback: integration tests, benchmarks,
  wire audits.
* :func:`run_job` (``sharedml run JOB.yaml``) — a whole job spec, every party
  (and the dealer a secret-shared step needs) a local process, or threads
  with ``--embedded``.

With a platform instead: ``sharedml up`` starts the platform and a node per
party as processes on this machine (:mod:`sharedml.platform.local_deployment`);
a deployment runs ``sharedml platform serve`` and ``sharedml node`` on each
organisation's hosts. Both run steps through the same
:func:`sharedml.components.execute` as these.

Both party-function runners take one :class:`RunOptions` and raise
:class:`PartyFailed`. Only :func:`run_in_threads` is imported with the
package; the others on first use (``sharedml --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sharedml.standalone.options import PartyFailed, RunOptions
from sharedml.standalone.threads import run_in_threads

if TYPE_CHECKING:
    from sharedml.standalone.job import run_job
    from sharedml.standalone.processes import PartyCrashed, run_in_processes

_LAZY = {
    "run_in_processes": "sharedml.standalone.processes",
    "PartyCrashed": "sharedml.standalone.processes",
    "run_job": "sharedml.standalone.job",
}

__all__ = [
    "PartyCrashed", "PartyFailed", "RunOptions", "run_in_processes", "run_in_threads", "run_job",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
