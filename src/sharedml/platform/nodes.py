"""The platform's gRPC service for node agents (mutual TLS; identity = certificate).

Node agents connect *out* to the platform (``sharedml node``); the platform
never dials a node. Three unary calls, each a JSON message of
:mod:`sharedml.control` (the wire both sides import)::

    /sharedml.platform.v1.Nodes/Hello   Hello  -> HelloReply   once per connection
    /sharedml.platform.v1.Nodes/Beat    Beat   -> BeatReply    every heartbeat_s
    /sharedml.platform.v1.Nodes/Report  Report -> Ack          a task finished

A heartbeat lists the tasks the node runs, with their progress; the reply
says which tasks to start (:class:`~sharedml.control.TaskOrder`) and which to cancel. Who the
node is comes only from its verified client certificate (subject common name,
chained to the deployment CA); a node may only run and report its own party's
tasks; with a revocation list, a node whose certificate is on it is refused
every call (``UNAUTHENTICATED``), from the list's next change on, without a
restart. The service's own certificate may be rotated
(:class:`~sharedml.crypto.identity.IdentityFiles`): new connections get the
new one. A dealer node (``role: dealer``) says so in its hello; it is given the
dealer tasks of secret-shared jobs and reports public counts only. What
crosses this service is metadata: task orders, progress, public metrics and
failure reasons — never rows, labels or shares — and, in every heartbeat
reply, the audit log's signed head (:class:`CheckpointFeed`), which nodes keep.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc

from sharedml import control
from sharedml.control import Wire
from sharedml.crypto.crl import RevocationFile
from sharedml.crypto.pki import party_of
from sharedml.errors import AuthError, ConfigError, SharedMLError
from sharedml.platform.audit_checkpoints import CheckpointFeed
from sharedml.platform.metrics import PlatformMetrics
from sharedml.platform.scheduler import Scheduler
from sharedml.transport import tls

log = logging.getLogger("sharedml.platform.nodes")


class NodeService:
    """Serves node agents on ``host:port`` with mutual TLS, backed by a :class:`Scheduler`."""

    def __init__(
        self,
        scheduler: Scheduler,
        identity: tls.IdentitySource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_s: float = 1.0,
        revocation: RevocationFile | None = None,
        metrics: PlatformMetrics | None = None,
        checkpoints: CheckpointFeed | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.checkpoints = checkpoints
        self.heartbeat_s = heartbeat_s
        self.revocation = revocation
        #: Why each node last said it takes no new task ("" when it takes tasks).
        self._halted: dict[str, str] = {}
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="nodes"))
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(self._wrap(fn))
            for name, fn in (("Hello", self._hello), ("Beat", self._beat), ("Report", self._report))
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(control.SERVICE, handlers),)
        )
        self.host = host
        self.port = self._server.add_secure_port(f"{host}:{port}", tls.server_credentials(identity))
        if self.port == 0:
            raise ConfigError(f"the platform could not listen for nodes on {host}:{port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> NodeService:
        self._server.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    # -- handlers ------------------------------------------------------------------
    def _hello(self, node: str, raw: bytes, context: grpc.ServicerContext) -> Wire:
        msg = control.decode(control.Hello, raw)
        records = [d.model_dump() for d in msg.datasets]
        self.scheduler.node_hello(node, msg.address, _fingerprint(context), msg.boot, msg.role,
                                  records)
        log.info("%s node %s connected; peers reach it at %s", msg.role, node, msg.address)
        return control.HelloReply(node=node, heartbeat_s=self.heartbeat_s)

    def _beat(self, node: str, raw: bytes, context: grpc.ServicerContext) -> Wire:
        msg = control.decode(control.Beat, raw)
        stats = msg.stats.model_dump(exclude={"v"}) if msg.stats else None
        if msg.halted:  # the node refused our audit checkpoint: the operator must see it
            stats = {**(stats or {}), "halted": msg.halted}
        if self._halted.get(node, "") != msg.halted:  # logged when it changes, not every beat
            self._halted[node] = msg.halted
            if msg.halted:
                log.error("node %s takes no new task: %s", node, msg.halted)
        orders, cancels = self.scheduler.node_beat(node, msg.running, stats)
        forget = self.scheduler.finished(msg.jobs) if msg.jobs else []
        tasks = [control.TaskOrder(**o) for o in orders]
        return control.BeatReply(orders=tasks, cancel=cancels, forget=forget,
                                 checkpoint=self._checkpoint())

    def _checkpoint(self) -> control.AuditCheckpoint | None:
        """The audit log's signed head for the node to keep (9.3), if this service has one."""
        feed = self.checkpoints
        c = feed.latest() if feed is not None else None
        if feed is None or c is None:
            return None
        return control.AuditCheckpoint(seq=c.seq, head=c.head, ts=c.ts, signature=c.signature,
                                       mac_from=c.mac_from, public_key=feed.signer.public_pem())

    def _report(self, node: str, raw: bytes, context: grpc.ServicerContext) -> Wire:
        msg = control.decode(control.Report, raw)
        self.scheduler.task_report(node, msg.task_id, msg.ok, msg.metrics, msg.reason, msg.seconds,
                                   retry=msg.retry)
        if self.metrics is not None:
            self.metrics.task_seconds.labels(node).observe(max(msg.seconds, 0.0))
        return control.Ack()

    def _wrap(self, fn: Any) -> Any:
        def handler(raw: bytes, context: grpc.ServicerContext) -> bytes:
            node = _node_of(context)
            tls.refuse_revoked(context, self.revocation, _abort)
            try:
                reply: Wire = fn(node, raw, context)
                return reply.encode()
            except ConfigError as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except AuthError as exc:
                _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
            except SharedMLError as exc:
                _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))

        return handler


def _node_of(context: grpc.ServicerContext) -> str:
    """The caller's id: the common name of its verified client certificate."""
    auth = context.auth_context()
    names = auth.get("x509_common_name") or []
    if len(names) == 1:
        return bytes(names[0]).decode()
    pems = auth.get("x509_pem_cert") or []
    try:
        return party_of(pems[0])
    except (IndexError, AuthError, ValueError):
        _abort(
            context, grpc.StatusCode.UNAUTHENTICATED, "no client certificate with one common name"
        )


def _fingerprint(context: grpc.ServicerContext) -> str:
    """SHA-256 of the caller's certificate (DER), hex: which certificate a node used."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return ""
    return x509.load_pem_x509_certificate(bytes(pems[0])).fingerprint(hashes.SHA256()).hex()


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    log.warning("refused a node call: %s", details)
    context.abort(code, details)
    raise AuthError(details)  # not reached: abort raises
