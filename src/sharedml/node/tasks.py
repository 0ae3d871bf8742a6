"""A node's tasks: each order from the platform, checked, run as one step, reported.

The heartbeat (:mod:`sharedml.node.agent`) hands this module the orders its
replies carry and asks it what runs, what finished and which jobs it holds.
Here each task runs on its own thread:

1. the order is checked against the job's spec it carries and, when the spec
   gives this party a dataset, the owner's signed approval
   (:func:`sharedml.node.guard.check_task`) — before anything touches data;
2. a data party's step runs through :func:`sharedml.components.execute` over
   a channel straight to the other parties' nodes (with the party's Ray
   cluster as its compute when ``compute: ray``); a dealer's step serves the
   step's MPC runtimes (:func:`sharedml.components.dealer.helper_step`);
3. the job's working state stays in memory and is sealed to
   ``work_dir/jobs/<job>/state.bin`` after each step
   (:mod:`sharedml.node.job_state`), so a restarted node resumes;
4. the outcome becomes a :class:`~sharedml.control.Report`: public metrics, or
   a failure scrubbed of values and paths (:mod:`sharedml.node.reasons`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharedml.approvals import ApproverKeys
from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.components.dealer import end_step_at_dealer, helper_step
from sharedml.control import DatasetRecord, Report, TaskOrder
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import ConfigError, SharedMLError
from sharedml.modelpart import FileNodeKeys, PartStore
from sharedml.node.cancel import CancellableChannel, TaskCanceled
from sharedml.node.config import NodeConfig
from sharedml.node.guard import check_task
from sharedml.node.job_state import JobState, JobStateFiles
from sharedml.node.metrics import ByteCount, NodeMetrics, TaskRecord
from sharedml.node.reasons import public_failure, public_names
from sharedml.node.registry import NodeRegistry
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.deadline import StepDeadline
from sharedml.transport.grpc import GrpcEndpoint

if TYPE_CHECKING:
    from sharedml.scale.runtime import RayCompute

log = logging.getLogger("sharedml.node")

#: What a job id from the platform may be before it names a folder of the node's.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: How long a dealer task waits for a step's next request (it ends sooner when canceled).
_DEALER_WAIT_S = 7 * 24 * 3600.0


@dataclass
class TaskRun:
    """One task in this node: its order, its cancel flag, its progress and, once done, its report."""

    order: TaskOrder
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    report: Report | None = None
    #: The step's channel, counting bytes per peer (set once the channel is open).
    traffic: ByteCount | None = None


class Tasks:
    """The tasks of one node and the working state of its jobs; safe to call from any thread."""

    def __init__(self, config: NodeConfig, endpoint: GrpcEndpoint, identity: IdentityFiles,
                 metrics: NodeMetrics) -> None:
        self.config, self.endpoint, self.metrics = config, endpoint, metrics
        self._identity = identity
        #: The only data a job step may read: the datasets the node's config registers.
        self.datasets = NodeRegistry(config.datasets, config.work_dir)
        self.approvers = ApproverKeys.from_files(config.approvers)
        #: What the platform learns of them (read once, at start: a bad entry stops the node).
        self.records: list[DatasetRecord] = self.datasets.records()
        self.runs: dict[str, TaskRun] = {}
        self.jobs: dict[str, JobState] = {}
        self.saved = JobStateFiles(config.work_dir)
        self.lock = threading.Lock()
        self._parts: PartStore | None = None

    # -- what the heartbeat asks -----------------------------------------------------
    def start(self, order: TaskOrder) -> None:
        """Run ``order`` on a thread of its own (once: a repeated order is ignored)."""
        with self.lock:
            if order.task_id in self.runs:
                return
            run = self.runs[order.task_id] = TaskRun(order)
        threading.Thread(
            target=self.execute, args=(run,), name=f"task-{order.step_id}", daemon=True
        ).start()

    def finished(self) -> list[tuple[TaskRun, Report]]:
        """The tasks whose report waits to be delivered."""
        with self.lock:
            return [(r, r.report) for r in self.runs.values() if r.report is not None]

    def delivered(self, task_id: str) -> None:
        """The platform acknowledged the task's report: forget the task."""
        with self.lock:
            self.runs.pop(task_id, None)

    def listing(self) -> tuple[dict[str, float], list[str]]:
        """The running tasks' progress, and the jobs whose state the node holds but runs nothing of."""
        with self.lock:
            listed = {tid: r.progress for tid, r in self.runs.items()}
            busy = {r.order.job_id for r in self.runs.values()}
            self.metrics.running.set(sum(r.report is None for r in self.runs.values()))
            return listed, sorted(set(self.jobs) - busy)

    def forget(self, job_ids: list[str]) -> None:
        """Finished jobs: drop their working objects and saved state (their files stay)."""
        with self.lock:
            for job_id in job_ids:
                self.jobs.pop(job_id, None)
                self.saved.forget(job_id)

    def cancel(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            with self.lock:
                canceled = self.runs.get(task_id)
            if canceled is not None:
                canceled.cancel.set()

    def cancel_all(self) -> None:
        with self.lock:
            for run in self.runs.values():
                run.cancel.set()

    # -- one task --------------------------------------------------------------------
    def execute(self, run: TaskRun) -> None:
        """Run the task's step and leave its report on ``run`` (never raises: 8.3-2)."""
        order, party = run.order, self.config.party
        start = time.perf_counter()
        error = ""
        try:
            metrics = self.run_step(run)
            report = Report(task_id=order.task_id, ok=True, metrics=metrics, reason="")
        except Exception as exc:  # bad input must not take the node down (8.3-2)
            # the whole story stays here; the platform gets a code, the step, the party and
            # column names, never a cell value or a local path (issue 14 item 4)
            error = type(exc).__name__
            log.error("node %s: step %s failed:\n%s", party, order.step_id, traceback.format_exc())
            failure = public_failure(exc, party, order.step_id, public_names(order, self.records))
            report = Report(task_id=order.task_id, ok=False, reason=failure.reason(),
                            code=failure.code, retry=failure.retry)
        report.seconds = time.perf_counter() - start
        traffic = run.traffic
        self.metrics.task_done(TaskRecord(
            order.job_id, order.step_id, order.attempt, party, order.component, report.ok,
            report.seconds, dict(traffic.sent) if traffic else {},
            dict(traffic.received) if traffic else {}, error=error))
        run.report = report

    def run_step(self, run: TaskRun) -> dict[str, Any]:
        """Check the order, then run this party's share of its step; the step's public metrics."""
        order, party = run.order, self.config.party
        check_task(order, party, self.approvers)  # before anything touches data (8.3-1)
        if self.config.role == "enclave":
            raise ConfigError(f"enclave node {party!r} was given the {order.step_id!r} task of a party",
                              party=party, step=order.step_id,
                              remedy="an enclave node runs scheme 'tee' jobs only, driven by the platform")
        if order.dealer == party or self.config.role == "dealer":
            return self._run_dealer(run)
        out_dir = self._job_dir(order)  # the job id is checked before any file is touched
        job = self._job(order.job_id)
        missing = sorted(set(order.ancestors) - job.done)
        if missing:
            raise ConfigError(
                f"node {party!r} holds no working state from step(s) {missing} of job "
                f"{order.job_id}", party=party, step=order.step_id,
                remedy="the node restarted mid-job and had no saved state of those steps "
                f"(see its log; {self.saved.path(order.job_id)}); submit the job again",
            )
        component = registry.get(order.component)()
        params = component.parse(order.params, f"steps.{order.step_id}")
        parties = self._parties(order)
        peers = [*parties, *([order.dealer] if order.dealer else [])]
        compute = self._compute()  # before the channel: a cluster it cannot reach fails here
        channel = self._open(order, peers)
        run.traffic = ByteCount(channel)
        try:
            session = Session(party, tuple(peers),
                              _bounded(CancellableChannel(run.traffic, run.cancel), order),
                              dealer=order.dealer or None, compute=compute)
            ctx = StepContext(session, parties[party], parties, job.state, out_dir,
                              order.step_id, self._progress(run), self.datasets,
                              self._part_store())
            result = execute(component, ctx, params)
            if order.dealer and party == list(parties)[-1]:
                end_step_at_dealer(session, order.step_id, order.dealer)
        finally:
            self._close(channel, order)
        job.done.add(order.step_id)
        self.saved.save(order.job_id, job)
        metrics: dict[str, Any] = json.loads(json.dumps(result.metrics, default=_plain))
        if compute is not None:  # public: how much of the step ran on the party's Ray cluster
            metrics["compute"] = compute.counts()
        return metrics

    def _run_dealer(self, run: TaskRun) -> dict[str, Any]:
        """Serve the step's MPC runtimes until its end-of-step marker; public counts only."""
        order, party = run.order, self.config.party
        if order.dealer != party or self.config.role != "dealer":
            raise ConfigError(
                f"node {party!r} ({self.config.role} node) was given the {order.step_id!r} task "
                f"of {'the dealer ' + repr(order.dealer) if order.dealer else 'a data party'}",
                party=party, step=order.step_id,
                remedy="only a node started with role 'dealer' deals, and it runs no party's task",
            )
        data_parties = list(order.parties)
        # No wait limit of its own: the dealer waits as long as the step runs, and the
        # platform cancels its task when the step fails elsewhere.
        channel = self._open(order, [*data_parties, party])
        run.traffic = ByteCount(channel)
        try:
            waiting = _bounded(CancellableChannel(run.traffic, run.cancel, timeout=_DEALER_WAIT_S),
                               order)
            session = Session(party, (*data_parties, party), waiting, dealer=party)
            parties = jobspec.JobSpec.model_validate(
                {"parties": order.parties, "steps": []}).party_configs()
            component = registry.get(order.component)
            params = component.parse(order.params, f"steps.{order.step_id}")
            out_dir = self.config.work_dir / "jobs" / order.job_id
            out_dir.mkdir(parents=True, exist_ok=True)
            done = helper_step(session, order.step_id, order.component, params, parties, out_dir)
        finally:
            self._close(channel, order)
        metrics: dict[str, Any] = json.loads(json.dumps(done["metrics"], default=_plain))
        return metrics

    # -- what a step runs on ----------------------------------------------------------
    def _open(self, order: TaskOrder, peers: list[str]) -> Channel:
        return self.endpoint.channel(
            f"{order.job_id}/{order.step_id}/{order.attempt}", peers, order.peers,
            timeout=order.channel_timeout_s,
        )

    def _close(self, channel: Channel, order: TaskOrder) -> None:
        try:
            channel.close()
        except SharedMLError as exc:
            log.warning("node %s: closing channel of %s: %s", self.config.party, order.step_id, exc)

    def _compute(self) -> RayCompute | None:
        """This party's Ray cluster for a task (``compute: ray``), with the pair on disk now."""
        if self.config.compute.ray is None:
            return None
        from sharedml.scale.runtime import RayCompute

        return RayCompute(self.config.compute.ray, party=self.config.party,
                          identity=self._identity.current())

    def _part_store(self) -> PartStore:
        """This party's model parts, sealed with the node's keys (made on first use)."""
        if self._parts is None:
            work = self.config.work_dir
            keys = FileNodeKeys.open_or_create(self.config.keys_dir or work / "keys")
            self._parts = PartStore(self.config.models_dir or work / "models", keys,
                                    party=self.config.party)
        return self._parts

    def _job(self, job_id: str) -> JobState:
        """The job's working state: in memory, else as saved before a restart, else new."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                job = self.jobs[job_id] = self.saved.load(job_id) or JobState()
                if job.done:
                    log.info("node %s: job %s resumes from its saved state after %s",
                             self.config.party, job_id, sorted(job.done))
            return job

    def _job_dir(self, order: TaskOrder) -> Path:
        """``work_dir/jobs/<job>`` (0700); the job id from the platform is checked first,
        so it never walks out of the work dir."""
        if not _JOB_ID.fullmatch(order.job_id):
            raise ConfigError(f"the platform sent a job id that is not one: {order.job_id[:64]!r}",
                              party=self.config.party, step=order.step_id,
                              remedy="report this to the platform's operator")
        out_dir = self.config.work_dir / "jobs" / order.job_id
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return out_dir

    def _parties(self, order: TaskOrder) -> dict[str, PartyConfig]:
        """The job's parties as its spec names them; this party's dataset must be one
        the node registered (checked before the step starts)."""
        spec = jobspec.JobSpec.model_validate({"parties": order.parties, "steps": []})
        parties = spec.party_configs()
        me = parties.get(self.config.party)
        if me is None:
            raise ConfigError(f"party {self.config.party!r} is not in job {order.job_id}")
        if me.dataset is not None:
            self.datasets.path(me.dataset, party=me.name, step=order.step_id)
        return parties

    def _progress(self, run: TaskRun) -> Any:
        def report(fraction: float, message: str) -> None:
            run.progress = float(fraction)
            if run.cancel.is_set():
                raise TaskCanceled("the platform canceled this task", party=self.config.party,
                                   step=run.order.step_id)

        return report


def _bounded(channel: Channel, order: TaskOrder) -> Channel:
    """The task's channel, its receives ending at the step's timeout (when the order sets one)."""
    if order.step_timeout_s is None:
        return channel
    return StepDeadline(channel, order.step_id, order.step_timeout_s)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise ConfigError(f"a step produced a metric that is not JSON: {type(value).__name__}")
