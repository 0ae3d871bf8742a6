"""Attestation-bound TLS over real gRPC + TLS on loopback (9.1-2, 9.4-6).

The enclave's TLS key is born in its process and bound into its evidence
with the provider's nonce; providers pin the certificate the connection
presents and use the channel only after verifying binding and policy. Each
refusal below is made by the means a man in the middle or a host has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pandas as pd
import pytest
from tests.tee.conftest import SimWorld

from sharedml.crypto import pki
from sharedml.errors import AttestationError, PeerUnreachable, PolicyDenied
from sharedml.tee.attestation import Policy
from sharedml.tee.attestation.simqe import LocalSimAttester, SimQuoter
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.ratls import TlsIdentity
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.enclave.service import EnclaveService
from sharedml.tee.provider import Provider
from sharedml.tee.ratls import attest_enclave


@dataclass
class Served:
    address: str
    tls: TlsIdentity
    server: grpc.Server


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    pki.init_ca(d)
    for party in ("guest", "platform"):
        pki.issue(d, party)
    return d


@pytest.fixture
def serve(tmp_path: Path, deployment: Path) -> Iterator[Callable[..., Served]]:
    servers: list[grpc.Server] = []

    def start(handler: grpc.GenericRpcHandler, tls: TlsIdentity) -> Served:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
        server.add_generic_rpc_handlers((handler,))
        port = server.add_secure_port("127.0.0.1:0", tls.server_credentials((deployment / "ca.pem").read_bytes()))
        server.start()
        servers.append(server)
        return Served(f"127.0.0.1:{port}", tls, server)

    yield start
    for server in servers:
        server.stop(None)


def enclave_on(serve: Callable[..., Served], quoter: SimQuoter, workdir: Path) -> Served:
    tls = TlsIdentity()  # in this process, as the enclave process does at start
    enclave = Enclave(LocalSimAttester(quoter), workdir, job="j", tls_spki_sha256=tls.spki_sha256)
    return serve(EnclaveService(enclave, lambda: None).handler(), tls)


class Relay(grpc.GenericRpcHandler):
    """A man in the middle: its own TLS key, every unary call relayed to the real enclave.

    ``replay`` answers Attest with the first answer it relayed (an old nonce's).
    """

    def __init__(self, upstream: EnclaveClient, replay: bool = False) -> None:
        self._upstream = upstream
        self._replay = replay
        self._first: bytes | None = None

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method.rsplit("/", 1)[-1]  # type: ignore[attr-defined]

        def relay(request: bytes, _context: grpc.ServicerContext) -> bytes:
            if method == "Attest" and self._replay and self._first is not None:
                return self._first
            header, body = wire.decode(request)
            out_header, out_body = self._upstream._unary(method, header, body)
            answer = wire.encode(out_header, out_body)
            if method == "Attest" and self._first is None:
                self._first = answer
            return answer

        return grpc.unary_unary_rpc_method_handler(relay)


def relay_to(
    serve: Callable[..., Served], real: Served, deployment: Path, tls: TlsIdentity, replay: bool = False
) -> Served:
    """A relay with TLS identity ``tls`` in front of ``real`` (it calls it as the platform)."""
    upstream = EnclaveClient.connect(real.address, tls_dir=deployment, tls_name="platform", timeout=20)
    return serve(Relay(upstream, replay=replay), tls)


def guest(address: str, deployment: Path, sim: SimWorld) -> Provider:
    client = EnclaveClient.connect(address, tls_dir=deployment, tls_name="guest", timeout=20)
    return Provider("guest", client, sim.verifier())


def reason(info: pytest.ExceptionInfo[AttestationError]) -> str:
    return str(info.value.reason)  # type: ignore[attr-defined]


def test_provider_uses_the_channel_only_after_verifying_the_binding(
    sim: SimWorld, serve: Callable[..., Served], deployment: Path, tmp_path: Path
) -> None:
    real = enclave_on(serve, sim.quoter(), tmp_path / "w")
    provider = guest(real.address, deployment, sim)
    assert provider.client.tls_spki_sha256 == real.tls.spki_sha256  # pinned what the enclave presents
    claims = provider.attest(sim.policy())
    assert claims.svn == 2 and not claims.debug
    frame = pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]})
    grant = provider.grant("j", list(frame.columns), signers=[sim.policy().signer or ""])
    assert provider.upload(frame, grant)["rows"] == 3


def test_man_in_the_middle_with_valid_evidence_but_its_own_key_is_refused(
    sim: SimWorld, serve: Callable[..., Served], deployment: Path, tmp_path: Path
) -> None:
    real = enclave_on(serve, sim.quoter(), tmp_path / "w")
    mitm = relay_to(serve, real, deployment, TlsIdentity())
    provider = guest(mitm.address, deployment, sim)
    with pytest.raises(AttestationError) as info:
        provider.attest(sim.policy())  # genuine, fresh evidence — for the enclave's key, not the relay's
    assert reason(info) == "binding"
    frame = pd.DataFrame({"id": [1], "x": [0.5]})
    with pytest.raises(PolicyDenied):  # and no data goes through the relay
        provider.upload(frame, provider.grant("j", ["id", "x"], signers=[sim.policy().signer or ""]))


def test_the_pinned_certificate_without_its_key_fails_the_handshake(
    sim: SimWorld, serve: Callable[..., Served], deployment: Path, tmp_path: Path
) -> None:
    real = enclave_on(serve, sim.quoter(), tmp_path / "w")
    mitm = relay_to(serve, real, deployment, TlsIdentity())
    # The platform hands out the genuine certificate but routes to the relay.
    pinned = EnclaveClient(mitm.address, server_certificate=real.tls.cert_pem, tls_dir=deployment,
                           tls_name="guest", timeout=10)
    with pytest.raises(PeerUnreachable):
        attest_enclave(pinned, sim.verifier(), sim.policy())


def test_replayed_answer_to_an_old_nonce_is_refused(
    sim: SimWorld, serve: Callable[..., Served], deployment: Path, tmp_path: Path
) -> None:
    real = enclave_on(serve, sim.quoter(), tmp_path / "w")
    # The host keeps the enclave's TLS key but replays an earlier attestation answer.
    replaying = relay_to(serve, real, deployment, real.tls, replay=True)
    provider = guest(replaying.address, deployment, sim)
    provider.attest(sim.policy())  # the first answer is fresh
    with pytest.raises(AttestationError) as info:
        provider.attest(sim.policy())  # the same answer again, for the new nonce
    assert reason(info) == "binding"


@pytest.mark.parametrize(
    ("make", "policy_kw", "expected"),
    [
        (lambda sim: sim.quoter(sim.manifest(debug=True)), {}, "debug"),
        (lambda sim: sim.quoter(platform=sim.vendor.provision("unpatched", tcb_svn=2)), {}, "tcb"),
        (lambda sim: sim.quoter(sim.manifest(svn=2)), {"min_svn": 3}, "version"),
    ],
    ids=["debug", "old-tcb", "below-min-svn"],
)
def test_policy_refusals_over_ratls(
    sim: SimWorld, serve: Callable[..., Served], deployment: Path, tmp_path: Path,
    make: Callable[[SimWorld], SimQuoter], policy_kw: dict[str, object], expected: str,
) -> None:
    served = enclave_on(serve, make(sim), tmp_path / "w")
    provider = guest(served.address, deployment, sim)
    policy: Policy = sim.policy(**policy_kw)
    with pytest.raises(AttestationError) as info:
        provider.attest(policy)
    assert reason(info) == expected


def test_a_caller_without_a_deployment_certificate_is_refused(
    sim: SimWorld, serve: Callable[..., Served], tmp_path: Path
) -> None:
    real = enclave_on(serve, sim.quoter(), tmp_path / "w")
    anonymous = EnclaveClient(real.address, server_certificate=real.tls.cert_pem, timeout=10)
    with pytest.raises(PeerUnreachable):
        anonymous.status(timeout=5)
