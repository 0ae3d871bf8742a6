"""The node agent: a data provider's process that runs its party's share of each job.

``sharedml node --config node.yaml`` connects *out* to the platform with the
party's certificate (mutual TLS; the certificate's subject is the party id),
tells it where its party-to-party server listens, then heartbeats. Each reply
may carry tasks to start or cancel. A task runs one step of one job through
:func:`sharedml.components.execute` over a :class:`GrpcChannel` straight to
the other parties' nodes — the platform never relays party traffic.

The party's working state (aligned frame, split, model part) stays in this
process between steps, and its files in ``work_dir/jobs/<job>``; neither is
ever sent anywhere. Only progress, public metrics and failure reasons go to
the platform. A finished task's report is retried until the platform
acknowledges it, so a platform restart loses no result. After each step the
state is also sealed to the node's own disk (:mod:`sharedml.node.job_state`):
a node restarted mid-job *resumes* — the step it died in fails on every party
and its retry, and the steps after it, run on the saved state. A task whose
earlier steps' state the node holds neither in memory nor on disk fails with
that reason instead of running on nothing.

**A dealer node** (``role: dealer`` in the config, or ``sharedml node
--dealer``; its identity is its certificate's subject, e.g. ``dealer``) holds
no datasets. The platform gives it one dealer task per step whose roles name
the dealer (a step that opens dealt MPC runtimes or learns horizontally); it
aggregates a horizontal
step (:mod:`sharedml.components.horizontal`) and serves the step's MPC
runtimes (:func:`sharedml.components.dealer.helper_step`) until the last data
party's end-of-step marker, which that party's node sends after the step. What it
sees: the correlated randomness it made itself and the number and shapes of
the requests — never a row, a label, a share of one or a model part; it
reports public counts only. It waits for requests as long as the step runs
(the platform cancels its task when the step fails elsewhere). It must not
collude with a data party.

Config (YAML; relative paths are relative to the file)::

    party: bank                     # must equal the certificate's subject
    platform: 127.0.0.1:7443        # the platform's node service
    pki_dir: ../pki                 # holds bank.pem, bank.key, ca.pem (and crl.pem)
    listen: 0.0.0.0:7000            # this node's party-to-party server binds here
    advertise: bank.example.com:7000   # and its peers dial this (node/addresses.py)
    work_dir: work
    datasets: {bank_customers: data/bank.csv}   # or Parquet, or a SQL table (node/registry.py)
    approvers: {alice: keys/alice.pub}          # the party's owners' approval keys
    audit_checkpoint_key: pki/platform-audit.pem  # or sha256:...: the platform's checkpoint key
    role: party                     # or dealer (then no datasets)
    keys_dir: keys                  # node keys (made on first start, 0600); default work_dir/keys
    models_dir: models              # sealed model parts; default work_dir/models

**An enclave node** (``role: enclave``, :mod:`sharedml.node.enclave_host`)
holds no datasets and runs no task: it keeps a service enclave running on
its TEE host and says hello with the enclave's RA-TLS address; the platform
attests that enclave and runs ``scheme: tee`` jobs in it.

**Before any task runs** the node checks the order against the job's spec it
carries and, when the spec gives this party a dataset, the owner's signed
approval of that spec (:mod:`sharedml.node.guard`, :mod:`sharedml.approvals`):
the approver keys come from this config, never from the platform, so a
compromised platform cannot make the node read data. At hello the node tells
the platform its datasets' names, schemas and row counts
(:mod:`sharedml.node.registry`).

Model parts: a ``train`` step seals this party's part under the node's key in
``models_dir`` (:mod:`sharedml.modelpart`); a batch ``predict: {model: ...}``
loads it from there. The platform learns the part's uid and fingerprint only.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from sharedml.approvals import ApproverKeys
from sharedml.components import PartyConfig, StepContext, execute, jobspec, registry
from sharedml.components.dealer import end_step_at_dealer, helper_step
from sharedml.control import (
    SERVICE,
    Ack,
    AuditCheckpoint,
    Beat,
    BeatReply,
    Hello,
    HelloReply,
    Report,
    TaskOrder,
    Wire,
    decode,
)
from sharedml.crypto import crl, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import ConfigError, PeerUnreachable, SharedMLError
from sharedml.modelpart import FileNodeKeys, PartStore
from sharedml.mpc.memory import keep_freed_memory
from sharedml.node.addresses import AddressPlan, HostPort
from sharedml.node.cancel import CancellableChannel, TaskCanceled
from sharedml.node.checkpoints import NodeCheckpoints
from sharedml.node.config import NodeConfig
from sharedml.node.enclave_host import EnclaveHost
from sharedml.node.guard import check_task
from sharedml.node.job_state import JobState, JobStateFiles
from sharedml.node.metrics import ByteCount, NodeMetrics, TaskRecord
from sharedml.node.reasons import public_failure
from sharedml.node.registry import NodeRegistry
from sharedml.node.stats import ProcessStats
from sharedml.session import Session
from sharedml.telemetry.http import HealthServer
from sharedml.transport import tls
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
class _Run:
    order: TaskOrder
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    report: Report | None = None
    #: The step's channel, counting bytes per peer (set once the channel is open).
    traffic: ByteCount | None = None


class Agent:
    """One party's node: a peer server, a platform connection, and running tasks."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        # the pair on disk at each new connection: a rotated one needs no restart
        self._identity = IdentityFiles(config.pki_dir, config.party)
        ca_pem = self._identity.current().ca_pem
        if pki.party_of(self._identity.current().cert_pem) != config.party:
            raise ConfigError(
                f"the certificate in {config.pki_dir} does not name party {config.party!r}",
                remedy=f"make one with 'sharedml pki request {config.pki_dir} {config.party}'",
            )
        #: The platform's signed audit heads this node was sent (9.3), under the key
        #: node.yaml pins (checked before anything listens).
        self.checkpoints = NodeCheckpoints(config.work_dir, config.party, config.checkpoint_pin())
        self.checkpoints.check_pin()
        self._revocation = (
            crl.in_folder(config.pki_dir, ca_pem)
            if config.crl is None
            else crl.RevocationFile(config.crl, ca_pem)
        )
        plan = AddressPlan.check(config.listen, config.advertise, party=config.party)
        self.endpoint = GrpcEndpoint(
            self._identity, str(plan.listen).rpartition(":")[0], plan.listen.port,
            revocation=self._revocation,
        )
        #: What the platform hands this node's peers (an enclave node: its enclave's address).
        self.advertised = plan.advertised(int(self.endpoint.address.rpartition(":")[2]))
        self._enclave = None if config.enclave is None else EnclaveHost(
            config.enclave, config.work_dir, pki_dir=config.pki_dir, name=config.party)
        self._platform: grpc.Channel | None = None
        self._platform_generation = -1
        self.heartbeat_s = config.heartbeat_s
        #: The only data a job step may read: the datasets the node's config registers.
        self._datasets = NodeRegistry(config.datasets, config.work_dir)
        self._approvers = ApproverKeys.from_files(config.approvers)
        #: What the platform learns of them (read once, at start: a bad entry stops the node).
        self._records = self._datasets.records()
        self._parts: PartStore | None = None
        self.boot = uuid.uuid4().hex
        self._stats = ProcessStats()
        self._runs: dict[str, _Run] = {}
        self._jobs: dict[str, JobState] = {}
        self._saved = JobStateFiles(config.work_dir)
        self._lock = threading.Lock()
        self._greeted = False
        self._looping = False
        self.metrics = NodeMetrics(config.party, config.work_dir)
        self._health = None if config.metrics is None else self._serve_metrics(config.metrics)

    def _compute(self) -> RayCompute | None:
        """This party's Ray cluster for a task (``compute: ray``), with the pair on disk now."""
        if self.config.compute.ray is None:
            return None
        from sharedml.scale.runtime import RayCompute

        return RayCompute(self.config.compute.ray, party=self.config.party,
                          identity=self._identity.current())

    # -- the loop ------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Heartbeat until ``stop`` is set; survives a platform that comes and goes."""
        log.info("node %s serving peers at %s (advertised as %s)", self.config.party,
                 self.endpoint.address, self.advertised)
        down = False
        self._looping = True
        while not stop.is_set():
            try:
                self.step()
                self.metrics.beat(True)
                if down:
                    log.info("node %s: platform %s is back", self.config.party, self.config.platform)
                down = False
            except (grpc.RpcError, PeerUnreachable) as exc:  # down, refused, or revoked
                self._greeted = False
                self._drop_platform()
                self.metrics.beat(False)
                if not down:
                    log.warning("node %s: platform %s unreachable (retrying every %g s): %s",
                                self.config.party, self.config.platform, self.heartbeat_s,
                                exc.details() if isinstance(exc, grpc.Call) else exc)
                down = True
            except SharedMLError as exc:  # a reply this node cannot use: say so, keep going
                log.error("node %s: %s", self.config.party, exc)
            stop.wait(self.heartbeat_s)
        self._looping = False
        for run in self._runs.values():
            run.cancel.set()

    def step(self) -> None:
        """One round: say hello if needed, deliver finished reports, heartbeat, act."""
        if self._enclave is not None:
            self._watch_enclave()
        if not self._greeted:
            hello = Hello(address=self.advertised, boot=self.boot, role=self.config.role,
                          datasets=self._records)
            reply = self._call("Hello", hello, HelloReply)
            self.heartbeat_s = min(self.heartbeat_s, reply.heartbeat_s)
            self._greeted = True
        for run, report in self._finished():
            self._call("Report", report, Ack)
            with self._lock:
                self._runs.pop(run.order.task_id, None)
        with self._lock:
            listed = {tid: r.progress for tid, r in self._runs.items()}
            busy = {r.order.job_id for r in self._runs.values()}
            self.metrics.running.set(sum(r.report is None for r in self._runs.values()))
            held = sorted(set(self._jobs) - busy)
        beat = self._call("Beat", Beat(running=listed, jobs=held, stats=self._stats.sample()),
                          BeatReply)
        with self._lock:
            for job_id in beat.forget:  # finished jobs: drop their working objects (files stay)
                self._jobs.pop(job_id, None)
                self._saved.forget(job_id)
        for task_id in beat.cancel:
            with self._lock:
                canceled = self._runs.get(task_id)
            if canceled is not None:
                canceled.cancel.set()
        for order in beat.orders:
            self._start(order)
        if beat.checkpoint is not None:  # the platform's audit head: keep it, or raise alarm
            self._keep_checkpoint(beat.checkpoint)

    def _keep_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        try:
            self.checkpoints.receive(checkpoint)
        except (OSError, SharedMLError) as exc:  # a full disk, a damaged file: tasks go on
            log.error("node %s: audit checkpoint not kept in %s: %s", self.config.party,
                      self.checkpoints.path, exc)

    def _watch_enclave(self) -> None:
        """An enclave node: its enclave runs; a new one (new address) is a new boot to the platform."""
        assert self._enclave is not None
        address = self._enclave.ensure()
        if address != self.advertised:
            self.advertised, self.boot, self._greeted = address, uuid.uuid4().hex, False

    def close(self) -> None:
        self._drop_platform()
        if self._enclave is not None:
            self._enclave.close()
        self.endpoint.close(grace=0.5)
        if self._health is not None:
            self._health.close()

    def _serve_metrics(self, address: str) -> HealthServer:
        """/metrics, /healthz (the loop runs) and /readyz (the platform knows this node)."""
        where = HostPort.parse(address, "metrics", party=self.config.party)
        server = HealthServer(where.host, where.port, self.metrics.registry,
                              alive=lambda: self._looping, ready=lambda: self._greeted)
        log.info("node %s: metrics, health and readiness on http://%s:%d", self.config.party,
                 where.host, server.port)
        return server

    def _call(self, method: str, msg: Wire, reply: type[Any]) -> Any:
        call = self._platform_channel().unary_unary(f"/{SERVICE}/{method}")
        return decode(reply, call(msg.encode(), timeout=10.0))

    def _platform_channel(self) -> grpc.Channel:
        """The connection to the platform, made anew after this node's pair rotated or the
        connection failed (the platform may serve a rotated certificate; with a revocation
        list it is checked and pinned again, :func:`sharedml.transport.tls.dial`)."""
        identity = self._identity.current()
        if self._platform is None or self._platform_generation != self._identity.generation:
            if self._platform_generation not in (-1, self._identity.generation):
                self._greeted = False  # say hello again: the platform records the new pair
            self._drop_platform()
            self._platform = tls.dial(
                identity, self.config.platform_name, self.config.platform, self._revocation
            )
            self._platform_generation = self._identity.generation
        return self._platform

    def _drop_platform(self) -> None:
        if self._platform is not None:
            self._platform.close()
            self._platform = None

    def _finished(self) -> list[tuple[_Run, Report]]:
        with self._lock:
            return [(r, r.report) for r in self._runs.values() if r.report is not None]

    def _part_store(self) -> PartStore:
        """This party's model parts, sealed with the node's keys (made on first use)."""
        if self._parts is None:
            work = self.config.work_dir
            keys = FileNodeKeys.open_or_create(self.config.keys_dir or work / "keys")
            self._parts = PartStore(self.config.models_dir or work / "models", keys,
                                    party=self.config.party)
        return self._parts

    # -- tasks ---------------------------------------------------------------------
    def _start(self, order: TaskOrder) -> None:
        with self._lock:
            if order.task_id in self._runs:
                return
            run = self._runs[order.task_id] = _Run(order)
        threading.Thread(
            target=self._execute, args=(run,), name=f"task-{order.step_id}", daemon=True
        ).start()

    def _execute(self, run: _Run) -> None:
        order, party = run.order, self.config.party
        start = time.perf_counter()
        error = ""
        try:
            metrics = self._run_step(run)
            report = Report(task_id=order.task_id, ok=True, metrics=metrics, reason="")
        except Exception as exc:  # bad input must not take the node down (8.3-2)
            # the whole story stays here; the platform gets a code, the step, the party and
            # column names, never a cell value or a local path (issue 14 item 4)
            error = type(exc).__name__
            log.error("node %s: step %s failed:\n%s", party, order.step_id, traceback.format_exc())
            failure = public_failure(exc, party, order.step_id, self._public_names(order))
            report = Report(task_id=order.task_id, ok=False, reason=failure.reason(),
                            code=failure.code, retry=failure.retry)
        report.seconds = time.perf_counter() - start
        traffic = run.traffic
        self.metrics.task_done(TaskRecord(
            order.job_id, order.step_id, order.attempt, party, order.component, report.ok,
            report.seconds, dict(traffic.sent) if traffic else {},
            dict(traffic.received) if traffic else {}, error=error))
        run.report = report

    def _public_names(self, order: TaskOrder) -> set[str]:
        """Names the platform already knows: its datasets' columns, the job's parties,
        datasets, labels, id columns, steps and components."""
        names = {c.name for r in self._records for c in r.columns} | {r.name for r in self._records}
        for name, p in order.parties.items():
            names.add(name)
            names.update(str(v) for k, v in p.items() if k in ("dataset", "label") and v)
            ids = p.get("id", "id")
            names.update([ids] if isinstance(ids, str) else map(str, ids))
        for step in (order.spec or {}).get("steps", []):
            if isinstance(step, dict):
                names.update(str(k) for k in step)
                names.add(str(step.get("id", "")))
        names.update({order.step_id, order.component, *order.peers})
        names.discard("")
        return names

    def _run_step(self, run: _Run) -> dict[str, Any]:
        order, party = run.order, self.config.party
        check_task(order, party, self._approvers)  # before anything touches data (8.3-1)
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
                f"(see its log; {self._saved.path(order.job_id)}); submit the job again",
            )
        component = registry.get(order.component)()
        params = component.parse(order.params, f"steps.{order.step_id}")
        parties = self._parties(order)
        peers = [*parties, *([order.dealer] if order.dealer else [])]
        compute = self._compute()  # before the channel: a cluster it cannot reach fails here
        channel = self.endpoint.channel(
            f"{order.job_id}/{order.step_id}/{order.attempt}", peers, order.peers,
            timeout=order.channel_timeout_s,
        )
        run.traffic = ByteCount(channel)
        try:
            session = Session(party, tuple(peers),
                              _bounded(CancellableChannel(run.traffic, run.cancel), order),
                              dealer=order.dealer or None, compute=compute)
            out_dir = self._job_dir(order)
            ctx = StepContext(session, parties[party], parties, job.state, out_dir,
                              order.step_id, self._progress(run), self._datasets,
                              self._part_store())
            result = execute(component, ctx, params)
            if order.dealer and party == list(parties)[-1]:
                end_step_at_dealer(session, order.step_id, order.dealer)
        finally:
            try:
                channel.close()
            except SharedMLError as exc:
                log.warning("node %s: closing channel of %s: %s", party, order.step_id, exc)
        job.done.add(order.step_id)
        self._saved.save(order.job_id, job)
        metrics: dict[str, Any] = json.loads(json.dumps(result.metrics, default=_plain))
        if compute is not None:  # public: how much of the step ran on the party's Ray cluster
            metrics["compute"] = compute.counts()
        return metrics

    def _job(self, job_id: str) -> JobState:
        """The job's working state: in memory, else as saved before a restart, else new."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                job = self._jobs[job_id] = self._saved.load(job_id) or JobState()
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

    def _run_dealer(self, run: _Run) -> dict[str, Any]:
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
        channel = self.endpoint.channel(
            f"{order.job_id}/{order.step_id}/{order.attempt}", [*data_parties, party],
            order.peers, timeout=order.channel_timeout_s,
        )
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
            try:
                channel.close()
            except SharedMLError as exc:
                log.warning("node %s: closing channel of %s: %s", party, order.step_id, exc)
        metrics: dict[str, Any] = json.loads(json.dumps(done["metrics"], default=_plain))
        return metrics

    def _parties(self, order: TaskOrder) -> dict[str, PartyConfig]:
        """The job's parties as its spec names them; this party's dataset must be one
        the node registered (checked before the step starts)."""
        spec = jobspec.JobSpec.model_validate({"parties": order.parties, "steps": []})
        parties = spec.party_configs()
        me = parties.get(self.config.party)
        if me is None:
            raise ConfigError(f"party {self.config.party!r} is not in job {order.job_id}")
        if me.dataset is not None:
            self._datasets.path(me.dataset, party=me.name, step=order.step_id)
        return parties

    def _progress(self, run: _Run) -> Any:
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


def serve(
    config_path: str | Path, stop: threading.Event | None = None, *, dealer: bool = False
) -> None:
    """Run a node agent from its config file until ``stop`` is set, SIGTERM or SIGINT.

    ``dealer`` starts it as a dealer node whatever the config's ``role`` says.
    """
    stop = stop or threading.Event()
    config = NodeConfig.load(config_path)
    if dealer and config.role != "dealer":
        if config.datasets:
            raise ConfigError(f"node {config.party!r}: a dealer node holds no datasets",
                              remedy=f"remove 'datasets:' from {config_path}")
        config.role = "dealer"
    if threading.current_thread() is threading.main_thread():
        keep_freed_memory()  # the agent's own process: reuse freed arrays (sharedml.mpc.memory)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    agent = Agent(config)
    try:
        agent.run(stop)
    finally:
        agent.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(sys.argv[1])
