"""The platform's ``/metrics``, ``/healthz`` and ``/readyz`` (issue 13 item 7).

Read from the store and the scheduler at each scrape (nothing is counted
twice after a restart): jobs and tasks by state, each node's heartbeat age
and whether it is online, and for each running job how long its running
tasks have been silent beside its timeout (the alert rule
``SharedmlJobStuck`` compares the two, ``deploy``'s ``alerts.yml``). Task
durations are observed as nodes report them; CPU and memory of the process
come from :mod:`sharedml.telemetry.process`. Everything here is metadata the
platform already holds (§7 of docs/architecture.md): ids, states, counts and
times — no metric carries a dataset's value or a model's.

``/healthz``: the process serves. ``/readyz``: the database answers and the
scheduler loop has ticked within the last 30 s (``Ticks``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from sharedml.platform.store.models import Job, Node, Task
from sharedml.telemetry.process import ProcessCollector

JOB_STATES = ("pending", "running", "succeeded", "failed", "canceled")
_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Ticks:
    """When the scheduler loop last completed a tick (monotonic seconds)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def tick(self) -> None:
        self.last = time.monotonic()

    def fresh(self, within_s: float = 30.0) -> bool:
        return time.monotonic() - self.last <= within_s


class PlatformMetrics:
    """The platform's registry: the store collector, task durations, this process."""

    def __init__(self, scheduler: Any, heartbeat_s: float = 1.0) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Ticks()
        self.scheduler = scheduler
        self.task_seconds = Histogram("sharedml_task_seconds",
                                      "task durations as nodes report them", ["party"],
                                      buckets=_SECONDS, registry=self.registry)
        self.registry.register(_StoreCollector(scheduler, heartbeat_s))
        self.registry.register(ProcessCollector("platform"))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def ready(self) -> tuple[bool, str]:
        """Whether the database answers and the scheduler ticks, with the reason if not."""
        try:
            with self.scheduler.book.store.session() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means not ready
            return False, f"database: {type(exc).__name__}"
        if not self.ticks.fresh():
            return False, "the scheduler loop has not ticked for 30 s"
        return True, "ok"


class _StoreCollector(Collector):
    def __init__(self, scheduler: Any, heartbeat_s: float) -> None:
        self.scheduler = scheduler
        self.heartbeat_s = heartbeat_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        book = self.scheduler.book
        now = book.clock.now()
        with book.store.session() as s:
            jobs = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            tasks = dict(s.execute(select(Task.state, func.count()).group_by(Task.state)).all())
            nodes = s.scalars(select(Node)).all()
            running = s.execute(
                select(Job.id, Job.timeout_s, Task.id, Task.heartbeat_at, Task.started_at)
                .join(Task, Task.job_id == Job.id)
                .where(Job.state == "running", Task.state == "running")
            ).all()
            node_rows = [(n.id, n.status, book.last(n.id, n.last_heartbeat)) for n in nodes]
        yield _by_state("sharedml_jobs", "jobs by state", jobs, JOB_STATES)
        yield _by_state("sharedml_tasks", "tasks by state", tasks, JOB_STATES)
        age = GaugeMetricFamily("sharedml_node_heartbeat_age_seconds",
                                "seconds since each node's last heartbeat", labels=["node"])
        online = GaugeMetricFamily("sharedml_node_online", "1 if the node is online",
                                   labels=["node"])
        for node_id, status, last in node_rows:
            if last is not None:
                age.add_metric([node_id], (now - _naive(last, now)).total_seconds())
            online.add_metric([node_id], 1.0 if status == "online" else 0.0)
        yield age
        yield online
        yield GaugeMetricFamily("sharedml_node_heartbeat_interval_seconds",
                                "the heartbeat period nodes are told", value=self.heartbeat_s)
        silence = GaugeMetricFamily("sharedml_job_silence_seconds",
                                    "seconds since a running job's tasks last beat",
                                    labels=["job_id"])
        timeout = GaugeMetricFamily("sharedml_job_timeout_seconds",
                                    "a running job's task timeout", labels=["job_id"])
        latest: dict[str, Any] = {}
        for job_id, timeout_s, task_id, beat, started in running:
            # a task's last beat: in the scheduler's memory, or as last flushed to the store
            last = book.last(task_id, beat or started)
            if last is not None:
                last = _naive(last, now)
                latest[job_id] = max(latest.get(job_id, last), last)
            limit = float(timeout_s or self.scheduler.config.task_timeout_s)
            if job_id not in {m.labels["job_id"] for m in timeout.samples}:
                timeout.add_metric([job_id], limit)
        for job_id, last in latest.items():
            silence.add_metric([job_id], (now - last).total_seconds())
        yield silence
        yield timeout


def _by_state(name: str, doc: str, counts: dict[str, int], states: tuple[str, ...]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in sorted(set(states) | set(counts)):
        family.add_metric([state], float(counts.get(state, 0)))
    return family


def _naive(stamp: Any, now: Any) -> Any:
    """Compare like with like: the store may give naive UTC stamps (SQLite)."""
    if stamp.tzinfo is None and now.tzinfo is not None:
        return stamp.replace(tzinfo=now.tzinfo)
    if stamp.tzinfo is not None and now.tzinfo is None:
        return stamp.replace(tzinfo=None)
    return stamp
