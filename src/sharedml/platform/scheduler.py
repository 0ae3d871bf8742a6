"""The scheduler: from submitted job specs to per-party tasks on node agents.

:class:`Scheduler` is the front door the REST API, the node service and the
platform's loop call; the work is done in four modules, each one concern:

* :mod:`~sharedml.platform.job_plan` — decomposition: a spec's steps as
  :class:`StepPlan`\\ s (parties, transitive needs, the dealer of a job with a
  secret-shared step);
* :mod:`~sharedml.platform.job_lifecycle` — the state machine: the legal
  moves of jobs and tasks (one :func:`move`), when a step starts, time-outs,
  retries as new attempts, failures with reasons naming party and step;
* :mod:`~sharedml.platform.node_dispatch` — what happens when a node agent
  says hello, beats (and is given task orders) or reports;
* :mod:`~sharedml.platform.job_book` — the store as the scheduler sees it:
  serialised transactions with their audit entries, plans, tasks by attempt,
  heartbeats in memory.

A platform restart loses nothing: job and task state live in the store only.
On start, :meth:`Scheduler.recover` either resumes running jobs (their running
tasks get a fresh heartbeat deadline; a node still running one keeps going, a
node that lost it gets it again) or marks them failed with a reason
(``on_restart="fail"``). Before a step touching a dataset is dispatched, the
approval gate checks that every dataset owner approved this use (8.3-1).

**The dealer.** A job with a secret-shared step gets one dealer task per
step the dealer takes part in (the step's roles name it: a dealt fit or
prediction, a horizontal step; not ``psi`` or ``split``), given to the
deployment's dealer node (:attr:`SchedulerConfig.dealer`,
a node agent started with ``role: dealer``, identity = its certificate's
subject). It holds no datasets and needs no dataset approval; it serves the
step's MPC runtimes and ends its task when the last data party's end-of-step
marker arrives. What it sees: the correlated randomness it made itself, and
the number and shapes of the requests — never a row, a label, a share of one,
or a model part; it reports public counts only (runtimes, requests). It must
not collude with a data party, so it is never one (see
:func:`~sharedml.platform.job_plan.decompose`). A dealer task lives like any
task: its failure or a missing heartbeat fails (and retries) the step, with a
reason naming the dealer and the step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.components import jobspec
from sharedml.errors import ConfigError, PolicyDenied, SharedMLError
from sharedml.platform.clock import Clock, SystemClock
from sharedml.platform.data import datasets_of_spec
from sharedml.platform.job_book import AuditFn, JobBook, SchedulerConfig
from sharedml.platform.job_lifecycle import (
    ApprovalGate,
    Lifecycle,
    SuccessHook,
    move,
    open_gate,
)
from sharedml.platform.job_plan import decompose
from sharedml.platform.node_dispatch import (
    DatasetRecords,
    NodeDispatch,
    SignedApprovals,
    ignore_records,
    no_signatures,
)
from sharedml.platform.signed_approvals import signed_approvals
from sharedml.platform.store import Store
from sharedml.platform.store.models import Job, Node

if TYPE_CHECKING:
    from sharedml.platform.service import Platform

__all__ = ["Scheduler", "SchedulerConfig"]

#: Called inside the transaction that stores a new job: (session, job, actor).
SubmitHook = Callable[[Session, Job, str], None]


class Scheduler:
    """Drives every job in the store; safe to call from API, gRPC and loop threads."""

    def __init__(
        self,
        store: Store,
        config: SchedulerConfig | None = None,
        *,
        clock: Clock | None = None,
        approvals: ApprovalGate | None = None,
        audit: AuditFn | None = None,
        on_success: SuccessHook | None = None,
        on_submit: SubmitHook | None = None,
        signed: SignedApprovals = no_signatures,
        records: DatasetRecords = ignore_records,
    ) -> None:
        self.store = store
        #: Runs inside a new job's transaction (the platform asks for its approvals
        #: there, so a job is never stored without them: issue 14 item 3).
        self.on_submit: SubmitHook = on_submit or (lambda s, job, actor: None)
        self.config = config or SchedulerConfig()
        self.clock = clock or SystemClock()
        self.book = JobBook(store, self.config, self.clock, audit)
        self.lifecycle = Lifecycle(self.book, approvals or open_gate, on_success)
        self.nodes = NodeDispatch(self.book, self.lifecycle, signed, records)
        #: ``scheme: tee`` jobs (:class:`~sharedml.platform.tee_jobs.TeeJobs`), if an enclave node is set up.
        self.tee: Any = None

    @classmethod
    def for_platform(cls, platform: Platform, config: SchedulerConfig | None = None) -> Scheduler:
        """A scheduler over a platform's store, clock, audit log and approvals."""

        def gate(session: Session, job: Job) -> str | None:
            gone = platform.approvals.missing(session, datasets_of_spec(job.spec))
            if gone:
                raise PolicyDenied(
                    f"the record of dataset {gone[0]} was deleted while the job waited",
                    remedy="its owner registers it again; then submit the job again",
                )
            status = platform.approvals.status(job.id, session)
            if status == "rejected":
                raise PolicyDenied("a dataset owner rejected this job's use of their data")
            if status != "approved":
                return "waiting for every dataset owner's approval (8.3-1)"
            return None

        def audit(s: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
            platform.audit.append_in(s, actor, action, target, detail=detail)

        def ask_owners(s: Session, job: Job, actor: str) -> None:
            platform.approvals.request_in(s, job, actor)

        return cls(platform.store, config, clock=platform.clock, approvals=gate, audit=audit,
                   on_success=platform.registry.record_job, on_submit=ask_owners,
                   signed=signed_approvals,
                   records=platform.datasets.from_node)

    # -- jobs ----------------------------------------------------------------------
    def submit(
        self,
        spec: dict[str, Any],
        *,
        created_by: int | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        project_id: int | None = None,
        actor: str = "scheduler",
    ) -> str:
        """Validate ``spec``, store the job and its first tasks; return the job id."""
        parsed = jobspec.load(spec)
        if not parsed.steps:
            raise ConfigError("invalid job spec field steps: a job needs at least one step")
        if parsed.scheme == "tee":
            if self.tee is None:
                raise ConfigError("this platform runs no scheme 'tee' jobs",
                                  remedy="give 'sharedml platform serve' a --config file with a 'tee:' "
                                  "section (platform/tee_config.py)")
            return str(self.tee.submit(spec, created_by=created_by, project_id=project_id, actor=actor,
                                       max_attempts=max_attempts or self.config.max_attempts))
        plans = decompose(parsed, self.config.dealer)
        attempts = self.config.max_attempts if max_attempts is None else max_attempts
        if attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        now = self.clock.now()
        with self.book.tx() as s:
            job = Job(
                name=parsed.name,
                spec=json.dumps(spec),
                scheme=parsed.scheme,
                created_by=created_by,
                project_id=project_id,
                created_at=now,
                updated_at=now,
                max_attempts=attempts,
                timeout_s=timeout_s,
                result={"steps": {}},
            )
            s.add(job)
            s.flush()
            for plan in plans:
                self.book.new_tasks(s, job.id, plan, 0, now)
            self.on_submit(s, job, actor)
            self.book.remember(job.id, plans)
            self.book.audit("job.submit", job.id, {"name": parsed.name}, actor)
            return job.id

    def cancel(self, job_id: str, by: str = "scheduler") -> None:
        """Cancel a pending or running job and every task of it not yet finished."""
        now = self.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            move(job, "canceled", now, f"canceled by {by}")
            for task in self.book.open_tasks(s, job_id):
                move(task, "canceled", now, f"job canceled by {by}")
            self.book.audit("job.cancel", job_id, {}, by)

    def tick(self) -> None:
        """Advance every unfinished job: dispatch ready steps, time out silent tasks.

        One short transaction per job (not one for all), after planning outside
        any transaction, so nodes' calls and API writes get the store between them.
        """
        now = self.clock.now()
        self.book.plan_ahead()
        with self.store.reading() as s:
            live = list(s.scalars(select(Job.id).where(Job.state.in_(("pending", "running")),
                                                       Job.scheme == "mpc")))
        for job_id in live:
            with self.book.tx() as s:
                job = s.get(Job, job_id)
                if job is not None and job.state in ("pending", "running"):
                    self.lifecycle.advance(s, job, now)
        with self.book.tx() as s:
            for node in s.scalars(select(Node).where(Node.status == "online")).all():
                last = self.book.last(node.id, node.last_heartbeat)
                if last is None or (now - last).total_seconds() > self.config.silence_s:
                    node.status = "offline"
        if self.tee is not None:
            self.tee.tick()

    def recover(self) -> list[str]:
        """On platform start: resume or fail every job that was running; return their ids."""
        now = self.clock.now()
        touched = []
        self.book.plan_ahead()
        with self.book.tx() as s:
            for job in s.scalars(select(Job).where(Job.state == "running", Job.scheme == "mpc")).all():
                touched.append(job.id)
                try:
                    self.book.plan(job)
                except SharedMLError as exc:
                    reason = f"cannot resume after a platform restart: {exc}"
                    self.lifecycle.fail_job(s, job, now, reason)
                    continue
                if self.config.on_restart == "fail":
                    reason = "the platform restarted while the job was running"
                    self.lifecycle.fail_job(s, job, now, reason)
                    continue
                for task in self.book.open_tasks(s, job.id):
                    if task.state == "running":
                        task.heartbeat_at = now
                job.reason = (
                    f"resumed after a platform restart at {now.isoformat(timespec='seconds')}"
                )
                self.book.audit("job.resume", job.id, {})
        if self.tee is not None:
            touched += self.tee.recover()
        return touched

    # -- node agents (through the node service) ------------------------------------
    def node_hello(
        self, node_id: str, address: str, fingerprint: str = "", boot: str = "",
        role: str = "party", datasets: list[dict[str, Any]] | None = None,
    ) -> None:
        """A node agent (certificate subject ``node_id``) connected and serves ``address``.

        ``boot`` names the agent process; a new one while the node had running
        tasks means their work is lost: they fail (and the step is retried).
        ``role`` (``party`` or ``dealer``) is registered at the node's first
        hello and may not change later (an admin deletes the node to change it).
        """
        self.nodes.hello(node_id, address, fingerprint, boot, role, datasets)

    def node_beat(
        self, node_id: str, running: dict[str, float], stats: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Record a heartbeat listing ``{task id: progress}``; return (orders, cancels)."""
        return self.nodes.beat(node_id, running, stats)

    def task_report(
        self, node_id: str, task_id: str, ok: bool, metrics: dict[str, Any], reason: str,
        seconds: float, *, retry: bool = True,
    ) -> None:
        """A node finished a task. Reports for tasks no longer running are ignored; a
        failure the node says would repeat (``retry=False``) fails the job at once."""
        self.nodes.report(node_id, task_id, ok, metrics, reason, seconds, retry=retry)

    def finished(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are over (or unknown): their nodes may drop their state."""
        return self.nodes.finished(job_ids)
