"""The enclave manager: heartbeat, canary upgrade, rollback, anti-rollback floor.

Real processes: a simulated quoting process and an enclave process per version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.errors import AttestationError, PolicyDenied
from sharedml.tee.attestation import Policy, Verifier, VersionFloor
from sharedml.tee.attestation.sim import SimBackend, SimVendor, signer_id
from sharedml.tee.manager import AuditLog, EnclaveManager, build_manifest


@pytest.mark.slow
def test_upgrade_canary_rollback_and_floor(tmp_path: Path) -> None:
    vendor = SimVendor.create(tmp_path / "vendor")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    manager = EnclaveManager(tmp_path / "platform", vendor.provision("p1"), verifier=Verifier([backend]))
    signer = ec.generate_private_key(ec.SECP384R1())
    v1, v2 = build_manifest(signer, svn=1), build_manifest(signer, svn=2)
    policy = Policy(signer=signer_id(v1.signer_public_key).hex(), product_id=1, allow_simulation=True)
    floor = VersionFloor(1, tmp_path / "floor")

    old = manager.create("svc", v1)
    manager.verify(old, policy)
    old.work.append("job-7")
    assert manager.heartbeat(old)

    # A debug build fails verification: rolled back, the old one keeps serving.
    with pytest.raises(AttestationError):
        manager.upgrade(old, build_manifest(signer, svn=2, debug=True), policy, floor)
    assert manager.heartbeat(old) and old.work == ["job-7"] and floor.value == 1

    # A canary that fails also rolls back.
    with pytest.raises(PolicyDenied):
        manager.upgrade(old, v2, policy, floor, canary=lambda h: False)
    assert manager.heartbeat(old)

    new = manager.upgrade(old, v2, policy, floor, canary=lambda h: manager.client(h).status()["state"] == "attested")
    assert new.work == ["job-7"] and old.work == []
    assert not manager.heartbeat(old) and old.process.poll() is not None
    assert manager.heartbeat(new) and floor.value == 2
    assert new.claims is not None and new.claims.svn == 2

    # Anti-rollback: v1 is now below the floor, and the floor survives a restart.
    with pytest.raises(PolicyDenied):
        manager.upgrade(new, v1, policy, floor)
    assert VersionFloor(0, tmp_path / "floor").value == 2
    manager.destroy(new)
    events = [line for line in (tmp_path / "platform" / "audit.jsonl").read_text().splitlines()]
    assert sum('"enclave.rollback"' in e for e in events) == 2
    assert AuditLog(tmp_path / "platform" / "audit.jsonl").verify() == len(events)
