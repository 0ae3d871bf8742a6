"""One party's handle on its own Ray cluster: tasks with back-pressure, actors, errors.

:class:`RayCompute` connects to the cluster the node's ``compute: {ray:}``
names (:mod:`sharedml.scale.config`) and runs this party's work there:

* :meth:`RayCompute.map` runs a function over shards as Ray tasks with at
  most ``workers`` in flight, so at most that many shards' inputs sit in
  the object store at once (back-pressure: a party's peak memory is
  ``workers`` × one shard, the budget the operator sets with
  ``bucket_rows`` / shard sizes and ``memory_per_worker_mb``); results come
  back in shard order and progress is reported per shard;
* :meth:`RayCompute.actors` starts long-lived workers (PSI lanes, Paillier
  randomiser pools) with the same per-worker CPU and memory;
* :meth:`RayCompute.get` waits for results and translates Ray's errors into
  sharedml's tree: a lost worker, after Ray's own retries
  (``max_retries``), is one :class:`~sharedml.errors.ComputeError` naming
  the party, the step and the shard; a sharedml error raised on a worker is
  raised again as itself.

Never a home-made scheduler: placement, retries and memory limits are
Ray's. ``ray`` is imported here only, when a node is configured for it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.crypto.pki import Identity
from sharedml.errors import ComputeError, ConfigError, SharedMLError
from sharedml.scale.config import RayConfig
from sharedml.scale.meter import measured
from sharedml.transport.recording import WireRecord

if TYPE_CHECKING:
    from sharedml.crypto.paillier import PaillierPublicKey
    from sharedml.scale.encrypt import RayEncryptor
    from sharedml.scale.histograms import ShardedProducts
    from sharedml.session import Session

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    return None


def import_ray(party: str | None = None) -> Any:
    """The ``ray`` module, or a :class:`ComputeError` saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ComputeError(
            "this node's compute: section names a Ray cluster but ray is not installed",
            party=party,
            remedy="pip install 'sharedml[ray]', or remove 'compute: ray:' from the node config",
        ) from None


def keep_token_auth() -> None:
    """Before ``import ray`` in a process that starts a local cluster: Ray's token
    authentication, chosen explicitly.

    Ray (2.59 and later) turns token auth on for a new local cluster when
    ``RAY_AUTH_MODE`` is unset and warns at every start that it did. We keep it — a
    party's cluster runs code as the party, holds its rows and its certificate's key,
    so nobody without the token (``~/.ray/auth_token``, made at the first start) may
    submit work to it — and say so, which is what silences the warning. Ray reads the
    mode when it is imported, so once ``ray`` is imported this changes nothing (a
    mode set later would differ between the driver and the cluster it starts; Ray
    then still turns token auth on, with its warning). An operator's own
    ``RAY_AUTH_MODE`` wins. A cluster the node joins (``address: auto`` or
    ``ray://``) is the operator's: its mode is theirs (README, "Scale-out").
    """
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


class RayCompute:
    """This party's work on its Ray cluster (see the module docstring)."""

    def __init__(
        self, config: RayConfig, *, party: str, identity: Identity | None = None,
        record: list[WireRecord] | None = None,
    ) -> None:
        self.config = config
        self.party = party
        #: The party's certificate and key, for its PSI lanes (None: no bucketed PSI).
        self.identity = identity
        #: When a list: what the lanes sent is appended to it (wire audits in tests).
        self.record = record
        #: CPU-seconds and peak RSS of each actor this party stopped (lanes, randomiser
        #: pools), read just before it stopped (for benchmarks).
        self.usage: list[dict[str, float]] = []
        #: CPU-seconds of the tasks :meth:`map` ran, and the largest worker's peak RSS (MB).
        self.task_cpu_s = 0.0
        self.task_rss_mb = 0.0
        #: Ray tasks and actors this handle started (a step reports them as public metrics).
        self.tasks_run = 0
        self.actors_started = 0
        if config.address == "local":
            keep_token_auth()
        self.ray = import_ray(party)
        self._connect()

    @property
    def workers(self) -> int:
        return self.config.workers

    def counts(self) -> dict[str, int]:
        """Public figures of a step's use of the cluster: Ray tasks run, actors started."""
        return {"ray_tasks": self.tasks_run, "ray_actors": self.actors_started}

    def _connect(self) -> None:
        ray, cfg = self.ray, self.config
        if ray.is_initialized():
            return
        try:
            if cfg.address == "local":
                ray.init(
                    num_cpus=max(1, round(cfg.workers * cfg.cpus_per_worker)),
                    namespace=cfg.namespace,
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=cfg.address, namespace=cfg.namespace, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ComputeError(
                f"cannot reach the Ray cluster at {cfg.address!r}: {exc}",
                party=self.party,
                remedy="start it ('ray start --head') or fix compute.ray.address",
            ) from None

    def _resources(self) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {"num_cpus": cfg.cpus_per_worker}
        if cfg.memory_per_worker_mb is not None:
            out["memory"] = cfg.memory_per_worker_mb * (1 << 20)
        return out

    def task_options(self) -> dict[str, Any]:
        """Per-task resources and retries from the node config."""
        return {**self._resources(), "max_retries": self.config.max_retries}

    def actors(self, cls: type, count: int, *args: Any) -> list[Any]:
        """``count`` actors of ``cls`` built with ``args``. An actor is not restarted:
        its state (a stream to a peer, a stock of randomisers) cannot be resumed."""
        if count < 1:
            return []
        self._free_idle_lanes()
        remote = self.ray.remote(cls).options(**self._resources(), max_restarts=0)
        self.actors_started += count
        return [remote.remote(*args) for _ in range(count)]

    def _free_idle_lanes(self) -> None:
        """Idle PSI lanes kept warm by this process give their reservations back first
        (:mod:`sharedml.scale.lanes`)."""
        from sharedml.scale import lanes

        lanes.stop_idle(self)

    def record_usage(self, actors: list[Any], *, step: str) -> None:
        """Append each actor's :func:`~sharedml.scale.meter.usage` to :attr:`usage`."""
        # a lost actor has nothing to report; the step's own error is the one raised
        with contextlib.suppress(SharedMLError):
            self.usage.extend(self.get([a.usage.remote() for a in actors], step=step, what="usage"))

    def stop(self, actors: list[Any], *, step: str) -> None:
        """Record each actor's usage, then stop it."""
        try:
            self.record_usage(actors, step=step)
        finally:
            for actor in actors:
                self.ray.kill(actor)

    def get(self, refs: Any, *, step: str, what: str) -> Any:
        """``ray.get`` with Ray's failures translated (see the module docstring)."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(refs)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SharedMLError):
                raise cause from None
            raise ComputeError(
                f"{what} failed on a Ray worker: {cause!r}", party=self.party, step=step,
                remedy="see the worker's log in the Ray dashboard or 'ray logs'",
            ) from None
        except (exceptions.RayActorError, exceptions.WorkerCrashedError,
                exceptions.ObjectLostError, exceptions.NodeDiedError) as exc:
            raise ComputeError(
                f"{what}: the Ray worker running it was lost "
                f"(after {self.config.max_retries} retries for tasks, none for actors): "
                f"{type(exc).__name__}",
                party=self.party, step=step,
                remedy="check the cluster's nodes and memory (compute.ray.memory_per_worker_mb), "
                "then retry the step",
            ) from None

    def map(
        self,
        fn: Callable[..., Any],
        shards: Iterable[Any],
        *,
        args: Sequence[Any] = (),
        step: str,
        total: int | None = None,
        progress: Progress = _no_progress,
        spread: bool = False,
    ) -> list[Any]:
        """``[fn(shard, *args) for shard in shards]`` on Ray tasks, in order,
        at most :attr:`workers` in flight. With ``spread``, each shard is a tuple of
        the task's leading arguments, ``fn(*shard, *args)`` (Ray resolves the object
        references among them, :meth:`put`)."""
        ray = self.ray
        self._free_idle_lanes()
        remote = ray.remote(measured).options(**self.task_options())
        shared = [ray.put(a) for a in args]
        results: dict[int, Any] = {}
        flying: dict[Any, int] = {}
        done = 0

        def land(ready: list[Any]) -> None:
            nonlocal done
            for ref in ready:
                i = flying.pop(ref)
                results[i], cpu_s, rss_mb = self.get(ref, step=step, what=f"shard {i}")
                self.task_cpu_s += cpu_s
                self.task_rss_mb = max(self.task_rss_mb, rss_mb)
                done += 1
                progress(done / total if total else 0.0, f"shard {i} done ({done} so far)")

        for i, shard in enumerate(shards):
            if len(flying) >= self.workers:
                ready, _ = ray.wait(list(flying), num_returns=1)
                land(ready)
            lead = tuple(shard) if spread else (shard,)
            flying[remote.remote(fn, *lead, *shared)] = i
            self.tasks_run += 1
        while flying:
            ready, _ = ray.wait(list(flying), num_returns=1)
            land(ready)
        return [results[i] for i in range(len(results))]

    def put(self, value: Any) -> Any:
        """``value`` in the party's object store, for many tasks (:meth:`map`)."""
        return self.ray.put(value)

    # -- the operations a Session's protocols hand over (Session.compute) ------------
    def psi(
        self, session: Session, unique: np.ndarray, sizes: dict[str, int],
        receivers: Sequence[str], progress: Progress = _no_progress,
    ) -> np.ndarray | None:
        """Bucketed KKRT on this party's lanes (:mod:`sharedml.scale.psi`)."""
        from sharedml.scale.psi import bucketed_psi

        if self.identity is None:
            raise ConfigError(
                "bucketed PSI needs the party's certificate for its lanes",
                party=self.party, step="psi",
                remedy="build RayCompute with identity= (a node agent passes its own)",
            )
        return bucketed_psi(session, unique, sizes, receivers, self, self.identity, progress)

    def rows(self, fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, *,
             axis: int = 0) -> np.ndarray:
        """``fn(X)`` over row shards of ``X`` (:func:`sharedml.scale.scoring.score_rows`)."""
        from sharedml.scale.scoring import score_rows

        return score_rows(self, X, fn, axis=axis)

    def encryptor(self, pk: PaillierPublicKey) -> RayEncryptor:
        """Paillier encryption with randomisers made by Ray actors (:mod:`sharedml.scale.encrypt`)."""
        from sharedml.scale.encrypt import RayEncryptor

        return RayEncryptor(self, pk)

    def fixed_products(self, e: np.ndarray, share: np.ndarray) -> ShardedProducts:
        """A fixed operand's local products over ``shard_rows`` row shards
        (:class:`sharedml.scale.histograms.ShardedProducts`)."""
        from sharedml.scale.histograms import ShardedProducts

        return ShardedProducts(self, e, share, self.config.shard_rows)
