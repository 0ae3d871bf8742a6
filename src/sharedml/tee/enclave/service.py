"""The enclave's gRPC service and process entry point.

``python -m sharedml.tee.enclave --job J --workdir DIR [--attester sim --qe
SOCKET | --attester gramine|tsm|nitro ...] [--client-ca CA.pem]`` makes the data key pair and the TLS key pair (inside
this process), binds a port, prints ``listening <port>`` and serves
:data:`wire.SERVICE` methods over TLS with its own certificate (RA-TLS:
:mod:`.ratls`; callers pin it and verify the binding) — generic handlers,
typed messages from :mod:`wire`:

``Attest`` · ``Upload`` (client stream) · ``Train`` · ``Status`` · ``Result``
· ``Destroy`` (then the process exits).

With ``--client-ca`` callers must present a certificate from the deployment CA
(mutual TLS), and only ``--operator`` names may call ``Destroy``.
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
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.attesters import KINDS, AttesterConfig, make_attester
from sharedml.tee.enclave.ratls import TlsIdentity
from sharedml.tee.enclave.runtime import Enclave

log = logging.getLogger("sharedml.tee.enclave")

Handler = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


class EnclaveService:
    """Maps RPCs onto one :class:`Enclave`; one call at a time."""

    def __init__(
        self,
        enclave: Enclave,
        on_destroyed: Callable[[], None],
        *,
        operators: frozenset[str] | None = None,
    ) -> None:
        self.enclave = enclave
        self._lock = threading.Lock()
        self._on_destroyed = on_destroyed
        #: Under mutual TLS, the certificate names allowed to call ``Destroy``.
        self._operators = operators

    def _guard(self, fn: Handler, operator_only: bool = False) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                if operator_only:
                    self._check_operator(context)
                header, body = wire.decode(request)
                with self._lock:
                    out_header, out_body = fn(header, body)
                return wire.encode(out_header, out_body)
            except SharedMLError as exc:
                log.info("enclave refused %s: %s", fn.__name__, exc)
                context.abort(wire.status_for(exc), str(exc))
            except Exception:  # never leak internals to the caller
                log.exception("enclave error in %s", fn.__name__)
                context.abort(grpc.StatusCode.INTERNAL, "enclave internal error")
            raise AssertionError("unreachable")

        return call

    def _check_operator(self, context: grpc.ServicerContext) -> None:
        if self._operators is None:
            return
        names = {i.decode(errors="replace") for i in (context.peer_identities() or [])}
        if not names & self._operators:
            raise PolicyDenied("only the platform operator may destroy the enclave", step="destroy")

    def attest(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        nonce = bytes.fromhex(str(header["nonce"]))
        if not 16 <= len(nonce) <= 1024:
            raise ProtocolAbort("nonce must be 16-1024 bytes", step="attest")
        evidence = self.enclave.attest(nonce)
        return {"evidence": evidence.to_json(), "bundle": self.enclave.bundle.to_bytes().decode()}, b""

    def upload(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        begun = ""  # only an upload this call opened may be aborted by it
        try:
            header, _ = wire.decode(next(requests))
            upload_id = str(header["upload_id"])
            with self._lock:
                self.enclave.begin_upload(
                    upload_id,
                    base64.b64decode(header["sealed_key"]),
                    base64.b64decode(header["policy"]),
                    int(header["size"]),
                    batched=bool(header.get("batched", False)),
                )
                begun = upload_id
            for message in requests:
                h, chunk = wire.decode_view(message)
                with self._lock:
                    self.enclave.upload_chunk(upload_id, int(h["seq"]), bool(h["last"]), chunk)
            with self._lock:
                return wire.encode(self.enclave.finish_upload(upload_id))
        except SharedMLError as exc:
            self._abort_upload(begun)
            context.abort(wire.status_for(exc), str(exc))
        except (KeyError, ValueError, StopIteration) as exc:
            self._abort_upload(begun)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed upload: {type(exc).__name__}")
        raise AssertionError("unreachable")

    def _abort_upload(self, upload_id: str) -> None:
        with self._lock:
            if upload_id and self.enclave.state != "destroyed":
                self.enclave.abort_upload(upload_id)

    def train(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        return {"metrics": self.enclave.train(dict(header["request"]))}, b""

    def status(self, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        return self.enclave.status(), b""

    def result(self, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        recipient = str(header["recipient"])
        return {"recipient": recipient}, self.enclave.release(recipient)

    def destroy(self, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        receipt = self.enclave.destroy()
        threading.Timer(0.2, self._on_destroyed).start()
        return {"receipt": receipt}, b""

    def handler(self) -> grpc.GenericRpcHandler:
        unary = {
            "Attest": self.attest, "Train": self.train, "Status": self.status,
            "Result": self.result, "Destroy": self.destroy,
        }
        methods: dict[str, grpc.RpcMethodHandler] = {
            name: grpc.unary_unary_rpc_method_handler(self._guard(fn, operator_only=name == "Destroy"))
            for name, fn in unary.items()
        }
        methods["Upload"] = grpc.stream_unary_rpc_method_handler(self.upload)
        return grpc.method_handlers_generic_handler(wire.SERVICE, methods)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sharedml-enclave")
    env = os.environ.get  # Gramine passes the host's per-run values through the environment
    ap.add_argument("--job", default=env("SHAREDML_ENCLAVE_JOB"))
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
    ap.add_argument("--operator", action="append", default=None, help="party allowed to Destroy")
    args = ap.parse_args(argv)
    if not args.job or not args.workdir:
        ap.error("--job and --workdir (or SHAREDML_ENCLAVE_JOB / _WORKDIR) are required")
    logging.basicConfig(level=logging.WARNING)

    attester, sealer = make_attester(AttesterConfig(args.attester, args.qe, args.collateral, args.pccs, args.svn))
    tls = TlsIdentity()
    enclave = Enclave(attester, args.workdir, job=args.job, kem=args.kem, sealer=sealer,
                      tls_spki_sha256=tls.spki_sha256)
    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
    client_ca = Path(args.client_ca).read_bytes() if args.client_ca else None
    operators = frozenset(args.operator or ["platform"]) if client_ca else None
    server.add_generic_rpc_handlers((EnclaveService(enclave, done.set, operators=operators).handler(),))
    port = server.add_secure_port(f"{args.host}:{args.port}", tls.server_credentials(client_ca))
    server.start()
    print(f"listening {port}", flush=True)
    done.wait()
    server.stop(grace=1.0).wait()
