"""The platform's trusted cluster of service enclaves, and its heartbeat canary upgrade (8.5-1, 8.6-6).

Runs on the platform (``sharedml tee cluster up``). It starts enclaves,
relays their mutual attestation and decides which one takes new jobs; it
never holds the cluster key or a data key.

- :meth:`TrustedCluster.up`: start ``size`` service enclaves of one build,
  verify each against the platform's policy, let the first found the
  cluster and relay the others' joins (:mod:`.enclave.cluster_face`): each
  member checks the other's evidence itself, so the key reaches attested
  enclaves only, and the joiners read the sealed state.
- :meth:`TrustedCluster.upgrade`, per member: start the new build beside the
  old one (*new tunnel*); verify it at the anti-rollback floor; relay its join
  — an existing member refuses a build older than itself; beat its heart and
  run a canary job (*canary verification*); switch new jobs to it; *retire*
  the old one (it opens no job, finishes those it has) and destroy it once it
  is idle (*take offline*). Any failure before the switch destroys the new
  enclave and leaves the old one serving (*roll back*). The floor rises only
  after every member runs the new build. Callers that hit a retiring enclave
  resolve again (:meth:`resolve`), so no job is lost (*transparent to users*).

Reveals: to the platform, evidence, versions, job names and states; never data.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sharedml.errors import PeerUnreachable, PolicyDenied, SharedMLError
from sharedml.tee.attestation.base import Policy, VersionFloor
from sharedml.tee.attestation.sim import Manifest
from sharedml.tee.manager import ClusterDirs, EnclaveHandle, EnclaveManager

Canary = Callable[[EnclaveHandle], None]


class TrustedCluster:
    def __init__(
        self,
        manager: EnclaveManager,
        policy: Policy,
        floor: VersionFloor,
        dirs: ClusterDirs,
        *,
        drain_timeout: float = 120.0,
    ) -> None:
        self.manager = manager
        self.policy = policy
        self.floor = floor
        self.dirs = dirs
        self.drain_timeout = drain_timeout
        self.members: list[EnclaveHandle] = []
        self._serving: EnclaveHandle | None = None
        self._lock = threading.Lock()

    # -- forming
    def up(self, manifest: Manifest, size: int = 1) -> None:
        if manifest.svn < self.floor.value:
            raise PolicyDenied(f"svn {manifest.svn} is below the floor {self.floor.value}", step="cluster")
        for _ in range(size):
            handle = self._start(manifest)
            try:
                if not self.members:
                    self._call(handle, "ClusterFound", {})
                else:
                    self._relay_join(handle, self.members[0])
            except SharedMLError:
                self.manager.destroy(handle)
                raise
            self.members.append(handle)
        self._serving = self.members[-1]
        self.manager.audit.append("cluster.up", members=[m.id for m in self.members], svn=manifest.svn)

    def _start(self, manifest: Manifest) -> EnclaveHandle:
        handle = self.manager.create(None, manifest, cluster=self.dirs)
        try:
            self.manager.verify(handle, replace(self.policy, floor=self.floor))
        except SharedMLError:
            self.manager.destroy(handle)
            raise
        return handle

    def _call(self, handle: EnclaveHandle, method: str, header: dict[str, Any]) -> dict[str, Any]:
        client = self.manager.client(handle)
        try:
            return client.call(method, header, timeout=60)
        finally:
            client.close()

    def _relay_join(self, joiner: EnclaveHandle, holder: EnclaveHandle) -> dict[str, Any]:
        """Relay the five join steps; each enclave verifies the other itself."""
        nonce = self._call(joiner, "ClusterStart", {})["nonce"]
        hello = self._call(holder, "ClusterHello", {"nonce": nonce})
        answer = self._call(joiner, "ClusterAnswer", hello)
        sealed = self._call(holder, "ClusterKey", {**answer, "peer": joiner.id})
        return self._call(joiner, "ClusterKeyed", sealed)

    # -- serving
    def resolve(self) -> EnclaveHandle:
        """The enclave that takes new jobs now."""
        with self._lock:
            if self._serving is None:
                raise PeerUnreachable("the cluster is not up", step="resolve", remedy="sharedml tee cluster up")
            return self._serving

    def heartbeat(self, handle: EnclaveHandle) -> bool:
        return self.manager.heartbeat(handle)

    def status(self) -> dict[str, Any]:
        serving = self._serving.id if self._serving is not None else None
        members = []
        for m in self.members:
            alive = self.heartbeat(m)
            info = self._call(m, "ClusterStatus", {}) if alive else {}
            members.append({"id": m.id, "address": m.address, "svn": m.manifest.svn, "alive": alive,
                            "serving": m.id == serving, **info})
        return {"floor": self.floor.value, "members": members}

    # -- upgrade
    def upgrade(self, manifest: Manifest, *, canary: Canary | None = None, beats: int = 3) -> list[str]:
        """Replace every member by ``manifest``'s build, one at a time; roll back a failing one."""
        if manifest.svn < self.floor.value:
            raise PolicyDenied(f"svn {manifest.svn} is below the floor {self.floor.value}", step="upgrade",
                               remedy="anti-rollback: build at or above the floor")
        replaced = []
        for old in list(self.members):
            new = self._canary(manifest, canary or self.canary_job, beats)
            with self._lock:
                self.members[self.members.index(old)] = new
                if self._serving is old or self._serving not in self.members:
                    self._serving = new
            self._take_offline(old)
            self.manager.audit.append("enclave.upgrade", old=old.id, new=new.id, svn=manifest.svn)
            replaced.append(new.id)
        self.floor.raise_to(manifest.svn)
        return replaced

    def _canary(self, manifest: Manifest, canary: Canary, beats: int) -> EnclaveHandle:
        new = self.manager.create(None, manifest, cluster=self.dirs)
        try:
            self.manager.verify(new, replace(self.policy, floor=self.floor))
            self._relay_join(new, self.members[0])
            for _ in range(beats):
                if not self.heartbeat(new):
                    raise PeerUnreachable("new enclave missed a heartbeat", step="upgrade")
                time.sleep(0.05)
            canary(new)
        except SharedMLError as exc:
            self.manager.audit.append("enclave.rollback", new=new.id, reason=type(exc).__name__)
            self.manager.destroy(new)
            raise
        return new

    def canary_job(self, handle: EnclaveHandle) -> None:
        """Open a job, attest it as a provider would, destroy it (its receipt joins the ledger)."""
        client = self.manager.client(handle)
        try:
            job = client.open(f"canary-{secrets.token_hex(4)}")
            from sharedml.tee.ratls import attest_enclave

            attest_enclave(job, self.manager.verifier, replace(self.policy, floor=self.floor))
            job.destroy()
        finally:
            client.close()

    def _take_offline(self, old: EnclaveHandle) -> None:
        """Retire (no new jobs), wait until its jobs are done, destroy."""
        self._call(old, "Retire", {})
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline and self._call(old, "Status", {})["jobs"]:
            time.sleep(0.1)
        self.manager.destroy(old)

    def down(self) -> None:
        for member in self.members:
            self.manager.destroy(member)
        self.members, self._serving = [], None
