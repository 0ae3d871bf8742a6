"""Warm PSI lanes: a node process keeps its lanes between PSI runs (8.5-2).

A lane (:class:`~sharedml.scale.lane.PsiLane`) is a Ray actor, so a fresh
one is a fresh Python process: 1.5–2 CPU-seconds of imports and a gRPC
server before its first bucket. Lanes hold no state of a run once it ends
(each bucket's channel is closed when its KKRT returns; what a lane
recorded for a wire audit is handed over and cleared), so the node keeps
them idle here and the next PSI run of the same party takes them again:
the start-up is paid once per node process, not once per job.

A lane is kept only under the exact identity it serves with (certificate
and key), address, resources, class and Ray connection: a rotated
certificate, a changed ``compute:`` section or a new ``ray.init`` gets new
lanes, and the old ones idle until the node stops (they die with it: Ray
stops a driver's actors when it exits). A run
that fails stops its lanes instead of returning them (:func:`discard`), so
a lane in an unknown state is never reused. Two runs at once each take
their own lanes; the pool only ever holds idle ones.

An idle lane keeps its Ray CPU and memory reservation, so it must never
stand in the way of other work: before this process starts any other Ray
actor or task (:meth:`RayCompute.actors`, :meth:`RayCompute.map`), every
idle lane is stopped (:func:`stop_idle`). Lanes are thus warm across
consecutive PSI runs (a node that aligns job after job, or retries), and a
step that needs the cluster for other work gets all of it.

Runs in: the node process (the lanes themselves run on the party's Ray
cluster); holds handles only, never data.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from sharedml.crypto.pki import Identity

if TYPE_CHECKING:
    from sharedml.scale.runtime import RayCompute

Key = tuple[Any, ...]

_idle: dict[Key, list[Any]] = {}
_lock = threading.Lock()


def _key(compute: RayCompute, cls: type, identity: Identity, record: bool) -> Key:
    cfg = compute.config
    secret = hashlib.sha256(identity.cert_pem + identity.key_pem + identity.ca_pem).hexdigest()
    driver = compute.ray.get_runtime_context().get_job_id()  # a new ray.init: new lanes
    return (cls, identity.party, secret, cfg.listen_host, cfg.cpus_per_worker,
            cfg.memory_per_worker_mb, cfg.address, cfg.namespace, driver, record)


def take(compute: RayCompute, cls: type, identity: Identity, count: int,
         record: bool) -> tuple[Key, list[Any]]:
    """``count`` lanes for a run: idle ones first, the rest started now (which stops
    the other idle lanes, :meth:`RayCompute.actors`)."""
    key = _key(compute, cls, identity, record)
    with _lock:
        idle = _idle.get(key, [])
        warm, _idle[key] = idle[:count], idle[count:]
    fresh = compute.actors(cls, count - len(warm), identity, compute.config.listen_host, record)
    return key, warm + fresh


def give_back(key: Key, lanes: list[Any]) -> None:
    """Lanes whose run ended well: idle until the next run takes them."""
    with _lock:
        _idle.setdefault(key, []).extend(lanes)


def stop_idle(compute: RayCompute) -> None:
    """Stop every idle lane of this process (other work needs their reservations)."""
    with _lock:
        idle = [lane for group in _idle.values() for lane in group]
        _idle.clear()
    for lane in idle:
        compute.ray.kill(lane)


def discard(compute: RayCompute, lanes: list[Any], step: str) -> None:
    """Lanes of a failed run: record their usage and stop them (never reused)."""
    compute.stop(lanes, step=step)

