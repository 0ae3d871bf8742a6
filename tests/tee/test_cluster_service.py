"""The trusted cluster and its canary upgrade as running services, under load (8.5-1, 8.6-6).

Real processes: a simulated quoting process and a service enclave per member,
RA-TLS with the deployment's client certificates. A client thread runs jobs
(two providers attest, upload, train, fetch the model) the whole time; the
platform upgrades the cluster underneath. No job may fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.crypto import pki
from sharedml.errors import AttestationError, PeerUnreachable, PolicyDenied
from sharedml.tee.attestation import Policy, Verifier, VersionFloor
from sharedml.tee.attestation.sim import SimBackend, SimVendor, signer_id
from sharedml.tee.cluster_service import TrustedCluster
from sharedml.tee.manager import AuditLog, ClusterDirs, EnclaveManager, build_manifest
from sharedml.tee.provider import Provider


class World:
    def __init__(self, root: Path) -> None:
        vendor = SimVendor.create(root / "vendor")
        (root / "vendor" / "tcb_info.cbor").write_bytes(vendor.tcb_info({3: "UpToDate"}))
        (root / "vendor" / "crl.der").write_bytes(vendor.revocation_list())
        self.backend = SimBackend.from_vendor(vendor, (root / "vendor" / "tcb_info.cbor").read_bytes(),
                                              (root / "vendor" / "crl.der").read_bytes())
        self.pki = root / "pki"
        pki.init_ca(self.pki)
        for party in ("platform", "guest", "host"):
            pki.issue(self.pki, party)
        self.manager = EnclaveManager(root / "platform", vendor.provision("p1"), verifier=Verifier([self.backend]),
                                      tls_dir=self.pki)
        self.signer = ec.generate_private_key(ec.SECP384R1())
        sid = signer_id(build_manifest(self.signer, svn=1).signer_public_key).hex()
        self.policy = Policy(signer=sid, product_id=1, min_svn=1, allow_simulation=True)
        self.cluster = TrustedCluster(self.manager, self.policy, VersionFloor(1, root / "floor"),
                                      ClusterDirs(root / "state", root / "vendor"))


def frames(n: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    return (pd.DataFrame({"id": range(n), "y": y, "a": x[:, 0]}),
            pd.DataFrame({"id": range(n), "b": x[:, 1], "c": x[:, 2]}))


def run_job(world: World, name: str) -> int:
    """One job as users run it; resolve again if the enclave is retiring or gone. Returns the svn served."""
    guest_df, host_df = frames()
    for _ in range(100):
        handle = world.cluster.resolve()
        platform = world.manager.client(handle)
        try:
            platform.open(name)
        except (PolicyDenied, PeerUnreachable):
            platform.close()
            time.sleep(0.05)
            continue
        clients = [world.manager.client(handle, p).for_job(name) for p in ("guest", "host")]
        guest, host = (Provider(p, c, Verifier([world.backend])) for p, c in zip(("guest", "host"), clients, strict=True))
        try:
            for provider, frame in ((guest, guest_df), (host, host_df)):
                claims = provider.attest(world.policy)
                grant = provider.grant(name, list(frame.columns), model_to={"guest": guest.release_key},
                                       signers=[world.policy.signer or ""])
                provider.upload(frame, grant)
            metrics = guest.client.train({"algorithm": "logistic_regression", "label": "guest.y"})
            assert metrics["rows"] == 200 and guest.result(name).kind == "logistic_regression"
            platform.for_job(name).destroy()
            return int(claims.svn or 0)
        finally:
            for c in (*clients, platform):
                c.close()
    raise AssertionError(f"{name} found no enclave to run on")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.manager.stop_all()  # whatever a failing test left running


@pytest.mark.slow
def test_upgrade_under_load_loses_no_job(world: World, tmp_path: Path) -> None:
    cluster = world.cluster
    cluster.up(build_manifest(world.signer, svn=1), size=2)
    assert [m["member"] for m in cluster.status()["members"]] == [True, True]  # key synced by attestation

    served: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            try:
                served.append(run_job(world, f"job-{i}"))
            except BaseException as exc:  # recorded: the assertion below shows it
                failures.append(exc)
            i += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        while len(served) < 2 and not failures:
            time.sleep(0.1)
        # A debug build is rolled back; the old members keep serving.
        with pytest.raises(AttestationError):
            cluster.upgrade(build_manifest(world.signer, svn=2, debug=True))
        assert {m["svn"] for m in cluster.status()["members"]} == {1}
        done_before = len(served)
        cluster.upgrade(build_manifest(world.signer, svn=2))
        while served.count(2) < 2 and not failures:
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert failures == [], failures
    assert done_before >= 2 and served.count(1) >= 2 and served.count(2) >= 2
    status = cluster.status()
    assert status["floor"] == 2 and {m["svn"] for m in status["members"]} == {2}
    # Sealed state continued across versions: the ledger counts the old members' jobs too.
    finished = max(m["finished"] for m in status["members"])
    assert finished >= len(served) - 1  # (the last job may finish after the status call)

    # Anti-rollback, at the platform and inside the cluster itself.
    with pytest.raises(PolicyDenied):
        cluster.upgrade(build_manifest(world.signer, svn=1))
    old_build = world.manager.create(None, build_manifest(world.signer, svn=1), cluster=cluster.dirs)
    try:
        with pytest.raises(AttestationError):  # a v2 member refuses to hand the key to a v1 enclave
            cluster._relay_join(old_build, cluster.members[0])
    finally:
        world.manager.destroy(old_build)
    cluster.down()
    events = AuditLog(tmp_path / "platform" / "audit.jsonl")
    text = events.path.read_text()
    assert text.count('"enclave.rollback"') == 1 and text.count('"enclave.upgrade"') == 2
    assert events.verify() > 0
