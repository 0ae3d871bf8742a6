"""The enclave's gRPC face under hostile input: clear errors, and it keeps serving (8.3-2)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from tests.tee.conftest import SimWorld

from sharedml.errors import AttestationError, DataError, PolicyDenied, ProtocolAbort, SharedMLError
from sharedml.tee.attestation.simqe import LocalSimAttester
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.enclave.service import EnclaveService
from sharedml.tee.provider import Provider


@pytest.fixture
def served(sim: SimWorld, tmp_path: Path) -> Iterator[tuple[EnclaveClient, grpc.Channel]]:
    enclave = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "work", job="j")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
    server.add_generic_rpc_handlers((EnclaveService(enclave, lambda: None).handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield EnclaveClient(f"127.0.0.1:{port}", timeout=10), channel
    channel.close()
    server.stop(None)


@pytest.mark.parametrize("method", ["Attest", "Train", "Status", "Result", "Destroy"])
@pytest.mark.parametrize(
    "payload", [b"", b"\xff" * 3, b"\x00\x00\x10\x00{}", b"\x00\x00\x00\x02[]", secrets.token_bytes(64)]
)
def test_garbage_is_refused_and_service_survives(served: tuple[EnclaveClient, grpc.Channel], method: str, payload: bytes) -> None:
    client, channel = served
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{wire.SERVICE}/{method}")(payload, timeout=10)
    assert info.value.code() in {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT}
    assert client.status()["state"] == "created"


def test_hostile_requests_map_to_sharedml_errors(served: tuple[EnclaveClient, grpc.Channel], sim: SimWorld) -> None:
    client, channel = served
    with pytest.raises(ProtocolAbort):
        client.attest(b"short")  # nonce too short
    with pytest.raises(ProtocolAbort):
        client.train({"algorithm": "xgboost", "label": "a.y"})  # before any upload
    with pytest.raises(ProtocolAbort):
        client.upload("u1", b"x", b"{}", 10, iter([]))  # before attest
    provider = Provider("a", client, sim.verifier())
    with pytest.raises(AttestationError):
        provider.attest(sim.policy(allow_simulation=False))
    with pytest.raises(PolicyDenied):
        provider.upload(b"PAR1", provider.grant("j", ["id"]))  # not verified in this session
    provider.attest(sim.policy())
    with pytest.raises(PolicyDenied):  # the grant does not admit this enclave's signer
        provider.upload(b"PAR1" + bytes(10), provider.grant("j", ["id"], signers=["00" * 48]))
    grant = provider.grant("j", ["id"], signers=[sim.quoter().signer.hex()])
    with pytest.raises(DataError):
        provider.upload(b"PAR1" + bytes(100), grant)  # not a real Parquet table
    with pytest.raises(DataError):
        provider.upload(b"not parquet", grant)
    header_only = wire.encode({"upload_id": "bad!", "size": 5, "sealed_key": "", "policy": ""})
    with pytest.raises(grpc.RpcError):
        channel.stream_unary(f"/{wire.SERVICE}/Upload")(iter([header_only]), timeout=10)
    assert client.status()["state"] in {"attested", "uploading"}  # still serving


def test_translate_unreachable() -> None:
    with pytest.raises(SharedMLError):
        EnclaveClient("127.0.0.1:1", timeout=2).status(timeout=2)


def test_upload_over_the_hybrid_post_quantum_suite(sim: SimWorld, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from sharedml.tee.envelope import HYBRID

    enclave = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "pq", job="j", kem=HYBRID)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=wire.OPTIONS)
    server.add_generic_rpc_handlers((EnclaveService(enclave, lambda: None).handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        provider = Provider("a", EnclaveClient(f"127.0.0.1:{port}"), sim.verifier(), chunk_bytes=4096)
        provider.attest(sim.policy())
        frame = pd.DataFrame({"id": np.arange(2000), "x": np.random.default_rng(0).normal(size=2000)})
        grant = provider.grant("j", ["id", "x"], signers=[sim.quoter().signer.hex()])
        assert provider.upload(frame, grant)["rows"] == 2000
        assert enclave.bundle.kem == HYBRID and len(enclave.bundle.kem_public) == 1216
        stored = next(iter(enclave._uploads.values())).frame
        assert stored is not None and stored.equals(frame)
    finally:
        server.stop(None)
