"""Issue 14: the platform's signed audit checkpoints pushed to every node (9.3).

Over real gRPC with mutual TLS in one process (the node service and a node
agent's own ``step``), against a real platform store: every heartbeat reply
carries the log's signed head; the node keeps each one that moves forward,
refuses one that goes backwards (a truncated log) or forks (another hash for
the same entry) and says so in ``sharedml node-audit``; and the platform's log
verified against the node's file names the cut.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from platform_world import CHEAP
from sqlalchemy import delete
from test_node_revocation import _enrol, _publish
from typer.testing import CliRunner

from sharedml.checkpoints import fingerprint, load_kept
from sharedml.control import AuditCheckpoint
from sharedml.crypto import crl, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import ConfigError
from sharedml.node.agent import Agent, NodeConfig
from sharedml.node.checkpoints import NodeCheckpoints
from sharedml.platform.audit_checkpoints import CheckpointFeed
from sharedml.platform.clock import ManualClock
from sharedml.platform.nodes import NodeService
from sharedml.platform.scheduler import Scheduler, SchedulerConfig
from sharedml.platform.service import Platform
from sharedml.platform.store.models import AuditEntry, Job


@dataclass
class World:
    platform: Platform
    agent: Agent
    config: Path
    scheduler: Scheduler


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca, pki_dir = tmp_path / "ca", tmp_path / "pki"
    pki.init_ca(ca)
    for party in ("platform", "bank"):
        _enrol(ca, pki_dir, party)
    crl.refresh(ca)
    _publish(ca, pki_dir)
    clock = ManualClock()
    p = Platform.open(tmp_path / "platform", clock=clock, hasher=CHEAP)
    for i in range(3):
        p.audit.append("admin", "settings.change", str(i))
    scheduler = Scheduler(p.store, SchedulerConfig(task_timeout_s=10, max_attempts=1), clock=clock)
    feed = CheckpointFeed(p.checkpoints, p.audit, clock, period=0)  # signed every beat
    service = NodeService(scheduler, IdentityFiles(pki_dir, "platform"), heartbeat_s=0.1,
                          checkpoints=feed).start()
    config = tmp_path / "bank.yaml"
    config.write_text(f"party: bank\nplatform: {service.address}\npki_dir: {pki_dir}\n"
                      f"work_dir: {tmp_path / 'bank'}\n")
    agent = Agent(NodeConfig.load(config))
    yield World(p, agent, config, scheduler)
    agent.close()
    service.stop(0)
    p.store.dispose()


def node_audit(world: World, *options: str) -> tuple[int, str]:
    import typer

    from sharedml.platform import deployment_cli

    app = typer.Typer()
    deployment_cli.register(app)
    r = CliRunner().invoke(app, ["node-audit", str(world.config), *options])
    return r.exit_code, r.output


def test_a_node_keeps_each_head_and_refuses_a_truncated_log(world: World) -> None:
    p, agent = world.platform, world.agent
    agent.step()  # hello, heartbeat: the reply carries the signed head
    first = p.audit.head()
    pem, kept = agent.checkpoints.held()
    assert pem == p.checkpoints.public_pem()
    assert [(c.seq, c.head) for c in kept] == [first]
    agent.step()  # the same head again: kept once
    for i in range(4):
        p.audit.append("admin", "settings.change", f"more {i}")
    agent.step()
    _, kept = agent.checkpoints.held()
    assert [c.seq for c in kept] == [first[0], p.audit.head()[0]]
    assert all(c.mac_from == 1 for c in kept)
    code, out = node_audit(world)
    assert code == 0 and "2 checkpoint(s)" in out and "refused: 0" in out, out

    # someone who may write the database cuts the log's tail
    newest = kept[-1].seq
    with p.store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq > newest - 3))
    assert p.audit.verify().ok  # the shorter chain, MACs and all, verifies on its own
    agent.step()  # the platform's head now went backwards: refused, not kept
    _, still = agent.checkpoints.held()
    assert [c.seq for c in still] == [c.seq for c in kept]
    (alarm,) = agent.checkpoints.alarms()
    assert "went backwards" in alarm["reason"] and f"entry {newest}" in alarm["reason"]
    agent.step()  # repeated every beat, recorded once
    assert len(agent.checkpoints.alarms()) == 1
    code, out = node_audit(world)
    assert code == 1 and "refused: 1" in out and "went backwards" in out, out
    # and the log checked against what the node holds names the cut
    v = p.audit.verify(*reversed(load_kept(agent.checkpoints.path)))
    assert not v.ok and v.first_bad_seq == newest and "the log was cut" in v.reason, v


def test_a_node_refuses_a_forked_head_a_foreign_key_and_a_bad_signature(
    world: World, tmp_path: Path
) -> None:
    p, agent = world.platform, world.agent
    agent.step()
    (kept,) = agent.checkpoints.held()[1]
    pem = p.checkpoints.public_pem()
    fork = p.checkpoints.sign(kept.seq, "f" * 64, kept.ts, kept.mac_from)  # same entry, other hash
    book: NodeCheckpoints = agent.checkpoints

    def msg(c: object, key: str = pem) -> AuditCheckpoint:
        return AuditCheckpoint(**{**vars(c), "public_key": key})

    assert "forked" in book.receive(msg(fork))
    moved = p.checkpoints.sign(kept.seq + 1, "e" * 64, kept.ts, kept.mac_from + 1)
    assert "MACs now start at entry" in book.receive(msg(moved))
    other = Platform.open(tmp_path / "other", clock=ManualClock(), hasher=CHEAP)
    foreign = other.checkpoints.sign(kept.seq + 1, "d" * 64, kept.ts, kept.mac_from)
    assert "differs from the one this node pinned" in book.receive(
        msg(foreign, other.checkpoints.public_pem()))
    forged = p.checkpoints.sign(kept.seq + 1, "c" * 64, kept.ts, kept.mac_from)
    assert "not signed" in book.receive(msg(forged.__class__(
        forged.seq, forged.head, forged.ts, fork.signature, forged.mac_from)))
    assert [c.seq for c in book.held()[1]] == [kept.seq]  # nothing refused was kept
    assert len(book.alarms()) == 4


def pinned_config(world: World, tmp_path: Path, key: str, name: str = "pinned") -> Path:
    """``world``'s node config with ``audit_checkpoint_key: key`` and its own work dir."""
    text = world.config.read_text().replace(str(tmp_path / "bank"), str(tmp_path / name))
    config = tmp_path / f"{name}.yaml"
    config.write_text(text + f"audit_checkpoint_key: {key}\n")
    return config


@pytest.mark.parametrize("form", ["fingerprint", "pem file"])
def test_a_node_pinning_the_platforms_key_refuses_another_key_sent_first(
    world: World, tmp_path: Path, form: str
) -> None:
    p = world.platform
    pem = p.checkpoints.public_pem()
    (tmp_path / "platform-audit.pem").write_text(pem)
    key = fingerprint(pem) if form == "fingerprint" else "platform-audit.pem"  # relative
    config = NodeConfig.load(pinned_config(world, tmp_path, key))
    assert config.checkpoint_pin() == fingerprint(pem)
    agent = Agent(config)
    try:
        # someone else's key reaches the node before the platform's: unpinned, the node
        # would pin it (trust on first use); pinned by node.yaml, it is refused
        other = Platform.open(tmp_path / "other", clock=ManualClock(), hasher=CHEAP)
        seq, head = p.audit.head()
        foreign = other.checkpoints.sign(seq, head, "2026-12-07T00:00:00+00:00", 1)
        why = agent.checkpoints.receive(
            AuditCheckpoint(**{**vars(foreign), "public_key": other.checkpoints.public_pem()}))
        other.store.dispose()
        assert "another key than the platform key node.yaml pins" in why
        assert agent.checkpoints.held() == ("", [])  # nothing kept, nothing pinned
        (alarm,) = agent.checkpoints.alarms()
        assert fingerprint(pem) in alarm["reason"]
        agent.step()  # the platform's own head over mTLS: kept under the pinned key
        held_pem, kept = agent.checkpoints.held()
        assert held_pem == pem and [(c.seq, c.head) for c in kept] == [p.audit.head()]
    finally:
        agent.close()


def test_a_pin_the_node_cannot_use_stops_it_at_start_naming_the_remedy(
    world: World, tmp_path: Path
) -> None:
    world.agent.step()  # the unpinned node kept the platform's key (trust on first use)
    other = Platform.open(tmp_path / "other", clock=ManualClock(), hasher=CHEAP)
    wrong = fingerprint(other.checkpoints.public_pem())
    other.store.dispose()
    # its kept file is under another key than the one node.yaml now pins
    text = world.config.read_text() + f"audit_checkpoint_key: {wrong}\n"
    world.config.write_text(text)
    with pytest.raises(ConfigError, match="holds checkpoints under the key") as info:
        Agent(NodeConfig.load(world.config))
    assert "platform audit-key" in (info.value.remedy or "")
    for key, said in (("missing.pem", "cannot read the platform's audit key"),
                      ("sha256:ABC", "is not sha256: and 64")):
        config = NodeConfig.load(pinned_config(world, tmp_path, key, "bad"))
        with pytest.raises(ConfigError, match=said) as info:
            Agent(config)
        assert "bank" in str(info.value) and "audit_checkpoint_key" in (info.value.remedy or "")


def test_sharedml_up_pins_the_platforms_key_in_every_node_config(
    tmp_path: Path, shared_data: Path
) -> None:
    from sharedml.platform.local_deployment import DeploymentSpec, prepare

    root = tmp_path / "cluster"
    prepare(root, DeploymentSpec({"bank": {"b": shared_data / "breast_hetero_guest.csv"},
                                  "shop": {"s": shared_data / "breast_hetero_host.csv"}}))
    p = Platform.open(root / "platform")
    want = fingerprint(p.checkpoints.public_pem())
    p.store.dispose()
    for node in ("bank", "shop", "dealer"):
        assert NodeConfig.load(root / "nodes" / node / "node.yaml").checkpoint_pin() == want
    # and the platform's operator prints the same key for nodes installed elsewhere
    import typer

    from sharedml.platform.cli import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "platform-audit.pem"
    r = CliRunner().invoke(app, ["platform", "audit-key", "--data-dir", str(root / "platform"),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == want == fingerprint(out.read_text())
    r = CliRunner().invoke(app, ["platform", "audit-key", "--data-dir", str(tmp_path / "none")])
    assert r.exit_code != 0 and "no platform.key" in str(r.exception)


def _order_one_step(world: World) -> str:
    """A one-party job whose task the scheduler orders from the bank's node."""
    job_id = world.scheduler.submit({"name": "j", "parties": {"bank": {"dataset": "d"}},
                                     "steps": [{"id": "describe", "describe": {}}]})
    world.scheduler.tick()
    return job_id


def _job_reason(world: World, job_id: str) -> str:
    with world.platform.store.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return f"{job.state}: {job.reason}"


def test_a_refused_checkpoint_halts_the_node_until_its_operator_resolves_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    p, agent = world.platform, world.agent
    agent.step()
    newest = p.audit.head()[0]
    with p.store.session() as s:  # the platform's log is cut below what the node holds
        s.execute(delete(AuditEntry).where(AuditEntry.seq > newest - 2))
    agent.step()  # refused: the node halts
    halted = agent.checkpoints.halted()
    assert "went backwards" in halted and "no new task" in halted
    job_id = _order_one_step(world)
    with caplog.at_level(logging.ERROR):
        agent.step()  # says why on its heartbeat; the order is refused, not run
        agent.step()  # and the refusal is reported
    assert not agent.tasks.runs and not agent.tasks.jobs
    state = _job_reason(world, job_id)
    assert state.startswith("failed") and "refused the platform's audit checkpoint" in state
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("node bank takes no new task") for m in logged)  # the platform's
    assert any(m.startswith("node bank refused the platform's audit") for m in logged)  # node's
    code, out = node_audit(world)
    assert code == 1 and "HALTED" in out, out

    code, out = node_audit(world, "--resolve", "restored from backup, verified")
    assert code == 0 and "taking tasks: yes" in out and "restored from backup" in out, out
    assert agent.checkpoints.halted() == ""
    agent.step()  # the same refusal again (the platform still sends it) halts no more
    assert agent.checkpoints.halted() == ""
    job_id = _order_one_step(world)
    agent.step()  # this order is run: it fails on its own account (no dataset, no approval)
    deadline = time.monotonic() + 30
    while "failed" not in _job_reason(world, job_id) and time.monotonic() < deadline:
        agent.step()
        world.scheduler.tick()
    assert "refused the platform's audit checkpoint" not in _job_reason(world, job_id)
    assert "failed" in _job_reason(world, job_id)
