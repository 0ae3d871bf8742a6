"""The node service and node agents over real gRPC with mutual TLS, in one process.

Identity comes only from the client certificate; messages are typed JSON
checked field by field; agents run steps over GrpcChannel between
themselves, report metrics, stop a canceled step, and drop finished jobs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from platform_world import owners_sign

from sharedml.approvals import keygen
from sharedml.control import SERVICE, Hello, HelloReply, decode
from sharedml.crypto import pki
from sharedml.node.agent import Agent, NodeConfig
from sharedml.platform.nodes import NodeService
from sharedml.platform.scheduler import Scheduler, SchedulerConfig
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import Job, Node, Task

SPEC: dict[str, Any] = {
    "parties": {"bank": {"dataset": "customers", "label": "y"}, "shop": {"dataset": "baskets"}},
    "steps": [{"describe": {}}],
}


@dataclass
class Platform:
    pki_dir: Path
    store: Store
    scheduler: Scheduler
    service: NodeService
    #: Each party's owner's approval key pair (private, public).
    owners: dict[str, tuple[Path, Path]]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    pki_dir = tmp_path / "pki"
    pki.init_ca(pki_dir)
    for name in ("platform", "bank", "shop"):
        pki.issue(pki_dir, name)
    store = Store(sqlite_url(tmp_path))
    store.upgrade()
    owners = {p: keygen(tmp_path / "owners", f"{p}-owner") for p in ("bank", "shop")}
    scheduler = Scheduler(store, SchedulerConfig(task_timeout_s=10, max_attempts=1),
                          signed=owners_sign({p: k for p, (k, _) in owners.items()}))
    service = NodeService(scheduler, pki.load_identity(pki_dir, "platform"), heartbeat_s=0.1)
    service.start()
    yield Platform(pki_dir, store, scheduler, service, owners)
    service.stop(0)
    store.dispose()


def call(address: str, ident: pki.Identity, method: str, payload: bytes) -> bytes:
    creds = grpc.ssl_channel_credentials(ident.ca_pem, ident.key_pem, ident.cert_pem)
    with grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", "platform")]
    ) as channel:
        reply: bytes = channel.unary_unary(f"/{SERVICE}/{method}")(payload, timeout=10)
        return reply


def test_identity_is_the_certificate_and_messages_are_checked(
    platform: Platform, tmp_path: Path
) -> None:
    bank = pki.load_identity(platform.pki_dir, "bank")
    raw = call(platform.service.address, bank, "Hello", Hello(address="127.0.0.1:9").encode())
    assert decode(HelloReply, raw).node == "bank"
    with platform.store.session() as s:
        node = s.get(Node, "bank")
        assert node is not None and (node.address, node.status) == ("127.0.0.1:9", "online")
        cert = x509.load_pem_x509_certificate(bank.cert_pem)
        assert node.cert_fingerprint == cert.fingerprint(hashes.SHA256()).hex()

    # a node cannot name itself in the message: unknown fields are refused
    with pytest.raises(grpc.RpcError) as bad:
        call(platform.service.address, bank, "Hello", b'{"address": "x:1", "party": "shop"}')
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "party" in (bad.value.details() or "")
    with pytest.raises(grpc.RpcError) as junk:
        call(platform.service.address, bank, "Beat", b"\x80not json")
    assert junk.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # the shop's certificate is valid, but it never said hello
    shop = pki.load_identity(platform.pki_dir, "shop")
    with pytest.raises(grpc.RpcError) as early:
        call(platform.service.address, shop, "Beat", b"{}")
    assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "has not said hello" in (early.value.details() or "")

    # a certificate named "bank" from another CA does not get through TLS
    rogue_dir = tmp_path / "rogue"
    pki.init_ca(rogue_dir)
    rogue = pki.issue(rogue_dir, "bank")
    impostor = pki.Identity("bank", rogue.cert_pem, rogue.key_pem, bank.ca_pem)
    with pytest.raises(grpc.RpcError) as refused:
        call(platform.service.address, impostor, "Hello", Hello(address="1.2.3.4:5").encode())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with platform.store.session() as s:
        node = s.get(Node, "bank")
        assert node is not None and node.address == "127.0.0.1:9"


@pytest.fixture
def agents(platform: Platform, tmp_path: Path, shared_data: Path) -> Iterator[dict[str, Agent]]:
    files = {"bank": ("customers", "breast_hetero_guest.csv"),
             "shop": ("baskets", "breast_hetero_host.csv")}
    stop = threading.Event()
    running: dict[str, Agent] = {}
    threads = []
    for party, (name, file) in files.items():
        config = NodeConfig(
            party=party, platform=platform.service.address, pki_dir=platform.pki_dir,
            work_dir=tmp_path / party, heartbeat_s=0.1, datasets={name: shared_data / file},
            approvers={f"{party}-owner": platform.owners[party][1]},
        )
        agent = running[party] = Agent(config)
        threads.append(threading.Thread(target=agent.run, args=(stop,), daemon=True))
    ticker = threading.Thread(target=_tick, args=(platform.scheduler, stop), daemon=True)
    for t in [*threads, ticker]:
        t.start()
    yield running
    stop.set()
    for t in threads:
        t.join(10)
    for agent in running.values():
        agent.close()


def _tick(scheduler: Scheduler, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        scheduler.tick()


def wait_for(store: Store, job_id: str, states: set[str], within: float = 30) -> Job:
    deadline = time.monotonic() + within
    while True:
        with store.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
        if job.state in states or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_agents_run_a_step_between_themselves_and_report(
    platform: Platform, agents: dict[str, Agent]
) -> None:
    job_id = platform.scheduler.submit(SPEC)
    job = wait_for(platform.store, job_id, {"succeeded", "failed"})
    assert job.state == "succeeded", job.reason
    assert job.result is not None
    metrics = job.result["steps"]["describe"]
    assert metrics["bank"]["metrics"]["rows_by_party"] == {"bank": 569, "shop": 569}
    assert metrics["shop"]["metrics"]["columns"] == 21
    # the finished job's working state is dropped at the nodes' next heartbeats
    deadline = time.monotonic() + 10
    while any(job_id in a._jobs for a in agents.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(job_id in a._jobs for a in agents.values())


def test_a_dataset_the_node_does_not_hold_fails_naming_party_and_remedy(
    platform: Platform, agents: dict[str, Agent]
) -> None:
    spec = {**SPEC, "parties": {**SPEC["parties"], "shop": {"dataset": "elsewhere"}}}
    job = wait_for(platform.store, platform.scheduler.submit(spec), {"succeeded", "failed"})
    assert job.state == "failed"
    assert "dataset 'elsewhere' is not registered on this node" in (job.reason or "")
    assert "party 'shop'" in (job.reason or "") and "node's config" in (job.reason or "")


def test_an_unreadable_dataset_fails_the_job_and_the_node_stays_up(
    platform: Platform, agents: dict[str, Agent], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b'id,x\n1,"unterminated\n')
    agents["shop"].config.datasets["broken"] = broken
    spec = {**SPEC, "parties": {**SPEC["parties"], "shop": {"dataset": "broken"}}}
    job = wait_for(platform.store, platform.scheduler.submit(spec), {"succeeded", "failed"})
    assert job.state == "failed"
    assert "cannot read dataset" in (job.reason or "") and "party 'shop'" in (job.reason or "")
    # the same nodes run the next job
    again = wait_for(platform.store, platform.scheduler.submit(SPEC), {"succeeded", "failed"})
    assert again.state == "succeeded", again.reason


def test_a_platform_that_forges_approvals_cannot_make_a_node_read(
    platform: Platform, agents: dict[str, Agent], tmp_path: Path
) -> None:
    """A compromised platform (it decides which approvals it hands out) with no signature
    of the bank's owner, or one made with another key, gets the bank node to read nothing."""
    mallory, _ = keygen(tmp_path / "mallory", "mallory")
    shop_key = platform.owners["shop"][0]
    for forged, why in ((owners_sign({"shop": shop_key}), "no signed approval by the dataset's owner"),
                        (owners_sign({"bank": mallory, "shop": shop_key}),
                         "does not verify under any approver key")):
        platform.scheduler.nodes.signed = forged
        job = wait_for(platform.store, platform.scheduler.submit(SPEC), {"succeeded", "failed"})
        assert job.state == "failed"
        assert "refused to read dataset 'customers'" in (job.reason or ""), job.reason
        assert why in (job.reason or "") and "party 'bank'" in (job.reason or "")
        assert not (job.result or {}).get("steps", {}).get("describe", {}).get("bank")


def test_cancel_stops_the_step_at_the_nodes(platform: Platform, agents: dict[str, Agent]) -> None:
    spec = {**SPEC, "steps": [{"describe": {"sleep_s": 60}}]}
    job_id = platform.scheduler.submit(spec)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with platform.store.session() as s:
            tasks = s.query(Task).filter_by(job_id=job_id).all()
        if all(t.state == "running" for t in tasks) and all(a._runs for a in agents.values()):
            break
        time.sleep(0.05)
    platform.scheduler.cancel(job_id, by="test")
    deadline = time.monotonic() + 10
    while any(a._runs for a in agents.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(a._runs for a in agents.values()), "the nodes still run a canceled step"
    assert wait_for(platform.store, job_id, {"canceled"}).state == "canceled"


def test_a_dealer_node_registers_its_role_holds_no_data_and_runs_no_partys_task(
    platform: Platform, tmp_path: Path
) -> None:
    from sharedml.control import TaskOrder
    from sharedml.errors import ConfigError
    from sharedml.node.agent import _Run

    pki.issue(platform.pki_dir, "dealer")
    dealer = pki.load_identity(platform.pki_dir, "dealer")
    hello = Hello(address="127.0.0.1:7", role="dealer").encode()
    assert decode(HelloReply, call(platform.service.address, dealer, "Hello", hello)).node == "dealer"
    with platform.store.session() as s:
        node = s.get(Node, "dealer")
        assert node is not None and node.role == "dealer"
    # the registered role sticks: the same certificate cannot come back as a party's node
    with pytest.raises(grpc.RpcError) as changed:
        call(platform.service.address, dealer, "Hello", Hello(address="127.0.0.1:7").encode())
    assert changed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "registered as a dealer node" in (changed.value.details() or "")

    # a dealer node's config holds no datasets
    config = tmp_path / "dealer.yaml"
    config.write_text("party: dealer\nplatform: 127.0.0.1:1\npki_dir: pki\nwork_dir: w\n"
                      "role: dealer\ndatasets: {x: x.csv}\n")
    with pytest.raises(ConfigError, match="a dealer node holds no datasets"):
        NodeConfig.load(config)
    agent = Agent(NodeConfig(party="dealer", platform="127.0.0.1:1", pki_dir=platform.pki_dir,
                             work_dir=tmp_path / "dealer", role="dealer"))
    try:  # and it refuses a data party's task (one its spec backs)
        from sharedml.components import registry

        params = registry.get("psi")().parse({}, "steps.psi").model_dump(mode="json")
        order = TaskOrder(task_id="t", job_id="j", step_id="psi", component="psi", params=params,
                          attempt=0, ancestors=[], parties=SPEC["parties"],
                          peers={"bank": "a:1", "shop": "b:2"}, channel_timeout_s=5,
                          spec={"parties": SPEC["parties"], "steps": [{"psi": {}}]})
        with pytest.raises(ConfigError, match="was given the 'psi' task of a data party"):
            agent._run_step(_Run(order))
    finally:
        agent.close()
