"""A partner's serving node: it answers the label holder's gateway with its contribution.

Per ``Score`` call (a micro-batch of ids for one model version, see
:mod:`sharedml.serving.wire`):

1. The caller is the TLS client certificate's common name (chained to the
   deployment CA); a caller that is not a configured label holder is refused.
2. The node loads its own sealed part of the named version (once; versions
   are immutable; a part of any other version is refused) and checks every
   id against its allow-list rule.
3. It looks up its own raw rows of the ids in its feature store and applies
   the pipeline it fitted in training (:mod:`sharedml.serving.features`).
4. It computes its contribution (:mod:`sharedml.serving.scoring`) — linear:
   the ring-encoded partial score; SecureBoost: the side of every split
   record it owns — and zeroes the rows it refused or does not know.
5. It queues one audit line (hashed ids, caller, version, counts; written and
   fsynced by the audit's writer thread, :mod:`sharedml.serving.audit`) and replies.

Bad input (a malformed message, an unknown version, a missing column) fails
that call only, with a gRPC status whose details name this party, the step
and the remedy; the node goes on serving (8.3-2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
import numpy as np

from sharedml.crypto.pki import Identity, party_of
from sharedml.errors import AuthError, ConfigError, DataError, FrameError, SharedMLError
from sharedml.serving import wire
from sharedml.serving.adapters import FeatureAdapter
from sharedml.serving.allow import AllowRule
from sharedml.serving.audit import ServingAudit
from sharedml.serving.features import PreparedFeatures
from sharedml.serving.parts import FeaturePart, StoreParts
from sharedml.transport.grpc_server import message_options

log = logging.getLogger("sharedml.serving")

_STATUS = {ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
           FrameError: grpc.StatusCode.INVALID_ARGUMENT,
           DataError: grpc.StatusCode.INVALID_ARGUMENT}


class PartnerNode:
    """This party's serving node (see the module docstring).

    Args:
        identity: this party's certificate, key and CA.
        callers: the label holders allowed to ask (their certificate names).
        parts: this party's installed model versions.
        features: this party's feature store.
        allow: which ids it scores.
        audit: its audit log.
        methods: more unary methods, each ``fn(caller, request) -> reply`` behind the same
            caller check and error mapping.
    """

    def __init__(
        self,
        identity: Identity,
        callers: Iterable[str],
        parts: StoreParts,
        features: FeatureAdapter,
        allow: AllowRule,
        audit: ServingAudit,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 8,
        methods: Mapping[str, Callable[[str, bytes], bytes]] | None = None,
    ) -> None:
        self.party = identity.party
        self.callers = frozenset(callers)
        self.parts, self.features, self.allow, self.audit = parts, features, allow, audit
        self._prepared: dict[str, tuple[FeaturePart, PreparedFeatures]] = {}
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"serve-{self.party}"),
            options=[*message_options(), ("grpc.so_reuseport", 0)],
        )
        handlers = {
            "Score": grpc.unary_unary_rpc_method_handler(self._guard(self._score)),
            "Describe": grpc.unary_unary_rpc_method_handler(self._guard(self._describe)),
        }
        for name, fn in (methods or {}).items():  # e.g. TEE serving's Contribute (serving/tee_node.py)
            handlers[name] = grpc.unary_unary_rpc_method_handler(self._guard(fn))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.SERVICE, handlers),))
        credentials = grpc.ssl_server_credentials(
            [(identity.key_pem, identity.cert_pem)], root_certificates=identity.ca_pem,
            require_client_auth=True)
        try:
            self.port = self._server.add_secure_port(f"{host}:{port}", credentials)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise ConfigError(f"party {self.party!r} could not listen on {host}:{port}",
                              step="serve: start", remedy="choose a free port")
        self.host = host
        self._server.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()
        self.audit.close()

    def wait(self) -> None:
        self._server.wait_for_termination()

    # -- handlers ------------------------------------------------------------------
    def _guard(self, fn: Callable[[str, bytes], bytes]) -> Callable[[bytes, Any], bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            caller = self._caller(context)
            try:
                return fn(caller, request)
            except SharedMLError as exc:
                code = next((c for t, c in _STATUS.items() if isinstance(exc, t)),
                            grpc.StatusCode.INTERNAL)
                named = type(exc)(exc.message, party=exc.party or self.party,
                                  step=exc.step or "serve: score", remedy=exc.remedy)
                _abort(context, code, str(named))

        return handle

    def _caller(self, context: grpc.ServicerContext) -> str:
        auth = context.auth_context()
        names = auth.get("x509_common_name") or []
        try:
            caller = names[0].decode() if len(names) == 1 else party_of(
                (auth.get("x509_pem_cert") or [b""])[0])
        except (AuthError, ValueError):
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "no single certificate name")
        if caller not in self.callers:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                   f"party {caller!r} may not request scores from {self.party!r} "
                   f"(allowed: {sorted(self.callers)})")
        return caller

    def _part(self, version: str) -> tuple[FeaturePart, PreparedFeatures]:
        if version not in self._prepared:
            part = self.parts.get(version)
            if not isinstance(part, FeaturePart):
                raise ConfigError(f"{self.party!r} holds the label part of {version!r}; it "
                                  "is served by its gateway", party=self.party,
                                  step="serve: load")
            if part.pipeline is None:
                raise ConfigError(f"{self.party!r}'s part of {version!r} has no feature "
                                  "pipeline", party=self.party, step="serve: load")
            self._prepared[version] = (part, PreparedFeatures(self.features, part.pipeline))
        return self._prepared[version]

    def _describe(self, caller: str, request: bytes) -> bytes:
        part, _ = self._part(request.decode(errors="replace"))
        return json.dumps(part.info.to_json()).encode()

    def _score(self, caller: str, request: bytes) -> bytes:
        req = wire.decode_request(request)
        part, prepared = self._part(req.version)
        admitted = self.allow.admits(req.ids)
        X, found = prepared.fetch(req.ids)
        status = np.where(~admitted, wire.REFUSED, np.where(~found, wire.UNKNOWN, wire.OK))
        values = part.contribute(X)
        values[status != wire.OK] = 0
        self.audit.record("score", req.ids, caller=caller, version=req.version,
                          scored=int((status == wire.OK).sum()),
                          refused=int((status == wire.REFUSED).sum()),
                          unknown=int((status == wire.UNKNOWN).sum()))
        return wire.encode_reply(part.info.kind, status.astype(np.uint8), values)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable")  # context.abort raises
