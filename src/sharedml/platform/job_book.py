"""What the scheduler knows, and how it reads and writes it.

Job and task state live in the store only (a platform restart loses
nothing); :class:`JobBook` is the scheduler's one way to them: one serialised
transaction at a time, whose audit entries commit with it; each job's
:class:`~sharedml.platform.job_plan.StepPlan` list (derived from the stored
spec, cached); each step's tasks of its latest attempt; and the heartbeat
times held in memory, which are newer than the stored ones (nodes beating
often must not keep the database busy). Rules about what a job does next are
not here but in :mod:`sharedml.platform.job_lifecycle`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.components import jobspec
from sharedml.platform.clock import Clock
from sharedml.platform.errors import NotFound
from sharedml.platform.job_plan import StepPlan, decompose
from sharedml.platform.store import Store
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
    #: Seconds a party waits for a peer's message inside a step.
    channel_timeout_s: float = 120.0
    #: Seconds a whole step may take at a node before its task fails naming the step.
    step_timeout_s: float | None = 24 * 3600.0
    #: The dealer node (certificate subject) given the dealer tasks of secret-shared jobs.
    dealer: str = "dealer"


class JobBook:
    """The store as the scheduler sees it; safe to share between threads."""

    def __init__(
        self, store: Store, config: SchedulerConfig, clock: Clock, audit: AuditFn | None
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._audit_fn = audit
        self._lock = threading.RLock()
        self._plans: dict[str, list[StepPlan]] = {}
        self._events: list[tuple[str, str, str, dict[str, Any]]] = []
        #: Nodes get a full timeout to reconnect after this scheduler starts.
        self.since = clock.now()
        #: Last heartbeat of each node and task id, newer than the stored one.
        self._seen: dict[str, dt.datetime] = {}

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One serialised transaction; its audit entries commit with it."""
        with self._lock:
            try:
                with self.store.session() as s:
                    yield s
                    if self._audit_fn is not None:
                        for event in self._events:
                            self._audit_fn(s, *event)
            finally:
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
            self._plans[job.id] = decompose(jobspec.load(json.loads(job.spec)), self.config.dealer)
        return self._plans[job.id]

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

    def last(self, key: str, stored: dt.datetime | None) -> dt.datetime | None:
        """When ``key`` was last heard from: the newer of memory and the store."""
        seen = self._seen.get(key)
        return max(seen, stored) if seen and stored else seen or stored
