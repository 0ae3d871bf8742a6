"""Scale-out inside one party on its own Ray cluster (standard 8.5-2).

A node whose config has ``compute: {ray: {...}}`` (:mod:`sharedml.scale.config`)
hands its heavy work to a Ray cluster of its own; the protocol between the
parties is unchanged and every result is the single-process one:

* :mod:`~sharedml.scale.psi` — bucketed KKRT PSI on the party's *lanes*
  (:mod:`~sharedml.scale.lane`), each talking to the peer's lane over the
  party-to-party mTLS transport;
* :mod:`~sharedml.scale.data` — partitioned Parquet/CSV read shard by shard,
  fill/scale/one-hot fitted from per-shard statistics
  (:mod:`~sharedml.scale.moments`), rows kept in their shards;
* :mod:`~sharedml.scale.histograms` — ring histograms per row shard, summed
  exactly; :mod:`~sharedml.scale.encrypt` — Paillier randomiser pools as actors;
* :mod:`~sharedml.scale.runtime` — :class:`RayCompute`: connection, per-worker
  CPU and memory, back-pressure, progress per shard, Ray's errors translated.

Runs in: one data party's node process and its own Ray workers; may see that
party's rows, digests and private key (its lanes act under its certificate),
and of the peer only what the protocols send. The core package never imports
``ray``: only :mod:`~sharedml.scale.runtime` does, when a node is configured
for it (``pip install 'sharedml[ray]'``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sharedml.scale.config import ComputeConfig, RayConfig

#: Imported on first use: the config pulls pydantic, which a Ray worker running a lane
#: or a randomiser pool never needs.
_LAZY = {"ComputeConfig": "sharedml.scale.config", "RayConfig": "sharedml.scale.config"}

__all__ = ["ComputeConfig", "RayConfig"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
