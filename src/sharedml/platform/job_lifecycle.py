"""The job lifecycle: the legal moves of jobs and tasks, and how a job advances.

Every state change of a job or a task goes through :func:`move`, which holds
the table of legal moves (``MOVES``)::

    pending ─▶ running ─▶ succeeded
       │          ├─────▶ failed
       └──────────┴─────▶ canceled     (pending may also fail: a node offline,
                                         approval refused)

:meth:`Lifecycle.advance` applies the rules to one job: a step starts as a
whole when every step it needs has succeeded, every dataset owner approved
this use (8.3-1) and each of its nodes is online; a running task whose node
sends no heartbeat within the job's timeout fails with a reason naming the
party and the step; a step that fails at any party is retried on all parties
as a new *attempt* (new task rows; the failed attempt stays in the history)
until the job's attempts are spent, and then the job fails naming the step,
the party (or the dealer) and the cause. A dealer task lives like any task,
but a step's failure first waits for its dealer task to end, so the reason
names a dead dealer rather than a party that only saw the consequence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from sharedml.errors import PolicyDenied, SharedMLError
from sharedml.platform.errors import Conflict
from sharedml.platform.job_book import JobBook
from sharedml.platform.job_plan import StepPlan
from sharedml.platform.store.models import FINAL_STATES, Job, Node, Task

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
#: Runs in the transaction that marks a job succeeded, with its current tasks
#: (the platform registers the model versions its train steps made).
SuccessHook = Callable[[Session, Job, list[Task]], object]


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


def open_gate(session: Session, job: Job) -> str | None:
    """The approval gate of a scheduler without a platform: every use is approved."""
    return None


def who(task: Task, dealer: str | None) -> str:
    """How a reason names the runner of ``task``: a party, or the step's dealer."""
    return f"the dealer {task.party!r}" if task.party == dealer else f"party {task.party!r}"


#: How the reasons the scheduler itself gives a task that lost its node begin.
_LOST = ("no heartbeat from ", "the node of ")


def _cause(failed: list[Task], plan: StepPlan) -> Task:
    """The failure a step's failure is put down to: a task whose node was lost (the
    others' failures follow from it), else a data party's (a dealer only reacts)."""
    def rank(t: Task) -> tuple[int, int]:
        return (0 if (t.reason or "").startswith(_LOST) else 1, int(t.party == plan.dealer))

    return min(failed, key=rank)


class Lifecycle:
    """Moves the jobs of a :class:`JobBook` through their states, inside its transactions."""

    def __init__(self, book: JobBook, approvals: ApprovalGate = open_gate,
                 on_success: SuccessHook | None = None) -> None:
        self.book = book
        self.approvals = approvals
        self.on_success = on_success

    def advance(self, s: Session, job: Job, now: dt.datetime) -> None:
        """Start ready steps, time out silent tasks, retry or fail failed steps."""
        try:
            plans = self.book.plan(job)
        except SharedMLError as exc:
            self.fail_job(s, job, now, f"the job spec no longer loads: {exc}")
            return
        current = self.book.current(s, job.id)
        _drop_strays(plans, current, now)
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
                self._start(s, job, plan, tasks, current, now)
        if job.state == "running" and len(done) == len(plans):
            move(job, "succeeded", now)
            job.reason = None
            self.book.audit("job.succeeded", job.id, {})
            if self.on_success is not None:
                self.on_success(s, job, [t for ts in current.values() for t in ts])
        if job.state not in FINAL_STATES:
            # a dealer task has no progress of its own: it lasts as long as its step
            flat = [t for p in plans for t in current.get(p.id, []) if t.party != p.dealer]
            job.progress = sum(t.progress if t.state != "succeeded" else 1.0 for t in flat) / max(
                len(flat), 1
            )

    def fail_job(self, s: Session, job: Job, now: dt.datetime, reason: str) -> None:
        for t in self.book.open_tasks(s, job.id):
            move(t, "canceled", now, "the job failed")
        move(job, "failed", now, reason)
        self.book.audit("job.failed", job.id, {"reason": reason})

    def _limit(self, job: Job) -> float:
        """How long a ready step waits for an offline node to come back."""
        return job.timeout_s or self.book.config.task_timeout_s

    def _silence(self, job: Job) -> float:
        """How long a node may be silent before its task fails (``heartbeat_timeout_s``)."""
        return job.timeout_s or self.book.config.silence_s

    def _time_out(self, job: Job, plan: StepPlan, tasks: list[Task], now: dt.datetime) -> None:
        limit = self._silence(job)
        step_limit = self.book.config.step_timeout_s
        for t in tasks:
            # the node ends a step at its step timeout; one that still has not reported a
            # heartbeat timeout later is stuck (computing, not waiting): fail it here
            if (t.state == "running" and step_limit and t.started_at is not None
                    and (now - t.started_at).total_seconds() > step_limit + limit):
                move(t, "failed", now, f"step {plan.id!r} did not finish at {who(t, plan.dealer)} "
                     f"within its step timeout of {step_limit:g} s")
                continue
            last = self.book.last_of_task(t.node_id or "", t.id, t.heartbeat_at or t.started_at)
            if t.state == "running" and last is not None and (now - last).total_seconds() > limit:
                move(
                    t,
                    "failed",
                    now,
                    f"no heartbeat from {who(t, plan.dealer)} (node {t.node_id!r}) for {limit:g} s "
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
        return (now - first).total_seconds() <= self._silence(job)

    def _start(
        self,
        s: Session,
        job: Job,
        plan: StepPlan,
        tasks: list[Task],
        current: dict[str, list[Task]],
        now: dt.datetime,
    ) -> None:
        """Dispatch a ready step: its tasks go running on their nodes' next heartbeat."""
        if plan.touches_data:
            try:
                waiting = self.approvals(s, job)
            except PolicyDenied as exc:
                self.fail_job(s, job, now, f"step {plan.id!r} may not use its data: {exc}")
                return
            if waiting:
                job.reason = waiting
                return
        limit = self._limit(job)
        ready_since = max(
            [t.finished_at for n in plan.needs for t in current[n] if t.finished_at]
            + [tasks[0].created_at, self.book.since]  # (a retry's tasks are made when it is due)
        )
        for t in tasks:
            node = s.get(Node, t.party)
            wrong = _wrong_role(t, node, plan)
            if wrong is not None:
                self.fail_job(s, job, now, wrong)
                return
            last = self.book.last(t.party, node.last_heartbeat if node else None)
            if last is None or (now - last).total_seconds() > self._silence(job):
                if (now - ready_since).total_seconds() > limit:
                    move(
                        t,
                        "failed",
                        now,
                        f"the node of {who(t, plan.dealer)} is offline; step "
                        f"{plan.id!r} could not start within {limit:g} s",
                    )
                    self._step_failed(s, job, plan, tasks, t, now)
                else:
                    job.reason = f"waiting for the node of {who(t, plan.dealer)} to come online"
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
        self.book.audit("task.dispatch", job.id, detail)

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
            self.book.new_tasks(s, job.id, plan, attempt, now)
            job.attempts += 1
            job.reason = (
                f"retrying step {plan.id!r} (attempt {attempt + 1} of {job.max_attempts})"
                f" after: {cause.reason}"
            )
            self.book.audit("job.retry", job.id, {"step": plan.id, "attempt": attempt})
            return
        then = "".join(f"\n  then: {who(t, plan.dealer)}: {t.reason}" for t in tasks
                       if t is not cause and t.state == "failed")  # after the root cause
        self.fail_job(
            s,
            job,
            now,
            f"step {plan.id!r} failed at {who(cause, plan.dealer)} "
            f"(attempt {attempt} of {job.max_attempts}): {cause.reason}{then}",
        )


def _drop_strays(plans: list[StepPlan], current: dict[str, list[Task]], now: dt.datetime) -> None:
    """Leave out (and cancel, if open) the tasks of a step's party its plan no longer
    names: a job stored before steps declared their roles has a dealer task for every
    step, which its plan now gives only the steps the dealer takes part in."""
    for plan in plans:
        tasks = current.get(plan.id, [])
        strays = [t for t in tasks if t.party not in plan.peers]
        for t in strays:
            if t.state not in FINAL_STATES:
                move(t, "canceled", now, f"{t.party!r} takes no part in step {plan.id!r}")
        current[plan.id] = [t for t in tasks if t.party in plan.peers]


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
