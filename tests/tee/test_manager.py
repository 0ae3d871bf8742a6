"""The enclave manager: start, heartbeat, destroy with an audited receipt; a failing canary rolls back.

Real processes: a simulated quoting process and an enclave process per enclave.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.tee.test_cluster_service import World

from sharedml.errors import PolicyDenied
from sharedml.tee.attestation import VersionFloor
from sharedml.tee.manager import AuditLog, build_manifest


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.manager.stop_all()


@pytest.mark.slow
def test_heartbeat_destroy_and_stop_all(world: World, tmp_path: Path) -> None:
    manager = world.manager
    handle = manager.create("job-1", build_manifest(world.signer, svn=1))
    claims = manager.verify(handle, world.policy)
    assert claims.svn == 1 and manager.heartbeat(handle)
    receipt = manager.destroy(handle)
    assert receipt["job"] == "job-1" and not manager.heartbeat(handle)
    other = manager.create(None, build_manifest(world.signer, svn=1))
    assert manager.stop_all() == 1 and other.process.poll() is not None and other.quoting.poll() is not None
    log = AuditLog(tmp_path / "platform" / "audit.jsonl")
    text = log.path.read_text()
    assert '"enclave.destroy"' in text and '"enclave.shutdown"' in text and log.verify() == 4


@pytest.mark.slow
def test_failing_canary_rolls_back_and_the_floor_holds(world: World, tmp_path: Path) -> None:
    cluster = world.cluster
    cluster.up(build_manifest(world.signer, svn=1), size=1)
    serving = cluster.resolve()

    def failing(_handle: object) -> None:
        raise PolicyDenied("canary job gave a wrong answer", step="upgrade")

    with pytest.raises(PolicyDenied, match="canary"):
        cluster.upgrade(build_manifest(world.signer, svn=2), canary=failing)
    assert cluster.resolve() is serving and cluster.heartbeat(serving)
    assert cluster.floor.value == 1 and VersionFloor(0, tmp_path / "floor").value == 1
    cluster.upgrade(build_manifest(world.signer, svn=2))
    assert VersionFloor(0, tmp_path / "floor").value == 2  # persisted: a restart cannot lower it
    assert not cluster.heartbeat(serving)  # the old one was taken offline
    assert '"enclave.rollback"' in (tmp_path / "platform" / "audit.jsonl").read_text()
