"""Trusted cluster (mutual attestation + key sync) and sealed state across versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.tee.conftest import SimWorld

from sharedml.errors import AttestationError, PolicyDenied, ProtocolAbort
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.tee.attestation import VersionFloor
from sharedml.tee.attestation.sim import SimVendor
from sharedml.tee.attestation.simqe import LocalSimAttester
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.enclave.trusted_cluster import ClusterMember, cluster_store, sync_key
from sharedml.transport.recording import RecordingChannel, WireRecord


def member(sim: SimWorld, founder: bool = False, **manifest_kw: object) -> ClusterMember:
    attester = LocalSimAttester(sim.quoter(sim.manifest(**manifest_kw)))  # type: ignore[arg-type]
    if founder:
        return ClusterMember.founder(attester, sim.verifier(), sim.policy())
    return ClusterMember(attester, sim.verifier(), sim.policy())


def test_honest_members_share_the_key_never_in_clear(sim: SimWorld) -> None:
    members = {"a": member(sim, founder=True), "b": member(sim), "c": member(sim, svn=3)}
    log: list[WireRecord] = []
    keys = run_in_threads(
        {p: (lambda s, m=m: sync_key(s, m, "a")) for p, m in members.items()},
        ["a", "b", "c"],
        wrap=lambda ch: RecordingChannel(ch, log),
    )
    assert keys["a"] == keys["b"] == keys["c"] == members["a"].cluster_key
    assert all(keys["a"] not in r.as_bytes() for r in log)
    assert {r.tag for r in log} == {"cluster/nonce", "cluster/evidence", "cluster/key"}
    assert members["a"].peers["c"].svn == 3  # the holder saw each peer's verified claims
    # State written by one member is readable by another (sync + persistence, 8.3-3).
    blob = cluster_store(members["b"], 2).seal("checkpoint", b"epoch 4")
    assert cluster_store(members["c"], 3).unseal(blob, "checkpoint") == b"epoch 4"
    with pytest.raises(ProtocolAbort):
        cluster_store(member(sim, founder=True), 3).unseal(blob, "checkpoint")  # another cluster


@pytest.mark.parametrize("bad", [{"debug": True}, {"svn": 1}], ids=["debug", "below-floor"])
def test_unacceptable_joiner_gets_no_key(sim: SimWorld, bad: dict[str, object]) -> None:
    holder, joiner = member(sim, founder=True), member(sim, **bad)
    with pytest.raises(PartyFailed) as info:
        run_in_threads({"a": lambda s: sync_key(s, holder, "a"), "b": lambda s: sync_key(s, joiner, "a")}, ["a", "b"])
    assert isinstance(info.value.error, AttestationError)
    assert joiner.cluster_key is None and "b" not in holder.peers


def test_joiner_refuses_an_impostor_holder(sim: SimWorld, tmp_path: Path) -> None:
    rogue = SimVendor.create(tmp_path / "rogue")
    impostor = ClusterMember.founder(
        LocalSimAttester(sim.quoter(platform=rogue.provision("evil"))), sim.verifier(), sim.policy()
    )
    joiner = member(sim)
    with pytest.raises(PartyFailed) as info:
        run_in_threads({"a": lambda s: sync_key(s, impostor, "a"), "b": lambda s: sync_key(s, joiner, "a")}, ["a", "b"])
    assert isinstance(info.value.error, AttestationError)
    assert joiner.cluster_key is None


def store(sim: SimWorld, svn: int, signer: ec.EllipticCurvePrivateKey | None = None) -> SealedStore:
    quoter = sim.quoter(sim.manifest(svn=svn, signer=signer))
    return SealedStore(quoter.seal_key, svn)


def test_newer_version_unseals_older_state(sim: SimWorld) -> None:
    blob = store(sim, 2).seal("model", b"weights")
    assert store(sim, 3).unseal(blob, "model") == b"weights"
    assert store(sim, 2).unseal(blob, "model") == b"weights"


def test_older_version_never_unseals_newer_state(sim: SimWorld) -> None:
    blob = store(sim, 3).seal("model", b"weights")
    with pytest.raises(PolicyDenied):
        store(sim, 2).unseal(blob, "model")
    quoter = sim.quoter(sim.manifest(svn=2))
    with pytest.raises(PolicyDenied):
        quoter.seal_key(3)  # the platform refuses too, whatever the enclave claims
    forged = SealedStore(quoter.seal_key, 3)  # an old enclave lying about its version
    with pytest.raises(PolicyDenied):
        forged.unseal(blob, "model")


def test_other_signer_or_tampered_blob_cannot_unseal(sim: SimWorld) -> None:
    blob = store(sim, 2).seal("model", b"weights")
    with pytest.raises(ProtocolAbort):
        store(sim, 2, signer=ec.generate_private_key(ec.SECP384R1())).unseal(blob, "model")
    with pytest.raises(ProtocolAbort):
        store(sim, 2).unseal(blob[:-1] + bytes([blob[-1] ^ 1]), "model")
    with pytest.raises(ProtocolAbort):
        store(sim, 2).unseal(blob, "other-name")


def test_version_floor_only_rises(tmp_path: Path) -> None:
    floor = VersionFloor(2)
    floor.raise_to(2)
    floor.raise_to(5)
    with pytest.raises(PolicyDenied):
        floor.raise_to(4)
    assert floor.value == 5
