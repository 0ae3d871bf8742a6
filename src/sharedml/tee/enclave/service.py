"""The enclave's gRPC service and process entry point.

``python -m sharedml.tee.enclave --job J --workdir DIR [--attester sim --qe
SOCKET | --attester gramine|tsm|nitro ...] [--client-ca CA.pem]`` makes the data key pair and the TLS key pair (inside
this process), binds a port, prints ``listening <port>`` and serves
:data:`wire.SERVICE` methods over TLS with its own certificate (RA-TLS:
:mod:`.ratls`; callers pin it and verify the binding) — generic handlers,
typed messages from :mod:`wire`:

per job (the header's ``job``; a single-job enclave has a default):
``Attest`` · ``Upload`` (client stream) · ``Run`` (a spec's steps) · ``Train`` ·
``Result`` (a model or a step's scores); for the
process: ``Status`` · ``Open`` (a job, in a service enclave) · ``Destroy`` (a
job; a single-job enclave then exits) · ``Retire`` (no new jobs: an upgrade
is moving work) · ``Shutdown`` · and with ``--state-dir`` the cluster's
(:mod:`.cluster_face`). ``Attest`` without a job in a service enclave attests
the process itself (its TLS key).

With ``--client-ca`` callers must present a certificate from the deployment CA
(mutual TLS), and only ``--operator`` names may open, destroy, retire, shut
down or relay the cluster's steps.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from sharedml.errors import PolicyDenied, ProtocolAbort, SharedMLError
from sharedml.tee.attestation.base import Evidence, Verifier
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.attesters import KINDS, AttesterConfig, make_attester
from sharedml.tee.enclave.budget import MemoryBudget
from sharedml.tee.enclave.cluster_face import ClusterFace
from sharedml.tee.enclave.jobs import JobTable
from sharedml.tee.enclave.ratls import TlsIdentity
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.ratls import key_binding

log = logging.getLogger("sharedml.tee.enclave")

Handler = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]
JobHandler = Callable[[Enclave, dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


class EnclaveService:
    """Maps RPCs onto the process's jobs: a job's calls run one at a time under its own lock."""

    def __init__(
        self,
        jobs: Enclave | JobTable,
        on_destroyed: Callable[[], None],
        *,
        operators: frozenset[str] | None = None,
        attest_process: Callable[[bytes], Evidence] | None = None,
    ) -> None:
        self.jobs = jobs if isinstance(jobs, JobTable) else JobTable(None, default=jobs)
        #: A service enclave's attestation outside any job: binds its TLS key only.
        self._attest_process = attest_process
        self._lock = threading.Lock()
        self._on_destroyed = on_destroyed
        #: Under mutual TLS, the certificate names allowed to open, destroy and retire.
        self._operators = operators
        self._extra: dict[str, tuple[Handler, bool]] = {}

    @property
    def enclave(self) -> Enclave:
        """The single job's enclave (single-job mode)."""
        return self.jobs.get(None)[0]

    @enclave.setter
    def enclave(self, value: Enclave) -> None:
        self.jobs.replace_default(value)

    def add(self, name: str, fn: Handler, *, operator_only: bool = False) -> None:
        """Serve one more unary method (process-level, e.g. the cluster's)."""
        self._extra[name] = (fn, operator_only)

    def _guard(self, fn: Handler, operator_only: bool = False) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                if operator_only:
                    self._check_operator(context)
                header, body = wire.decode(request)
                out_header, out_body = fn(header, body)
                return wire.encode(out_header, out_body)
            except SharedMLError as exc:
                log.info("enclave refused %s: %s", getattr(fn, "__name__", "call"), exc)
                context.abort(wire.status_for(exc), wire.detail_for(exc))
            except Exception:  # never leak internals to the caller
                log.exception("enclave error in %s", getattr(fn, "__name__", "call"))
                context.abort(grpc.StatusCode.INTERNAL, "enclave internal error")
            raise AssertionError("unreachable")

        return call

    def _on_job(self, fn: JobHandler) -> Handler:
        def call(header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
            enclave, lock = self.jobs.get(header.get("job"))
            with lock:
                return fn(enclave, header, body)

        call.__name__ = fn.__name__
        return call

    def _check_operator(self, context: grpc.ServicerContext) -> None:
        if self._operators is None:
            return
        names = {i.decode(errors="replace") for i in (context.peer_identities() or [])}
        if not names & self._operators:
            raise PolicyDenied("only the platform operator may do this", step="operate")

    # -- per job
    def attest(self, enclave: Enclave, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        nonce = bytes.fromhex(str(header["nonce"]))
        if not 16 <= len(nonce) <= 1024:
            raise ProtocolAbort("nonce must be 16-1024 bytes", step="attest")
        evidence = enclave.attest(nonce)
        return {"evidence": evidence.to_json(), "bundle": enclave.bundle.to_bytes().decode()}, b""

    def attest_any(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """A job's attestation, or — no job named in a service enclave — the process's own."""
        if header.get("job") or self.jobs.default is not None or self._attest_process is None:
            return self._on_job(self.attest)(header, body)
        nonce = bytes.fromhex(str(header["nonce"]))
        if not 16 <= len(nonce) <= 1024:
            raise ProtocolAbort("nonce must be 16-1024 bytes", step="attest")
        return {"evidence": self._attest_process(nonce).to_json(), "bundle": ""}, b""

    def upload(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        begun = ""  # only an upload this call opened may be aborted by it
        enclave: Enclave | None = None
        lock = self._lock
        try:
            header, _ = wire.decode(next(requests))
            upload_id = str(header["upload_id"])
            enclave, lock = self.jobs.get(header.get("job"))
            with lock:
                enclave.begin_upload(
                    upload_id,
                    base64.b64decode(header["sealed_key"]),
                    base64.b64decode(header["policy"]),
                    int(header["size"]),
                    batched=bool(header.get("batched", False)),
                )
                begun = upload_id
            for message in requests:
                h, chunk = wire.decode_view(message)
                with lock:
                    enclave.upload_chunk(upload_id, int(h["seq"]), bool(h["last"]), chunk)
            with lock:
                return wire.encode(enclave.finish_upload(upload_id))
        except SharedMLError as exc:
            self._abort_upload(enclave, lock, begun)
            context.abort(wire.status_for(exc), wire.detail_for(exc))
        except (KeyError, ValueError, StopIteration) as exc:
            self._abort_upload(enclave, lock, begun)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed upload: {type(exc).__name__}")
        raise AssertionError("unreachable")

    @staticmethod
    def _abort_upload(enclave: Enclave | None, lock: threading.Lock, upload_id: str) -> None:
        if enclave is None or not upload_id:
            return
        with lock:
            if enclave.state != "destroyed":
                enclave.abort_upload(upload_id)

    def train(self, enclave: Enclave, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        return {"metrics": enclave.train(dict(header["request"]))}, b""

    def run(self, enclave: Enclave, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        return enclave.run(dict(header["request"])), b""

    def result(self, enclave: Enclave, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        recipient, what = str(header["recipient"]), str(header.get("what", "model"))
        step = header.get("step")
        return {"recipient": recipient}, enclave.release(recipient, what, None if step is None else str(step))

    # -- the process
    def status(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        out = self.jobs.status()
        if header.get("job") or self.jobs.default is not None:
            enclave, _lock = self.jobs.get(header.get("job"))
            out.update(enclave.status())  # no job lock: a heartbeat must not wait for training
        return out, b""

    def open(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        enclave = self.jobs.open(str(header["job"]))
        return {"job": enclave.job, "enclave": enclave.id}, b""

    def destroy(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        receipt = self.jobs.destroy(header.get("job"))
        if self.jobs.single:
            threading.Timer(0.2, self._on_destroyed).start()
        return {"receipt": receipt}, b""

    def retire(self, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        self.jobs.retiring = True
        return self.jobs.status(), b""

    def shutdown(self, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        destroyed = self.jobs.destroy_all()
        threading.Timer(0.2, self._on_destroyed).start()
        return {"destroyed": destroyed}, b""

    def handler(self) -> grpc.GenericRpcHandler:
        per_job = {"Run": self.run, "Train": self.train, "Result": self.result}
        process: dict[str, tuple[Handler, bool]] = {
            "Attest": (self.attest_any, False), "Status": (self.status, False), "Open": (self.open, True), "Destroy": (self.destroy, True),
            "Retire": (self.retire, True), "Shutdown": (self.shutdown, True), **self._extra,
        }
        methods: dict[str, grpc.RpcMethodHandler] = {
            name: grpc.unary_unary_rpc_method_handler(self._guard(self._on_job(fn))) for name, fn in per_job.items()
        }
        for name, (fn, operator_only) in process.items():
            methods[name] = grpc.unary_unary_rpc_method_handler(self._guard(fn, operator_only))
        methods["Upload"] = grpc.stream_unary_rpc_method_handler(self.upload)
        return grpc.method_handlers_generic_handler(wire.SERVICE, methods)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sharedml-enclave")
    env = os.environ.get  # Gramine passes the host's per-run values through the environment
    ap.add_argument("--job", default=env("SHAREDML_ENCLAVE_JOB"), help="serve this one job (default: a service)")
    ap.add_argument("--workdir", default=env("SHAREDML_ENCLAVE_WORKDIR"))
    ap.add_argument("--attester", default="sim", choices=KINDS)
    ap.add_argument("--qe", help="sim: the simulated quoting process's socket")
    ap.add_argument("--collateral", help="DCAP collateral JSON or SNP VCEK fetched ahead of time")
    ap.add_argument("--pccs", help="PCCS URL for DCAP collateral")
    ap.add_argument("--svn", type=int, default=0, help="gramine: the manifest's sgx.isvsvn")
    ap.add_argument("--kem", default="X25519")
    ap.add_argument("--host", default=env("SHAREDML_ENCLAVE_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(env("SHAREDML_ENCLAVE_PORT", "0")))
    ap.add_argument("--client-ca", default=env("SHAREDML_ENCLAVE_CLIENT_CA"),
                    help="deployment CA certificate: require client certificates from it")
    ap.add_argument("--operator", action="append", default=None, help="party allowed to operate it")
    ap.add_argument("--state-dir", help="shared folder for the cluster's sealed state (enables the cluster RPCs)")
    ap.add_argument("--trust", help="sim: folder with the simulated vendor's root.pem, tcb_info.cbor, crl.der")
    args = ap.parse_args(argv)
    if not args.workdir:
        ap.error("--workdir (or SHAREDML_ENCLAVE_WORKDIR) is required")
    logging.basicConfig(level=logging.WARNING)

    attester, sealer = make_attester(AttesterConfig(args.attester, args.qe, args.collateral, args.pccs, args.svn))
    tls = TlsIdentity()
    budget = MemoryBudget()

    def open_job(job: str) -> Enclave:
        return Enclave(attester, Path(args.workdir) / job, job=job, kem=args.kem, sealer=sealer,
                       tls_spki_sha256=tls.spki_sha256, budget=budget)

    jobs = JobTable(None, default=open_job(args.job)) if args.job else JobTable(open_job)
    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=wire.OPTIONS)
    client_ca = Path(args.client_ca).read_bytes() if args.client_ca else None
    operators = frozenset(args.operator or ["platform"]) if client_ca else None
    service = EnclaveService(jobs, done.set, operators=operators,
                             attest_process=lambda nonce: attester.attest(nonce, key_binding(tls.spki_sha256, b"")))
    if args.state_dir:
        face = ClusterFace(attester, peer_verifier(args.trust), jobs, args.state_dir)
        for name, fn in face.handlers().items():
            service.add(name, fn, operator_only=True)
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_secure_port(f"{args.host}:{args.port}", tls.server_credentials(client_ca))
    server.start()
    print(f"listening {port}", flush=True)
    done.wait()
    server.stop(grace=1.0).wait()


def peer_verifier(trust: str | None) -> Verifier:
    """Trust anchors for other enclaves' evidence: the vendors' packaged roots, or the simulator's."""
    if trust is None:
        from sharedml.tee.images import hardware_backends

        return Verifier(hardware_backends())
    from sharedml.tee.attestation.sim import SimBackend, SimVendor

    folder = Path(trust)
    return Verifier([SimBackend.from_vendor(SimVendor(folder), (folder / "tcb_info.cbor").read_bytes(),
                                            (folder / "crl.der").read_bytes())])
