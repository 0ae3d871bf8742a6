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

This module is the node's heartbeat loop; the tasks it starts run in
:mod:`sharedml.node.tasks`, its calls to the platform go through
:mod:`sharedml.node.platform_link`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc

from sharedml.approvals import ApproverKeys
from sharedml.control import Ack, AuditCheckpoint, Beat, BeatReply, Hello, HelloReply, Wire
from sharedml.crypto import crl, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import ConfigError, PeerUnreachable, SharedMLError
from sharedml.mpc.memory import keep_freed_memory
from sharedml.node.addresses import AddressPlan, HostPort
from sharedml.node.checkpoints import NodeCheckpoints
from sharedml.node.config import NodeConfig
from sharedml.node.enclave_host import EnclaveHost
from sharedml.node.job_state import JobState
from sharedml.node.metrics import NodeMetrics
from sharedml.node.platform_link import PlatformLink
from sharedml.node.registry import NodeRegistry
from sharedml.node.stats import ProcessStats
from sharedml.node.tasks import TaskRun, Tasks
from sharedml.telemetry.http import HealthServer
from sharedml.transport.grpc import GrpcEndpoint

__all__ = ["Agent", "NodeConfig", "serve"]

log = logging.getLogger("sharedml.node")

#: The name tests and older callers know a task by (:class:`sharedml.node.tasks.TaskRun`).
_Run = TaskRun


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
        revocation = (
            crl.in_folder(config.pki_dir, ca_pem)
            if config.crl is None
            else crl.RevocationFile(config.crl, ca_pem)
        )
        plan = AddressPlan.check(config.listen, config.advertise, party=config.party)
        self.endpoint = GrpcEndpoint(
            self._identity, str(plan.listen).rpartition(":")[0], plan.listen.port,
            revocation=revocation,
        )
        #: What the platform hands this node's peers (an enclave node: its enclave's address).
        self.advertised = plan.advertised(int(self.endpoint.address.rpartition(":")[2]))
        self._enclave = None if config.enclave is None else EnclaveHost(config.enclave, config.work_dir)
        self._platform = PlatformLink(self._identity, config.platform_name, config.platform,
                                      revocation, on_new_pair=self._forget_greeting)
        self.heartbeat_s = config.heartbeat_s
        self.boot = uuid.uuid4().hex
        self._stats = ProcessStats()
        self._greeted = False
        self._looping = False
        self.metrics = NodeMetrics(config.party, config.work_dir)
        #: This node's tasks and its jobs' working state (sharedml.node.tasks).
        self.tasks = Tasks(config, self.endpoint, self._identity, self.metrics)
        self._health = None if config.metrics is None else self._serve_metrics(config.metrics)

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
                self._platform.drop()
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
        self.tasks.cancel_all()

    def step(self) -> None:
        """One round: say hello if needed, deliver finished reports, heartbeat, act."""
        if self._enclave is not None:
            self._watch_enclave()
        if not self._greeted:
            hello = Hello(address=self.advertised, boot=self.boot, role=self.config.role,
                          datasets=self.tasks.records)
            reply = self._call("Hello", hello, HelloReply)
            self.heartbeat_s = min(self.heartbeat_s, reply.heartbeat_s)
            self._greeted = True
        for run, report in self.tasks.finished():
            self._call("Report", report, Ack)
            self.tasks.delivered(run.order.task_id)
        listed, held = self.tasks.listing()
        beat = self._call("Beat", Beat(running=listed, jobs=held, stats=self._stats.sample()),
                          BeatReply)
        self.tasks.forget(beat.forget)  # finished jobs: drop their working objects (files stay)
        self.tasks.cancel(beat.cancel)
        for order in beat.orders:
            self.tasks.start(order)
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

    def _forget_greeting(self) -> None:
        self._greeted = False

    def close(self) -> None:
        self._platform.drop()
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
        return self._platform.call(method, msg, reply)

    # -- the task side, by the names tests reach for ------------------------------------
    @property
    def _runs(self) -> dict[str, TaskRun]:
        return self.tasks.runs

    @property
    def _jobs(self) -> dict[str, JobState]:
        return self.tasks.jobs

    @property
    def _datasets(self) -> NodeRegistry:
        return self.tasks.datasets

    @_datasets.setter
    def _datasets(self, registry: NodeRegistry) -> None:  # a test's spy on what a step reads
        self.tasks.datasets = registry

    @property
    def _approvers(self) -> ApproverKeys:
        return self.tasks.approvers

    def _run_step(self, run: TaskRun) -> dict[str, Any]:
        return self.tasks.run_step(run)


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
