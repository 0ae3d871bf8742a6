"""The scoring enclave's process: RA-TLS gRPC over :class:`~.serve.ScoringEnclave` (protocol: :mod:`.serve`).

``python -m sharedml.tee.enclave.serve_rpc --workdir DIR --client-ca CA.pem
[--attester sim --qe SOCKET | --attester gramine ...]`` makes its TLS key
inside, binds a port, prints ``listening <port>`` and serves, on
the enclave service's name (:data:`.wire.SERVICE`, so the manager's
``Status`` and ``Shutdown`` calls work unchanged), typed messages of :mod:`.wire` (JSON header + raw
body):

* ``Attest`` — evidence binding the TLS key to the caller's nonce (the
  process's attestation: no job, no data key bundle);
* ``Load`` · ``Features`` · ``Score`` — steps 2-4 of :mod:`.serve`;
* ``Status`` — loaded versions and pending batches; ``Shutdown`` — the
  operator's (``--operator``, default ``platform``) stop.

Mutual TLS is required (``--client-ca``): a caller's party is its
certificate's common name. Bad input fails that call only, with a status
naming the party and the step (8.3-2); the enclave keeps serving. The
manager starts it like a job enclave (:meth:`~sharedml.tee.manager.EnclaveManager.create`
with ``entry=``), so it passes the same ``--workdir`` and ``--kem``; a
scoring enclave makes no data key bundle and keeps nothing on disk, so it
uses neither.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from sharedml.errors import PolicyDenied, ProtocolAbort, SharedMLError
from sharedml.tee.attestation.base import Attester
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.attesters import KINDS, AttesterConfig, make_attester
from sharedml.tee.enclave.ratls import TlsIdentity
from sharedml.tee.enclave.serve import ScoringEnclave, encode_matrix
from sharedml.tee.ratls import key_binding

log = logging.getLogger("sharedml.tee.enclave")
Handler = Callable[[str, dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


class ScoringService:
    """Maps the RPCs onto a :class:`ScoringEnclave`, each with its caller's certificate name."""

    def __init__(self, enclave: ScoringEnclave, attester: Attester, tls_spki_sha256: bytes,
                 operators: frozenset[str], on_shutdown: Callable[[], None]) -> None:
        self.enclave, self._attester, self._spki = enclave, attester, tls_spki_sha256
        self._operators, self._on_shutdown = operators, on_shutdown

    def attest(self, _caller: str, header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        nonce = bytes.fromhex(str(header.get("nonce", "")))
        if not 16 <= len(nonce) <= 1024:
            raise ProtocolAbort("nonce must be 16-1024 bytes", step="attest")
        evidence = self._attester.attest(nonce, key_binding(self._spki, b""))
        return {"evidence": evidence.to_json(), "bundle": ""}, b""

    def load(self, caller: str, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        return self.enclave.load(caller, header, body), b""

    def features(self, caller: str, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        return self.enclave.features(caller, header, body), b""

    def score(self, caller: str, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        scores = self.enclave.score(caller, header, body)
        return {"rows": len(scores)}, encode_matrix(scores)

    def status(self, _caller: str, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        return self.enclave.status(), b""

    def shutdown(self, caller: str, _header: dict[str, Any], _body: bytes) -> tuple[dict[str, Any], bytes]:
        if caller not in self._operators:
            raise PolicyDenied(f"{caller!r} may not stop the scoring enclave", party=caller, step="operate")
        threading.Timer(0.2, self._on_shutdown).start()
        return {"destroyed": len(self.enclave.status()["versions"])}, b""

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, Handler] = {"Attest": self.attest, "Load": self.load, "Features": self.features,
                                       "Score": self.score, "Status": self.status, "Shutdown": self.shutdown}
        return grpc.method_handlers_generic_handler(wire.SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(_guard(fn)) for name, fn in methods.items()})


def caller_of(context: grpc.ServicerContext) -> str:
    """The caller's party: its deployment certificate's common name."""
    names = context.auth_context().get("x509_common_name") or []
    if len(names) != 1:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "a deployment client certificate is required")
    return bytes(names[0]).decode(errors="replace")


def _guard(fn: Handler) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        caller = caller_of(context)
        try:
            header, body = wire.decode(request)
            out, out_body = fn(caller, header, body)
            return wire.encode(out, out_body)
        except SharedMLError as exc:
            log.info("scoring enclave refused %s from %s: %s", fn.__name__, caller, exc)
            context.abort(wire.status_for(exc), wire.detail_for(exc))
        except Exception:  # never leak internals (or a value) to the caller
            log.exception("scoring enclave error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "enclave internal error")
        raise AssertionError("unreachable")  # context.abort raises

    return call


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sharedml-scoring-enclave")
    ap.add_argument("--workdir", required=True, help="(unused: a scoring enclave keeps nothing on disk)")
    ap.add_argument("--attester", default="sim", choices=KINDS)
    ap.add_argument("--qe", help="sim: the simulated quoting process's socket")
    ap.add_argument("--collateral", help="DCAP collateral JSON or SNP VCEK fetched ahead of time")
    ap.add_argument("--pccs", help="PCCS URL for DCAP collateral")
    ap.add_argument("--svn", type=int, default=0, help="gramine: the manifest's sgx.isvsvn")
    ap.add_argument("--kem", default="X25519", help="(unused: no data key bundle)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--client-ca", required=True, help="deployment CA: callers present certificates from it")
    ap.add_argument("--operator", action="append", default=None, help="party allowed to stop it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    attester, sealer = make_attester(AttesterConfig(args.attester, args.qe, args.collateral, args.pccs, args.svn))
    tls = TlsIdentity()
    done = threading.Event()
    service = ScoringService(ScoringEnclave(sealer), attester, tls.spki_sha256,
                             frozenset(args.operator or ["platform"]), done.set)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=wire.OPTIONS)
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_secure_port(f"{args.host}:{args.port}",
                                  tls.server_credentials(Path(args.client_ca).read_bytes()))
    server.start()
    print(f"listening {port}", flush=True)
    done.wait()
    server.stop(grace=1.0).wait()


if __name__ == "__main__":
    main()
