"""Revocation and rotation between node agents and the platform (issue 13 item 1).

Over real gRPC with mutual TLS in one process: the platform's node service
refuses every call from a node whose certificate is on the deployment's
revocation list, a node refuses a platform whose certificate is, and
either side may rotate its certificate while running — the list and the
pairs are re-read from disk, nothing restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sharedml.control import SERVICE, Hello, HelloReply, decode
from sharedml.crypto import crl, enrol, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import PeerUnreachable
from sharedml.node.agent import Agent, NodeConfig
from sharedml.platform.nodes import NodeService
from sharedml.platform.scheduler import Scheduler, SchedulerConfig
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import Node


@dataclass
class World:
    ca: Path
    pki_dir: Path  # the deployment's folder on this one machine: pairs, ca.pem, crl.pem
    store: Store
    service: NodeService


def _enrol(ca: Path, pki_dir: Path, party: str, rotate: bool = False) -> None:
    csr = enrol.request(pki_dir, party, rotate=rotate)
    enrol.install(pki_dir, pki.sign(ca, csr.read_bytes(), party=party), (ca / "ca.pem").read_bytes())


def _publish(ca: Path, pki_dir: Path) -> None:
    tmp = pki_dir / "crl.pem.new"
    tmp.write_bytes((ca / "crl.pem").read_bytes())
    tmp.replace(pki_dir / "crl.pem")


def _serial(pki_dir: Path, party: str) -> int:
    return x509.load_pem_x509_certificate((pki_dir / f"{party}.pem").read_bytes()).serial_number


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca, pki_dir = tmp_path / "ca", tmp_path / "pki"
    pki.init_ca(ca)
    for party in ("platform", "bank", "shop"):
        _enrol(ca, pki_dir, party)
    crl.refresh(ca)
    _publish(ca, pki_dir)
    store = Store(sqlite_url(tmp_path))
    store.upgrade()
    scheduler = Scheduler(store, SchedulerConfig(task_timeout_s=10, max_attempts=1))
    identity = IdentityFiles(pki_dir, "platform")
    revocation = crl.in_folder(pki_dir, identity.current().ca_pem)
    assert revocation is not None
    service = NodeService(scheduler, identity, heartbeat_s=0.1, revocation=revocation).start()
    yield World(ca, pki_dir, store, service)
    service.stop(0)
    store.dispose()


def _hello(world: World, party: str) -> HelloReply:
    ident = pki.load_identity(world.pki_dir, party)
    creds = grpc.ssl_channel_credentials(ident.ca_pem, ident.key_pem, ident.cert_pem)
    options = [("grpc.ssl_target_name_override", "platform")]
    with grpc.secure_channel(world.service.address, creds, options=options) as channel:
        raw = channel.unary_unary(f"/{SERVICE}/Hello")(Hello(address="127.0.0.1:9").encode(),
                                                      timeout=10)
    return decode(HelloReply, raw)


def _agent(world: World, party: str, tmp_path: Path) -> Agent:
    return Agent(NodeConfig(party=party, platform=world.service.address, pki_dir=world.pki_dir,
                            work_dir=tmp_path / party, heartbeat_s=0.1))


def test_the_platform_refuses_a_revoked_node_from_the_next_call(world: World) -> None:
    assert _hello(world, "bank").node == "bank"
    crl.revoke(world.ca, party="bank", reason="key-compromise")
    _publish(world.ca, world.pki_dir)
    with pytest.raises(grpc.RpcError) as info:
        _hello(world, "bank")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate of 'bank'" in (info.value.details() or "")
    assert "is revoked" in (info.value.details() or "")
    assert _hello(world, "shop").node == "shop"  # the others are still served


def test_a_node_refuses_a_revoked_platform_before_saying_anything(
    world: World, tmp_path: Path
) -> None:
    agent = _agent(world, "bank", tmp_path)
    try:
        crl.revoke(world.ca, party="platform")
        _publish(world.ca, world.pki_dir)
        with pytest.raises(PeerUnreachable, match=r"refused to connect to party 'platform'"):
            agent.step()
        with world.store.session() as s:
            assert s.get(Node, "bank") is None  # no hello reached the platform
    finally:
        agent.close()


def test_node_and_platform_rotate_while_running(world: World, tmp_path: Path) -> None:
    agent = _agent(world, "bank", tmp_path)
    try:
        agent.step()  # hello and a heartbeat on the first pairs
        for party in ("bank", "platform"):  # each rotates; its old certificate is revoked
            old = _serial(world.pki_dir, party)
            _enrol(world.ca, world.pki_dir, party, rotate=True)
            crl.revoke(world.ca, serial=old, reason="superseded")
        _publish(world.ca, world.pki_dir)
        agent.step()  # a new connection: the agent's new pair, the platform's new one
        agent.step()  # ... and a new hello, so the platform records the pair
        with world.store.session() as s:
            node = s.get(Node, "bank")
            assert node is not None
        got = bytes.fromhex(node.cert_fingerprint)
        new = x509.load_pem_x509_certificate((world.pki_dir / "bank.pem").read_bytes())
        assert got == new.fingerprint(hashes.SHA256())  # the platform saw the rotated pair
        assert _hello(world, "shop").node == "shop"
    finally:
        agent.close()
