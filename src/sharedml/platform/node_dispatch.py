"""Node-facing dispatch: what the scheduler does when a node agent calls.

Node agents (``sharedml node``) poll through the platform's node service
(:mod:`sharedml.platform.nodes`); the service calls :class:`NodeDispatch`:

* **hello** — the node registers (with its role, ``party``, ``dealer`` or
  ``enclave``, fixed at its first hello) and says where peers reach it (an
  enclave node: where its service enclave serves RA-TLS); a new agent process while
  its tasks ran means their work is lost, so they fail and the step is retried;
* **beat** — a heartbeat lists the tasks the node runs, with their progress;
  the reply carries the running tasks it does not run yet (as task orders:
  step, parameters, peers' addresses, the dealer) and the ones to cancel;
* **report** — a task finished, with public metrics or a failure reason;
* **finished** — which jobs the node may forget.

Only a node registered with the dealer role is given dealer tasks, and a
dealer node is given no party's task. Each call runs in one transaction of
the :class:`~sharedml.platform.job_book.JobBook`, and whatever it changes is
followed through by :meth:`Lifecycle.advance
<sharedml.platform.job_lifecycle.Lifecycle.advance>`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.errors import ConfigError, PolicyDenied, SharedMLError
from sharedml.platform.job_book import JobBook
from sharedml.platform.job_lifecycle import Lifecycle, move, who
from sharedml.platform.store.models import Job, Node, Task

#: Heartbeats reach the store at most this often (timeouts read the in-memory time).
_FLUSH_S = 15.0

#: The owners' signed approvals of a job, as :class:`sharedml.approvals.SignedApproval`
#: fields; every node checks its own before it reads data (none without a platform).
SignedApprovals = Callable[[Session, Job], list[dict[str, Any]]]
#: Takes the dataset records a node reported at hello: (session, party, records).
DatasetRecords = Callable[[Session, str, list[dict[str, Any]]], None]


def no_signatures(session: Session, job: Job) -> list[dict[str, Any]]:
    return []


def ignore_records(session: Session, party: str, records: list[dict[str, Any]]) -> None:
    return None


class NodeDispatch:
    """Answers node agents' hello, beat and report calls; safe to call from any thread."""

    def __init__(
        self, book: JobBook, lifecycle: Lifecycle, signed: SignedApprovals = no_signatures,
        records: DatasetRecords = ignore_records,
    ) -> None:
        self.book = book
        self.lifecycle = lifecycle
        self.signed = signed
        self.records = records
        #: Each node's agent process (its "boot" id), as last said hello.
        self._boots: dict[str, str] = {}

    def hello(
        self, node_id: str, address: str, fingerprint: str, boot: str, role: str,
        datasets: list[dict[str, Any]] | None = None,
    ) -> None:
        """A node agent (certificate subject ``node_id``) connected and serves ``address``;
        ``datasets`` are the records of its registry (its party's, by its certificate)."""
        if role not in ("party", "dealer", "enclave"):
            raise ConfigError(f"node {node_id!r}: unknown role {role!r}", party=node_id)
        now = self.book.clock.now()
        with self.book.tx() as s:
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
            if datasets and node.role == "party":
                self.records(s, node.party, datasets)
            before, self._boots[node_id] = self._boots.get(node_id), boot
            if before is None or before == boot:
                return
            self._lose_work(s, node, now)

    def _lose_work(self, s: Session, node: Node, now: dt.datetime) -> None:
        """The node's agent restarted: the tasks it ran fail, their jobs move on."""
        lost = s.scalars(select(Task).where(Task.node_id == node.id, Task.state == "running")).all()
        dealer = node.id if node.role == "dealer" else None
        for task in lost:
            move(task, "failed", now, f"the node of {who(task, dealer)} restarted during "
                 f"step {task.step_id!r}; its work on the step was lost")
        for job_id in {t.job_id for t in lost}:
            self.lifecycle.advance(s, self.book.job(s, job_id), now)

    def beat(
        self, node_id: str, running: dict[str, float], stats: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Record a heartbeat listing ``{task id: progress}``; return (orders, cancels)."""
        now = self.book.clock.now()
        # Heard before the write lock is asked for: a beat waiting for a busy store
        # still counts (issue 14 item 3). Kept in memory, written at most every
        # _FLUSH_S, so nodes beating often do not keep the database busy.
        self.book.beat(node_id, running, now)
        with self.book.tx() as s:
            node = s.get(Node, node_id)
            if node is None:
                raise PolicyDenied(f"node {node_id!r} has not said hello", party=node_id)
            flush = _stale(node.last_heartbeat, now) or node.status != "online"
            if flush:
                node.status, node.last_heartbeat = "online", now
                if stats is not None:
                    node.stats = stats
            cancels = []
            for task_id, progress in running.items():
                task = s.get(Task, task_id)
                if task is None or task.state != "running" or task.node_id != node_id:
                    cancels.append(task_id)
                    continue
                fraction = min(max(float(progress), 0.0), 1.0)
                if flush or fraction - task.progress >= 0.25:
                    task.heartbeat_at, task.progress = now, fraction
            orders = self._orders(s, node_id, running, now)
        self.book.ordered(node_id, [o["task_id"] for o in orders], now)
        return orders, cancels

    def _orders(
        self, s: Session, node_id: str, running: dict[str, float], now: dt.datetime
    ) -> list[dict[str, Any]]:
        """Orders for the node's running tasks that its heartbeat did not list."""
        mine = s.scalars(select(Task).where(Task.node_id == node_id, Task.state == "running")).all()
        orders = []
        for t in mine:
            if t.id in running or t.state != "running":  # (its job may just have failed)
                continue
            try:
                orders.append(self._order(s, t))
            except SharedMLError as exc:  # one broken job must not stop the node's others
                self.lifecycle.fail_job(s, self.book.job(s, t.job_id), now, f"cannot dispatch: {exc}")
        return orders

    def finished(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are over (or unknown): their nodes may drop their state."""
        with self.book.tx() as s:
            live = set(s.scalars(
                select(Job.id).where(Job.id.in_(job_ids), Job.state.in_(("pending", "running")))
            ))
        return [j for j in job_ids if j not in live]

    def report(
        self,
        node_id: str,
        task_id: str,
        ok: bool,
        metrics: dict[str, Any],
        reason: str,
        seconds: float,
        *,
        retry: bool = True,
    ) -> None:
        """A node finished a task. Reports for tasks no longer running are ignored; a
        failure that would repeat (``retry=False``: bad data, a spec the node refuses, a
        node that lost the job's state) fails the job at once, without further attempts."""
        now = self.book.clock.now()
        self.book.heard(node_id, now)  # before the write lock, as a beat (issue 14 item 3)
        with self.book.tx() as s:
            task = s.get(Task, task_id)
            if task is None or task.node_id != node_id or task.state != "running":
                return
            if ok:
                task.metrics = metrics
                move(task, "succeeded", now)
                job = self.book.job(s, task.job_id)
                steps = copy.deepcopy((job.result or {}).get("steps", {}))
                steps.setdefault(task.step_id, {})[task.party] = {
                    "metrics": metrics,
                    "seconds": round(seconds, 4),
                }
                job.result = {"steps": steps}
            else:
                move(task, "failed", now, reason or "failed without a reason")
                if not retry:
                    self.lifecycle.fail_job(s, self.book.job(s, task.job_id), now,
                                            f"step {task.step_id!r} failed at party "
                                            f"{task.party!r} (not retried): {task.reason}")
            self.lifecycle.advance(s, self.book.job(s, task.job_id), now)

    def _order(self, s: Session, task: Task) -> dict[str, Any]:
        """The task order a node runs ``task`` from (fields of ``control.TaskOrder``)."""
        job = self.book.job(s, task.job_id)
        plan = next(p for p in self.book.plan(job) if p.id == task.step_id)
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
            "channel_timeout_s": self.book.config.channel_timeout_s,
            "step_timeout_s": self.book.config.step_timeout_s,
            "dealer": plan.dealer,
            "spec": spec,
            "approvals": self.signed(s, job),
        }


def _stale(stored: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a stored heartbeat is old enough to be written again."""
    return stored is None or (now - stored).total_seconds() >= _FLUSH_S
