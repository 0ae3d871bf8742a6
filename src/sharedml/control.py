"""The control wire between node agents and the platform: messages and their codec.

Both sides import this module — the node agent (``sharedml.node.agent``, a
data provider's process) and the platform's node service
(``sharedml.platform.nodes``) — so neither reaches into the other's layer: a
data provider's process never loads the operator's database layer.

Three unary calls on :data:`SERVICE`, each a JSON message checked against a
typed, versioned schema (never pickle, STYLE.md 11)::

    /sharedml.platform.v1.Nodes/Hello   Hello  -> HelloReply   once per connection
    /sharedml.platform.v1.Nodes/Beat    Beat   -> BeatReply    every heartbeat_s
    /sharedml.platform.v1.Nodes/Report  Report -> Ack          a task finished

What crosses this wire is metadata: task orders, progress, public metrics and
failure reasons — never rows, labels or shares. Each heartbeat reply also
carries the platform's newest signed checkpoint of its audit log
(:class:`AuditCheckpoint`), which the node keeps (``node/checkpoints.py``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sharedml.approvals import SignedApproval
from sharedml.errors import ConfigError

SERVICE = "sharedml.platform.v1.Nodes"


class Wire(BaseModel):
    """Base of every message: version 1, unknown fields refused."""

    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class ColumnRecord(Wire):
    name: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=32)


class DatasetRecord(Wire):
    """One dataset of the node's registry as the platform may know it: never a row."""

    name: str = Field(min_length=1, max_length=128)
    columns: list[ColumnRecord] = Field(default_factory=list, max_length=10000)
    rows: int | None = Field(None, ge=0)


class Hello(Wire):
    #: Where this node's party-to-party server listens ("host:port").
    address: str = Field(min_length=3, max_length=255)
    #: This agent process's random id: a new one means the node restarted.
    boot: str = Field("", max_length=64)
    #: ``party`` (runs its party's tasks), ``dealer`` (deals MPC randomness, holds no
    #: data) or ``enclave`` (hosts a service enclave for ``scheme: tee`` jobs; ``address``
    #: is the enclave's RA-TLS endpoint); registered at the node's first hello.
    role: Literal["party", "dealer", "enclave"] = "party"
    #: The datasets this node's operator registered (name, schema, rows): the platform's
    #: dataset records for this party come from here, not from a user's claim.
    datasets: list[DatasetRecord] = Field(default_factory=list, max_length=1000)


class HelloReply(Wire):
    node: str
    heartbeat_s: float


class NodeStats(Wire):
    """The node agent's own process, for the operator's view (console's nodes page)."""

    version: str = Field("", max_length=32)
    #: Process CPU time over wall time since the previous heartbeat, percent of one core.
    cpu_percent: float = Field(0.0, ge=0.0, le=100_000.0)
    rss_mb: float = Field(0.0, ge=0.0)
    load1: float = Field(0.0, ge=0.0)


class Beat(Wire):
    #: Task id -> progress in [0, 1] for every task the node runs or has not yet reported.
    running: dict[str, float] = Field(default_factory=dict)
    #: Jobs whose working state the node holds between steps.
    jobs: list[str] = Field(default_factory=list, max_length=10000)
    #: The agent's version, CPU and memory (absent from older agents).
    stats: NodeStats | None = None
    #: Why the node takes no new task ("" while it does): a refused audit checkpoint
    #: its operator has not resolved (:meth:`sharedml.node.checkpoints.NodeCheckpoints.halted`).
    halted: str = Field("", max_length=2000)


class TaskOrder(Wire):
    task_id: str
    job_id: str
    step_id: str
    component: str
    params: dict[str, Any]
    attempt: int
    #: Every step this one depends on, transitively: the node must hold their state.
    ancestors: list[str]
    #: The spec's parties section (dataset names, labels, id columns): public metadata.
    parties: dict[str, dict[str, Any]]
    #: Party -> its node's party-to-party address (the step's dealer included).
    peers: dict[str, str]
    channel_timeout_s: float
    #: Seconds the whole step may take at the node (``None``: no limit beyond each
    #: receive's ``channel_timeout_s``); past it the task fails naming the step.
    step_timeout_s: float | None = Field(None, gt=0)
    #: The dealer node serving this step (a job with a secret-shared step), else ``None``.
    dealer: str | None = None
    #: The job's spec as stored: the node checks the fields above against it and the
    #: owners' approvals against its hash (:mod:`sharedml.approvals`).
    spec: dict[str, Any] | None = None
    #: Every signed approval of the job (one per dataset); the node checks its own.
    approvals: list[SignedApproval] = Field(default_factory=list, max_length=1000)


class AuditCheckpoint(Wire):
    """The platform's signature over its audit log's head (``sharedml.checkpoints``)
    and the public key it verifies with (the node pins the first it is sent)."""

    seq: int = Field(ge=0)
    head: str = Field(min_length=64, max_length=64)
    ts: str = Field(min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=200)
    mac_from: int = Field(0, ge=0)
    public_key: str = Field(min_length=1, max_length=1000)


class BeatReply(Wire):
    orders: list[TaskOrder] = Field(default_factory=list)
    cancel: list[str] = Field(default_factory=list)
    #: Jobs that finished: the node may drop their working state.
    forget: list[str] = Field(default_factory=list)
    #: The newest signed checkpoint of the platform's audit log, for the node to keep.
    checkpoint: AuditCheckpoint | None = None


class Report(Wire):
    task_id: str
    ok: bool
    metrics: dict[str, Any] = Field(default_factory=dict)
    #: A failure as it may leave the node: code, party, step, column names — never a
    #: cell value or a local path (:mod:`sharedml.node.reasons`).
    reason: str = Field("", max_length=4000)
    seconds: float = 0.0
    #: The failure's code (``data``, ``config``, ``peer_timeout``, ``internal``...).
    code: str = Field(default="", max_length=32)
    #: Whether the step may succeed when run again (bad data or a lost state will not).
    retry: bool = True


class Ack(Wire):
    ok: bool = True


M = TypeVar("M", bound=Wire)


def decode(kind: type[M], raw: bytes) -> M:
    """Parse one message; a malformed one is a :class:`ConfigError` naming the field."""
    try:
        return kind.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        raise ConfigError(f"malformed {kind.__name__} message: {where}: {first['msg']}") from None
