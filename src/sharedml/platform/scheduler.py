"""Decomposition and scheduling: from a job spec to per-party tasks, and their lives.

A job's spec names parties and steps (a DAG through ``needs``). A **task** is
one party's share of one step. The tasks of one step run together (the
parties talk to each other during the step), so a step is dispatched as a
whole when every step it needs has succeeded, and a step that fails at any
party is retried on all parties, as a new *attempt* (new task rows; the
failed attempt stays in the history).

Every state change of a job or a task goes through :func:`move`, which holds
the table of legal moves (``MOVES``)::

    pending ─▶ running ─▶ succeeded
       │          ├─────▶ failed
       └──────────┴─────▶ canceled     (pending may also fail: a node offline,
                                         approval refused)

Node agents (``sharedml.platform.nodes``) poll: each heartbeat lists the
tasks the node runs, and the reply carries the tasks it should run and those it
should cancel. A running task whose node sends no heartbeat within the job's
timeout fails with a reason naming the party and the step.

**The dealer.** A job with a secret-shared step (``protocol: ss``, unless
``provider: he``; :func:`sharedml.components.dealer.needs_dealer`, the decision
``sharedml run`` makes too) gets one more task per step: a *dealer task*, given
to the deployment's dealer node (:attr:`SchedulerConfig.dealer`, a node agent
started with ``role: dealer``, identity = its certificate's subject) and
listed among the step's peers, so the data nodes' channels reach it. The
dealer node holds no datasets and needs no dataset approval; it serves the
step's MPC runtimes and ends its task when the last data party's end-of-step
marker arrives. What it sees: the correlated randomness it made itself, and
the number and shapes of the requests — never a row, a label, a share of one,
or a model part; it reports public counts only (runtimes, requests). It must
not collude with a data party, so it is never one: a job naming the dealer
node as a party is refused, only a node registered with the dealer role is
given dealer tasks, and a dealer node is given no party's task. A dealer task
lives like any task: its failure or a missing heartbeat fails (and retries)
the step, with a reason naming the dealer and the step.

A platform restart loses nothing: job and task state live in the store only.
On start, :meth:`Scheduler.recover` either resumes running jobs (their running
tasks get a fresh heartbeat deadline; a node still running one keeps going, a
node that lost it gets it again) or marks them failed with a reason
(``on_restart="fail"``). Before a step touching a dataset is dispatched, the
approval gate checks that every dataset owner approved this use (8.3-1).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.components import jobspec
from sharedml.components.dealer import needs_dealer
from sharedml.errors import ConfigError, PolicyDenied, SharedMLError
from sharedml.platform.clock import Clock, SystemClock
from sharedml.platform.errors import Conflict, NotFound
from sharedml.platform.store import Store
from sharedml.platform.store.models import FINAL_STATES, Job, Node, Task

if TYPE_CHECKING:
    from sharedml.platform.service import Platform

MOVES: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "failed", "canceled"}),
    "running": frozenset({"succeeded", "failed", "canceled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
}

#: Says why a job may not touch its datasets yet (``None``: every owner approved).
#: Raises :class:`PolicyDenied` when an owner refused.
ApprovalGate = Callable[[Session, Job], str | None]
#: Appends one entry to the audit log inside the given transaction:
#: (session, actor, action, target, detail).
AuditFn = Callable[[Session, str, str, str, dict[str, Any]], None]


class IllegalTransition(Conflict):
    """A job or task was asked to move between states the state machine forbids."""


def move(row: Job | Task, new: str, now: dt.datetime, reason: str | None = None) -> None:
    """The one place a job or task changes state."""
    kind = "job" if isinstance(row, Job) else f"task {row.step_id}@{row.party}"
    if new not in MOVES.get(row.state, frozenset()):
        raise IllegalTransition(
            f"{kind} {row.id} is {row.state}; it cannot become {new}",
            remedy="only pending or running jobs and tasks change state",
        )
    row.state = new
    if new == "running":
        row.started_at = now
    if new in FINAL_STATES:
        row.finished_at = now
        if new == "succeeded":
            row.progress = 1.0
    if reason is not None:
        row.reason = reason
    if isinstance(row, Job):
        row.updated_at = now


@dataclass(frozen=True)
class StepPlan:
    """One step of a job, decomposed: who runs it and what it waits for."""

    id: str
    component: str
    params: dict[str, Any]
    needs: tuple[str, ...]
    ancestors: tuple[str, ...]
    parties: tuple[str, ...]
    touches_data: bool
    #: The dealer node serving this step (a job with a secret-shared step), else ``None``.
    dealer: str | None = None

    @property
    def peers(self) -> tuple[str, ...]:
        """Everyone in the step's channel: its data parties, then its dealer."""
        return self.parties + ((self.dealer,) if self.dealer else ())


def decompose(spec: jobspec.JobSpec, dealer: str = "dealer") -> list[StepPlan]:
    """The job's steps in order, each with its parties and transitive needs.

    Every step of a job that :func:`needs_dealer` is served by the dealer node
    ``dealer``, which may not be a data party of the job.
    """
    plans: list[StepPlan] = []
    ancestors: dict[str, set[str]] = {}
    parties = tuple(spec.parties)
    touches = any(p.dataset for p in spec.parties.values())
    served_by = dealer if needs_dealer(spec) else None
    if served_by is not None and served_by in parties:
        raise ConfigError(
            f"invalid job spec field parties.{served_by}: the job computes on secret shares "
            f"and {served_by!r} is the dealer node, which must not be a data party",
            remedy="rename the party, or run the step with 'protocol: he' or 'provider: he'",
        )
    for step in spec.parsed_steps():
        anc = set(step.needs)
        for need in step.needs:
            anc |= ancestors[need]
        ancestors[step.id] = anc
        plans.append(
            StepPlan(
                id=step.id,
                component=step.component,
                params=step.params.model_dump(mode="json"),
                needs=tuple(step.needs),
                ancestors=tuple(sorted(anc)),
                parties=parties,
                touches_data=touches,
                dealer=served_by,
            )
        )
    return plans


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
    #: The dealer node (certificate subject) given the dealer tasks of secret-shared jobs.
    dealer: str = "dealer"


def _open_gate(session: Session, job: Job) -> str | None:
    return None


#: How the reasons the scheduler itself gives a task that lost its node begin.
_LOST = ("no heartbeat from ", "the node of ")


def _cause(failed: list[Task], plan: StepPlan) -> Task:
    """The failure a step's failure is put down to: a task whose node was lost (the
    others' failures follow from it), else a data party's (a dealer only reacts)."""
    def rank(t: Task) -> tuple[int, int]:
        return (0 if (t.reason or "").startswith(_LOST) else 1, int(t.party == plan.dealer))

    return min(failed, key=rank)


def _who(task: Task, dealer: str | None) -> str:
    """How a reason names the runner of ``task``: a party, or the step's dealer."""
    return f"the dealer {task.party!r}" if task.party == dealer else f"party {task.party!r}"


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
    ) -> None:
        self.store = store
        self.config = config or SchedulerConfig()
        self.clock = clock or SystemClock()
        self.approvals = approvals or _open_gate
        self.audit = audit
        self._lock = threading.RLock()
        self._plans: dict[str, list[StepPlan]] = {}
        self._events: list[tuple[str, str, str, dict[str, Any]]] = []
        #: Nodes get a full timeout to reconnect after this scheduler starts.
        self._since = self.clock.now()
        #: Last heartbeat of each node and task id, newer than the stored one.
        self._seen: dict[str, dt.datetime] = {}
        #: Each node's agent process (its "boot" id), as last said hello.
        self._boots: dict[str, str] = {}

    @classmethod
    def for_platform(cls, platform: Platform, config: SchedulerConfig | None = None) -> Scheduler:
        """A scheduler over a platform's store, clock, audit log and approvals."""

        def gate(session: Session, job: Job) -> str | None:
            status = platform.approvals.status(job.id, session)
            if status == "rejected":
                raise PolicyDenied("a dataset owner rejected this job's use of their data")
            if status != "approved":
                return "waiting for every dataset owner's approval (8.3-1)"
            return None

        def audit(s: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
            platform.audit.append_in(s, actor, action, target, detail=detail)

        return cls(platform.store, config, clock=platform.clock, approvals=gate, audit=audit)

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
        if parsed.scheme != "mpc":
            raise ConfigError(
                f"scheme {parsed.scheme!r} jobs are not run by node agents",
                remedy="submit TEE jobs to the enclave manager",
            )
        plans = decompose(parsed, self.config.dealer)
        attempts = self.config.max_attempts if max_attempts is None else max_attempts
        if attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        now = self.clock.now()
        with self._tx() as s:
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
                self._new_tasks(s, job.id, plan, 0, now)
            self._plans[job.id] = plans
            self._audit(s, "job.submit", job.id, {"name": parsed.name}, actor)
            return job.id

    def cancel(self, job_id: str, by: str = "scheduler") -> None:
        """Cancel a pending or running job and every task of it not yet finished."""
        now = self.clock.now()
        with self._tx() as s:
            job = self._job(s, job_id)
            move(job, "canceled", now, f"canceled by {by}")
            for task in self._open_tasks(s, job_id):
                move(task, "canceled", now, f"job canceled by {by}")
            self._audit(s, "job.cancel", job_id, {}, by)

    def tick(self) -> None:
        """Advance every unfinished job: dispatch ready steps, time out silent tasks."""
        now = self.clock.now()
        with self._tx() as s:
            jobs = s.scalars(select(Job).where(Job.state.in_(("pending", "running"))))
            for job in list(jobs):
                self._advance(s, job, now)
            for node in s.scalars(select(Node).where(Node.status == "online")).all():
                last = self._last(node.id, node.last_heartbeat)
                if last is None or (now - last).total_seconds() > self.config.task_timeout_s:
                    node.status = "offline"

    def recover(self) -> list[str]:
        """On platform start: resume or fail every job that was running; return their ids."""
        now = self.clock.now()
        touched = []
        with self._tx() as s:
            for job in s.scalars(select(Job).where(Job.state == "running")).all():
                touched.append(job.id)
                try:
                    self._plan(job)
                except SharedMLError as exc:
                    self._fail_job(s, job, now, f"cannot resume after a platform restart: {exc}")
                    continue
                if self.config.on_restart == "fail":
                    self._fail_job(s, job, now, "the platform restarted while the job was running")
                    continue
                for task in self._open_tasks(s, job.id):
                    if task.state == "running":
                        task.heartbeat_at = now
                job.reason = (
                    f"resumed after a platform restart at {now.isoformat(timespec='seconds')}"
                )
                self._audit(s, "job.resume", job.id, {})
        return touched

    # -- nodes ---------------------------------------------------------------------
    def node_hello(
        self, node_id: str, address: str, fingerprint: str = "", boot: str = "",
        role: str = "party",
    ) -> None:
        """A node agent (certificate subject ``node_id``) connected and serves ``address``.

        ``boot`` names the agent process; a new one while the node had running
        tasks means their work is lost: they fail (and the step is retried).
        ``role`` (``party`` or ``dealer``) is registered at the node's first
        hello and may not change later (an admin deletes the node to change it).
        """
        if role not in ("party", "dealer"):
            raise ConfigError(f"node {node_id!r}: unknown role {role!r}", party=node_id)
        now = self.clock.now()
        with self._tx() as s:
            node = s.get(Node, node_id)
            if node is None:
                node = Node(id=node_id, party=node_id, role=role, registered_at=now)
                s.add(node)
            elif node.role != role:
                raise PolicyDenied(
                    f"node {node_id!r} is registered as a {node.role} node, not a {role} node",
                    party=node_id,
                    remedy=f"an admin deletes it (DELETE /api/v1/nodes/{node_id}) to register "
                    "it again with another role",
                )
            node.address, node.cert_fingerprint = address, fingerprint
            node.status, node.last_heartbeat = "online", now
            before, self._boots[node_id] = self._boots.get(node_id), boot
            if before is None or before == boot:
                return
            lost = s.scalars(
                select(Task).where(Task.node_id == node_id, Task.state == "running")
            ).all()
            dealer = node_id if node.role == "dealer" else None
            for task in lost:
                move(task, "failed", now, f"the node of {_who(task, dealer)} restarted during "
                     f"step {task.step_id!r}; its work on the step was lost")
            for job_id in {t.job_id for t in lost}:
                self._advance(s, self._job(s, job_id), now)

    def node_beat(
        self, node_id: str, running: dict[str, float]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Record a heartbeat listing ``{task id: progress}``; return (orders, cancels)."""
        now = self.clock.now()
        with self._tx() as s:
            node = s.get(Node, node_id)
            if node is None:
                raise PolicyDenied(f"node {node_id!r} has not said hello", party=node_id)
            # Heartbeats are kept in memory and written at most every flush_s, so
            # nodes beating often do not keep the database busy.
            self._seen[node_id] = now
            flush = self._stale(node.last_heartbeat, now) or node.status != "online"
            if flush:
                node.status, node.last_heartbeat = "online", now
            cancels = []
            for task_id, progress in running.items():
                task = s.get(Task, task_id)
                if task is None or task.state != "running" or task.node_id != node_id:
                    cancels.append(task_id)
                    continue
                self._seen[task_id] = now
                fraction = min(max(float(progress), 0.0), 1.0)
                if flush or fraction - task.progress >= 0.25:
                    task.heartbeat_at, task.progress = now, fraction
            mine = s.scalars(
                select(Task).where(Task.node_id == node_id, Task.state == "running")
            ).all()
            orders = []
            for t in mine:
                if t.id in running or t.state != "running":  # (its job may just have failed)
                    continue
                try:
                    orders.append(self._order(s, t))
                except SharedMLError as exc:  # one broken job must not stop the node's others
                    self._fail_job(s, self._job(s, t.job_id), now, f"cannot dispatch: {exc}")
            return orders, cancels

    def finished(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are over (or unknown): their nodes may drop their state."""
        with self._tx() as s:
            live = set(s.scalars(
                select(Job.id).where(Job.id.in_(job_ids), Job.state.in_(("pending", "running")))
            ))
        return [j for j in job_ids if j not in live]

    def task_report(
        self,
        node_id: str,
        task_id: str,
        ok: bool,
        metrics: dict[str, Any],
        reason: str,
        seconds: float,
    ) -> None:
        """A node finished a task. Reports for tasks no longer running are ignored."""
        now = self.clock.now()
        with self._tx() as s:
            task = s.get(Task, task_id)
            if task is None or task.node_id != node_id or task.state != "running":
                return
            if ok:
                task.metrics = metrics
                move(task, "succeeded", now)
                job = self._job(s, task.job_id)
                steps = copy.deepcopy((job.result or {}).get("steps", {}))
                steps.setdefault(task.step_id, {})[task.party] = {
                    "metrics": metrics,
                    "seconds": round(seconds, 4),
                }
                job.result = {"steps": steps}
            else:
                move(task, "failed", now, reason or "failed without a reason")
            self._advance(s, self._job(s, task.job_id), now)

    # -- the state machine ---------------------------------------------------------
    def _advance(self, s: Session, job: Job, now: dt.datetime) -> None:
        try:
            plans = self._plan(job)
        except SharedMLError as exc:
            self._fail_job(s, job, now, f"the job spec no longer loads: {exc}")
            return
        current = self._current(s, job.id)
        done = {p.id for p in plans if all(t.state == "succeeded" for t in current[p.id])}
        for plan in plans:
            tasks = current[plan.id]
            if plan.id in done or job.state in FINAL_STATES:
                continue
            self._time_out(job, plan, tasks, now)
            failed = [t for t in tasks if t.state == "failed"]
            if failed and self._awaits_dealer(job, plan, tasks, failed, now):
                continue
            if failed:
                self._step_failed(s, job, plan, tasks, _cause(failed, plan), now)
                return
            if all(t.state == "pending" for t in tasks) and set(plan.needs) <= done:
                self._dispatch(s, job, plan, tasks, current, now)
        if job.state == "running" and len(done) == len(plans):
            move(job, "succeeded", now)
            job.reason = None
            self._audit(s, "job.succeeded", job.id, {})
        if job.state not in FINAL_STATES:
            # a dealer task has no progress of its own: it lasts as long as its step
            flat = [t for p in plans for t in current.get(p.id, []) if t.party != p.dealer]
            job.progress = sum(t.progress if t.state != "succeeded" else 1.0 for t in flat) / max(
                len(flat), 1
            )

    def _time_out(self, job: Job, plan: StepPlan, tasks: list[Task], now: dt.datetime) -> None:
        limit = job.timeout_s or self.config.task_timeout_s
        for t in tasks:
            last = self._last(t.id, t.heartbeat_at or t.started_at)
            if t.state == "running" and last is not None and (now - last).total_seconds() > limit:
                move(
                    t,
                    "failed",
                    now,
                    f"no heartbeat from {_who(t, plan.dealer)} (node {t.node_id!r}) for {limit:g} s "
                    f"during step {plan.id!r}",
                )

    def _awaits_dealer(
        self, job: Job, plan: StepPlan, tasks: list[Task], failed: list[Task], now: dt.datetime
    ) -> bool:
        """Whether the step's failure waits for its dealer task to end first.

        A dealer node that dies makes the data parties fail at once (their
        channel to it breaks, then to each other), before its own silence is
        seen; the step waits until the dealer's task fails (no heartbeat within
        the timeout) or ends, so the reason names the dealer, not a party that
        only saw the consequence. A live dealer ends promptly once the data
        parties have closed their channels; the wait is bounded by the timeout.
        """
        dealer = next((t for t in tasks if t.party == plan.dealer), None)
        if dealer is None or dealer.state != "running" or dealer in failed:
            return False
        first = min((t.finished_at for t in failed if t.finished_at), default=now)
        limit = job.timeout_s or self.config.task_timeout_s
        return (now - first).total_seconds() <= limit

    def _dispatch(
        self,
        s: Session,
        job: Job,
        plan: StepPlan,
        tasks: list[Task],
        current: dict[str, list[Task]],
        now: dt.datetime,
    ) -> None:
        if plan.touches_data:
            try:
                waiting = self.approvals(s, job)
            except PolicyDenied as exc:
                self._fail_job(s, job, now, f"step {plan.id!r} may not use its data: {exc}")
                return
            if waiting:
                job.reason = waiting
                return
        limit = job.timeout_s or self.config.task_timeout_s
        ready_since = max(
            [t.finished_at for n in plan.needs for t in current[n] if t.finished_at]
            + [tasks[0].created_at, self._since]  # (a retry's tasks are made when it is due)
        )
        for t in tasks:
            node = s.get(Node, t.party)
            wrong = self._wrong_role(t, node, plan)
            if wrong is not None:
                self._fail_job(s, job, now, wrong)
                return
            last = self._last(t.party, node.last_heartbeat if node else None)
            if last is None or (now - last).total_seconds() > limit:
                if (now - ready_since).total_seconds() > limit:
                    move(
                        t,
                        "failed",
                        now,
                        f"the node of {_who(t, plan.dealer)} is offline; step "
                        f"{plan.id!r} could not start within {limit:g} s",
                    )
                    self._step_failed(s, job, plan, tasks, t, now)
                else:
                    job.reason = f"waiting for the node of {_who(t, plan.dealer)} to come online"
                return
        if job.state == "pending":
            move(job, "running", now, "")
        for t in tasks:
            t.node_id = t.party
            t.heartbeat_at = now
            move(t, "running", now)
        job.reason = None
        detail: dict[str, Any] = {"step": plan.id, "parties": list(plan.parties)}
        if plan.dealer:
            detail["dealer"] = plan.dealer
        self._audit(s, "task.dispatch", job.id, detail)

    @staticmethod
    def _wrong_role(task: Task, node: Node | None, plan: StepPlan) -> str | None:
        """Why ``node`` may not run ``task`` (a dealer task needs a dealer node; a
        party's task a party's node), or ``None``."""
        role = node.role if node is not None else None
        if task.party == plan.dealer and role not in (None, "dealer"):
            return (f"step {plan.id!r} needs the dealer node {task.party!r}, but that node is "
                    f"registered as a {role} node; only a dealer node is given dealer tasks")
        if task.party != plan.dealer and role == "dealer":
            return (f"party {task.party!r} of step {plan.id!r} is a dealer node: it holds no "
                    "data and is given no party's task")
        return None

    def _step_failed(
        self,
        s: Session,
        job: Job,
        plan: StepPlan,
        tasks: list[Task],
        cause: Task,
        now: dt.datetime,
    ) -> None:
        for t in tasks:
            if t.state not in FINAL_STATES:
                move(t, "canceled", now, f"party {cause.party!r} failed this attempt")
        attempt = cause.attempt + 1
        if attempt < job.max_attempts:
            self._new_tasks(s, job.id, plan, attempt, now)
            job.attempts += 1
            job.reason = (
                f"retrying step {plan.id!r} (attempt {attempt + 1} of {job.max_attempts})"
                f" after: {cause.reason}"
            )
            self._audit(s, "job.retry", job.id, {"step": plan.id, "attempt": attempt})
            return
        self._fail_job(
            s,
            job,
            now,
            f"step {plan.id!r} failed at {_who(cause, plan.dealer)} "
            f"(attempt {attempt} of {job.max_attempts}): {cause.reason}",
        )

    def _fail_job(self, s: Session, job: Job, now: dt.datetime, reason: str) -> None:
        for t in self._open_tasks(s, job.id):
            move(t, "canceled", now, "the job failed")
        move(job, "failed", now, reason)
        self._audit(s, "job.failed", job.id, {"reason": reason})

    # -- helpers -------------------------------------------------------------------
    def _last(self, key: str, stored: dt.datetime | None) -> dt.datetime | None:
        seen = self._seen.get(key)
        return max(seen, stored) if seen and stored else seen or stored

    def _stale(self, stored: dt.datetime | None, now: dt.datetime) -> bool:
        flush_s = 15.0  # timeouts read the in-memory time; the store shows it roughly
        return stored is None or (now - stored).total_seconds() >= flush_s

    def _order(self, s: Session, task: Task) -> dict[str, Any]:
        job = self._job(s, task.job_id)
        plan = next(p for p in self._plan(job) if p.id == task.step_id)
        spec = json.loads(job.spec)
        peers = {}
        for party in plan.peers:
            node = s.get(Node, party)
            peers[party] = node.address if node else ""
        return {
            "task_id": task.id,
            "job_id": job.id,
            "step_id": plan.id,
            "component": plan.component,
            "params": plan.params,
            "attempt": task.attempt,
            "ancestors": list(plan.ancestors),
            "parties": spec["parties"],
            "peers": peers,
            "channel_timeout_s": self.config.channel_timeout_s,
            "dealer": plan.dealer,
        }

    def _plan(self, job: Job) -> list[StepPlan]:
        if job.id not in self._plans:
            self._plans[job.id] = decompose(jobspec.load(json.loads(job.spec)), self.config.dealer)
        return self._plans[job.id]

    def _new_tasks(
        self, s: Session, job_id: str, plan: StepPlan, attempt: int, now: dt.datetime
    ) -> None:
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

    def _current(self, s: Session, job_id: str) -> dict[str, list[Task]]:
        """Each step's tasks of its latest attempt."""
        latest: dict[str, list[Task]] = {}
        rows = s.scalars(select(Task).where(Task.job_id == job_id).order_by(Task.attempt))
        for t in rows:
            group = latest.setdefault(t.step_id, [])
            if group and group[0].attempt < t.attempt:
                group.clear()
            group.append(t)
        return latest

    def _open_tasks(self, s: Session, job_id: str) -> list[Task]:
        rows = s.scalars(
            select(Task).where(Task.job_id == job_id, Task.state.in_(("pending", "running")))
        )
        return list(rows)

    def _job(self, s: Session, job_id: str) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", remedy="list jobs with GET /api/v1/jobs")
        return job

    def _audit(
        self,
        s: Session,
        action: str,
        target: str,
        detail: dict[str, Any],
        actor: str = "scheduler",
    ) -> None:
        """Queue an audit entry; :meth:`_tx` writes it in the same transaction."""
        self._events.append((actor, action, target, detail))

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One serialised transaction; its audit entries commit with it."""
        with self._lock:
            try:
                with self.store.session() as s:
                    yield s
                    if self.audit is not None:
                        for event in self._events:
                            self.audit(s, *event)
            finally:
                self._events.clear()
