"""The cluster RPCs of one enclave process: join by relayed mutual attestation, keep sealed state.

The platform relays the steps of :mod:`.trusted_cluster` between two enclaves (it
starts them and holds no key):

1. ``ClusterStart`` on the joiner → its nonce;
2. ``ClusterHello`` on a member holding the key → evidence for that nonce + the member's nonce;
3. ``ClusterAnswer`` on the joiner → it verifies the member, answers with its evidence;
4. ``ClusterKey`` on the member → it verifies the joiner; the key sealed to the joiner, or a refusal;
5. ``ClusterKeyed`` on the joiner → it opens the key and reads the sealed state.

Each enclave's reference values for peers come from *its own* verified
evidence: same signer and product, TCB status as good as its own, never
debug; a member hands the key only to a build at least as new as itself
(anti-rollback inside the TEE), while a joiner accepts an older member (the
upgrade path: the new build joins the old cluster).

Sealed state: the *ledger* of finished jobs, sealed with the cluster key
(:func:`.trusted_cluster.cluster_store`, bound to the writer's version) into the
shared state folder after every job, one file per member. Each member reads
every file its version may open (its own version or older) and keeps the
union, so a member that joins — the new version during an upgrade — continues
the ledger, and an old member still draining its jobs never needs to read
(or overwrite) what a newer one wrote.

Reveals: to the platform relaying, evidence (measurement, versions, TCB) and
ciphertext. Security model: as :mod:`.trusted_cluster`; additionally a host can
delete or roll back the sealed file (no monotonic counter here).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from sharedml.errors import PolicyDenied, ProtocolAbort
from sharedml.tee.attestation.base import Attester, Policy, Verifier
from sharedml.tee.enclave.jobs import JobTable
from sharedml.tee.enclave.trusted_cluster import ClusterMember, Holder, Joiner, cluster_store

Reply = tuple[dict[str, Any], bytes]


class ClusterFace:
    def __init__(self, attester: Attester, verifier: Verifier, jobs: JobTable, state_dir: str | Path) -> None:
        self._attester = attester
        self._verifier = verifier
        self._jobs = jobs
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.id = secrets.token_hex(6)
        self.member: ClusterMember | None = None
        self._holder: Holder | None = None
        self._joiner: Joiner | None = None
        self.svn, self.policy = self._own_reference()
        jobs.on_finished = self.seal_ledger

    def _own_reference(self) -> tuple[int, Policy]:
        """Peers must match this enclave's own verified claims (and be no older)."""
        nonce, key = secrets.token_bytes(32), secrets.token_bytes(32)
        claims = self._verifier.claims_of(self._attester.attest(nonce, key))
        svn = claims.svn or 0
        statuses = frozenset({"UpToDate", claims.tcb_status})
        if claims.signer is not None and claims.product_id is not None:
            return svn, Policy(signer=claims.signer, product_id=claims.product_id, min_svn=svn,
                               allow_simulation=claims.simulated, tcb_statuses=statuses)
        return svn, Policy(measurements=frozenset({claims.measurement}), allow_simulation=claims.simulated,
                           tcb_statuses=statuses)

    def _new_member(self) -> ClusterMember:
        """A joiner: it accepts a member of any version of its own signer and product."""
        return ClusterMember(self._attester, self._verifier, replace(self.policy, min_svn=0))

    # -- RPCs (operator-only; the platform relays)
    def found(self, _header: dict[str, Any], _body: bytes) -> Reply:
        self.member = ClusterMember.founder(self._attester, self._verifier, self.policy)
        self._holder = Holder(self.member)
        self.seal_ledger()
        return {"role": "founder", "svn": self.svn}, b""

    def start(self, _header: dict[str, Any], _body: bytes) -> Reply:
        self._joiner = Joiner(self._new_member())
        return {"nonce": self._joiner.nonce.hex()}, b""

    def hello(self, header: dict[str, Any], _body: bytes) -> Reply:
        return self._require_holder().hello(bytes.fromhex(str(header["nonce"]))), b""

    def answer(self, header: dict[str, Any], _body: bytes) -> Reply:
        if self._joiner is None:
            raise ProtocolAbort("ClusterAnswer before ClusterStart", step="cluster")
        return self._joiner.answer("member", header), b""

    def key(self, header: dict[str, Any], _body: bytes) -> Reply:
        sealed = self._require_holder().key(str(header.get("peer", "joiner")), header)
        return {"sealed": base64.b64encode(sealed).decode()}, b""

    def keyed(self, header: dict[str, Any], _body: bytes) -> Reply:
        if self._joiner is None:
            raise ProtocolAbort("ClusterKeyed before ClusterStart", step="cluster")
        self._joiner.open("member", base64.b64decode(str(header["sealed"])))
        self.member, self._joiner = self._joiner.me, None
        self.member.policy = self.policy  # as a member from now on: no older joiner
        self._holder = Holder(self.member)
        self.seal_ledger()  # adopts what the cluster had, adds ours
        return {"finished": len(self._jobs.ledger), "svn": self.svn}, b""

    def status(self, _header: dict[str, Any], _body: bytes) -> Reply:
        keyed = self.member is not None and self.member.cluster_key is not None
        return {"member": keyed, "svn": self.svn, "finished": len(self._jobs.ledger)}, b""

    def _require_holder(self) -> Holder:
        if self._holder is None:
            raise ProtocolAbort("this enclave holds no cluster key", step="cluster",
                                remedy="found the cluster or join it first")
        return self._holder

    # -- sealed state
    def seal_ledger(self) -> None:
        """Adopt every member's ledger this version may read; seal the union as ours."""
        if self.member is None or self.member.cluster_key is None:
            return
        store = cluster_store(self.member, self.svn)
        merged = list(self._jobs.ledger)
        for path in sorted(self.state_dir.glob("ledger-*.sealed")):
            try:
                entries = json.loads(store.unseal(path.read_bytes(), "ledger"))
            except PolicyDenied:
                continue  # written by a newer version: not ours to read
            merged += [e for e in entries if e not in merged]
        mine = self.state_dir / f"ledger-{self.id}.sealed"
        tmp = mine.with_suffix(".tmp")
        tmp.write_bytes(store.seal("ledger", json.dumps(merged).encode()))
        os.replace(tmp, mine)
        self._jobs.ledger = merged

    def handlers(self) -> dict[str, Any]:
        return {"ClusterFound": self.found, "ClusterStart": self.start, "ClusterHello": self.hello,
                "ClusterAnswer": self.answer, "ClusterKey": self.key, "ClusterKeyed": self.keyed,
                "ClusterStatus": self.status}
