"""What the scheduler knows, and how it reads and writes it.

Job and task state live in the store only (a platform restart loses
nothing); :class:`JobBook` is the scheduler's one way to them: one serialised
transaction at a time, whose audit entries commit with it; each job's
:class:`~sharedml.platform.job_plan.StepPlan` list (derived from the stored
spec, cached); each step's tasks of its latest attempt; and the heartbeat
times held in memory, which are newer than the stored ones (nodes beating
often must not keep the database busy). Rules about what a job does next are
not here but in :mod:`sharedml.platform.job_lifecycle`.

Under load (issue 14 item 3) two rules keep transactions short: a job's plan
is made *outside* any transaction (:meth:`JobBook.plan_ahead`; decomposing a
large spec checks every step's parameters), and a heartbeat is remembered
(:meth:`JobBook.beat`) before the write lock is asked for, so a node whose
beat waits for a busy store is still seen alive.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.components import jobspec
from sharedml.errors import SharedMLError
from sharedml.platform.clock import Clock
from sharedml.platform.errors import NotFound
from sharedml.platform.job_plan import StepPlan, decompose
from sharedml.platform.store import Store
from sharedml.platform.store.fair_lock import FairRLock
from sharedml.platform.store.models import Job, Task

#: Appends one entry to the audit log inside the given transaction:
#: (session, actor, action, target, detail).
AuditFn = Callable[[Session, str, str, str, dict[str, Any]], None]


@dataclass
class SchedulerConfig:
    #: A running task whose node sends nothing for this long fails (a job may override).
    task_timeout_s: float = 30.0
    #: Attempts per step (a job may override); a failed step is retried on all parties.
    max_attempts: int = 3
    #: What :meth:`Scheduler.recover` does with jobs that were running.
    on_restart: Literal["resume", "fail"] = "resume"
    #: A node silent this long is offline, and its running tasks fail (a job's
    #: ``timeout_s`` overrides it for its tasks); the platform sets it from the
    #: ``heartbeat_timeout_s`` runtime setting. ``None``: ``task_timeout_s``.
    heartbeat_timeout_s: float | None = None

    @property
    def silence_s(self) -> float:
        """How long a node may stay silent before it counts as gone."""
        return self.heartbeat_timeout_s or self.task_timeout_s
    #: Seconds a party waits for a peer's message inside a step.
    channel_timeout_s: float = 120.0
    #: Seconds a whole step may take at a node before its task fails naming the step.
    step_timeout_s: float | None = 24 * 3600.0
    #: The dealer node (certificate subject) given the dealer tasks of secret-shared jobs.
    dealer: str = "dealer"


def task_key(node_id: str, task_id: str) -> str:
    """The heartbeat key of a task as beaten by a node (a node keeps only its own tasks alive)."""
    return f"{node_id}/{task_id}"


class JobBook:
    """The store as the scheduler sees it; safe to share between threads."""

    def __init__(
        self, store: Store, config: SchedulerConfig, clock: Clock, audit: AuditFn | None
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._audit_fn = audit
        self._lock = FairRLock()  # FIFO: the tick's many short transactions do not starve nodes
        self._plans: dict[str, list[StepPlan]] = {}
        self._events: list[tuple[str, str, str, dict[str, Any]]] = []
        #: Nodes get a full timeout to reconnect after this scheduler starts.
        self.since = clock.now()
        #: Last heartbeat of each node and task id, newer than the stored one.
        self._seen: dict[str, dt.datetime] = {}
        #: The task ids each node's last heartbeat listed.
        self._listed: dict[str, tuple[str, ...]] = {}
        self._depth = 0

    @property
    def in_tx(self) -> bool:
        """Whether the calling thread is inside :meth:`tx`."""
        return self._lock.owned() and self._depth > 0

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One serialised transaction; its audit entries commit with it."""
        with self._lock:
            self._depth += 1
            try:
                with self.store.session() as s:
                    yield s
                    if self._audit_fn is not None:
                        for event in self._events:
                            self._audit_fn(s, *event)
            finally:
                self._depth -= 1
                self._events.clear()

    def audit(
        self, action: str, target: str, detail: dict[str, Any], actor: str = "scheduler"
    ) -> None:
        """Queue an audit entry; :meth:`tx` writes it in the same transaction."""
        self._events.append((actor, action, target, detail))

    # -- plans ---------------------------------------------------------------------
    def remember(self, job_id: str, plans: list[StepPlan]) -> None:
        """Cache a just-submitted job's plans."""
        self._plans[job_id] = plans

    def plan(self, job: Job) -> list[StepPlan]:
        """The job's steps, decomposed from its stored spec on first use."""
        if job.id not in self._plans:
            self._plans[job.id] = self._decompose(job.spec)
        return self._plans[job.id]

    def plan_ahead(self) -> None:
        """Decompose every live job not planned yet, outside any transaction (a
        restarted platform plans them all at once; a bad spec is left for
        :meth:`plan` to report inside the job's own transaction)."""
        with self.store.reading() as s:
            live = s.execute(
                select(Job.id, Job.spec).where(Job.state.in_(("pending", "running")))
            ).all()
        for job_id, spec in live:
            if job_id in self._plans:
                continue
            try:
                self._plans[job_id] = self._decompose(spec)
            except SharedMLError:
                continue

    def forget(self, job_id: str) -> None:
        """Drop a finished job's plan."""
        self._plans.pop(job_id, None)

    def _decompose(self, spec: str) -> list[StepPlan]:
        return decompose(jobspec.load(json.loads(spec)), self.config.dealer)

    # -- rows ----------------------------------------------------------------------
    def job(self, s: Session, job_id: str) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", remedy="list jobs with GET /api/v1/jobs")
        return job

    def current(self, s: Session, job_id: str) -> dict[str, list[Task]]:
        """Each step's tasks of its latest attempt."""
        latest: dict[str, list[Task]] = {}
        rows = s.scalars(select(Task).where(Task.job_id == job_id).order_by(Task.attempt))
        for t in rows:
            group = latest.setdefault(t.step_id, [])
            if group and group[0].attempt < t.attempt:
                group.clear()
            group.append(t)
        return latest

    def open_tasks(self, s: Session, job_id: str) -> list[Task]:
        rows = s.scalars(
            select(Task).where(Task.job_id == job_id, Task.state.in_(("pending", "running")))
        )
        return list(rows)

    def new_tasks(
        self, s: Session, job_id: str, plan: StepPlan, attempt: int, now: dt.datetime
    ) -> None:
        """One pending task per peer of ``plan`` (its dealer included), for ``attempt``."""
        for party in plan.peers:
            s.add(
                Task(
                    job_id=job_id,
                    party=party,
                    step_id=plan.id,
                    component=plan.component,
                    attempt=attempt,
                    created_at=now,
                )
            )
        s.flush()

    # -- heartbeats ----------------------------------------------------------------
    def saw(self, key: str, now: dt.datetime) -> None:
        """A node (or one of its tasks) was heard from at ``now``."""
        self._seen[key] = now

    def beat(self, node_id: str, task_ids: Iterable[str], now: dt.datetime) -> None:
        """Remember a node's heartbeat and the tasks it lists — no lock, no store."""
        self._listed[node_id] = listed = tuple(task_ids)
        self.heard(node_id, now, listed)

    def ordered(self, node_id: str, task_ids: Iterable[str], now: dt.datetime) -> None:
        """Tasks just ordered to a node count as listed by it: it starts them now, and may
        spend its next rounds delivering reports before it beats again."""
        ids = tuple(task_ids)
        self._listed[node_id] = self._listed.get(node_id, ()) + ids
        self.heard(node_id, now, ids)

    def heard(self, node_id: str, now: dt.datetime, task_ids: Iterable[str] | None = None) -> None:
        """Any call from a node (a report too) shows it and the tasks its last heartbeat
        listed alive: a node delivering many reports before its next beat is not silent
        (bench/load.py: 156 of 200 jobs failed "no heartbeat" behind a node's reports)."""
        self._seen[node_id] = now
        for task_id in self._listed.get(node_id, ()) if task_ids is None else task_ids:
            self._seen[task_key(node_id, task_id)] = now

    def last_of_task(self, node_id: str, task_id: str,
                     stored: dt.datetime | None) -> dt.datetime | None:
        """When a node last showed ``task_id`` alive: by listing it (or being ordered it),
        or — while the task waits for the node's next beat to be delivered, because the
        node is busy delivering reports — by any call of the node's."""
        last = self.last(task_key(node_id, task_id), stored)
        if task_id in self._listed.get(node_id, ()):
            return last
        return self.last(node_id, last)

    def last(self, key: str, stored: dt.datetime | None) -> dt.datetime | None:
        """When ``key`` was last heard from: the newer of memory and the store."""
        seen = self._seen.get(key)
        return max(seen, stored) if seen and stored else seen or stored
