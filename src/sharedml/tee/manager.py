"""The platform's enclave manager: create, heartbeat, upgrade, destroy.

Runs on the platform (the "computing platform manager"): it starts processes
and relays bytes but never holds an enclave key or a data key.

- :meth:`EnclaveManager.create` starts a simulated quoting process for the
  signed manifest (it measures the code itself), then the enclave process.
- :meth:`EnclaveManager.heartbeat` is a ``Status`` call with a short deadline.
- :meth:`EnclaveManager.destroy` asks for destruction, waits for the process
  to end, checks the receipt's signature against the attested key bundle and
  appends it to the hash-chained audit log.
- upgrades (8.6-6) of service enclaves are :class:`~sharedml.tee.cluster_service.TrustedCluster`'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

import sharedml
from sharedml.errors import PeerUnreachable, PolicyDenied, SharedMLError
from sharedml.tee.attestation.base import Claims, Policy, Verifier
from sharedml.tee.attestation.sim import Manifest, sign_manifest
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.envelope import KeyBundle
from sharedml.tee.ratls import attest_enclave, fetch_certificate

ENCLAVE_PRODUCT_ID = 1


def enclave_code() -> tuple[Path, tuple[str, ...]]:
    """The code an enclave runs: every module of the installed package.

    The enclave runs the job's steps through the component registry
    (:mod:`sharedml.tee.enclave.steps`), so the components, learners and what
    they import are enclave code as much as ``tee/`` is; a real image trusts
    the whole virtual environment likewise (``deploy/tee/``).
    """
    root = Path(sharedml.__file__).resolve().parent
    return root, tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*.py")))


def build_manifest(
    signer: ec.EllipticCurvePrivateKey,
    *,
    svn: int,
    product_id: int = ENCLAVE_PRODUCT_ID,
    debug: bool = False,
    config: dict[str, Any] | None = None,
) -> Manifest:
    """Measure and sign the enclave build (the release engineer's step)."""
    root, files = enclave_code()
    return sign_manifest(root, files, config or {"runtime": "sim"}, signer,
                         product_id=product_id, svn=svn, debug=debug)


class AuditLog:
    """Append-only JSON lines, each carrying the SHA-256 of the line before."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _last_hash(self) -> str:
        if not self.path.exists():
            return "0" * 64
        lines = self.path.read_bytes().splitlines()
        return hashlib.sha256(lines[-1]).hexdigest() if lines else "0" * 64

    def append(self, event: str, **fields: Any) -> None:
        entry = {"event": event, "at": dt.datetime.now(dt.UTC).isoformat(), "prev": self._last_hash(), **fields}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def verify(self) -> int:
        """Number of entries, if the chain is intact; raises otherwise."""
        prev = "0" * 64
        lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        for i, line in enumerate(lines):
            if json.loads(line)["prev"] != prev:
                raise PolicyDenied(f"audit log edited at entry {i}", step="audit")
            prev = hashlib.sha256(line).hexdigest()
        return len(lines)


@dataclass(frozen=True)
class ClusterDirs:
    """Where a cluster's members keep sealed state, and the anchors they verify each other with."""

    state: Path
    trust: Path


@dataclass
class EnclaveHandle:
    id: str
    job: str | None
    address: str
    home: Path
    manifest: Manifest
    process: subprocess.Popen[str]
    quoting: subprocess.Popen[str]
    certificate: bytes = b""  # the TLS certificate the enclave presented (pinned; attestation binds it)
    bundle: KeyBundle | None = None
    claims: Claims | None = None

    @property
    def workdir(self) -> Path:
        return self.home / "work"


def _await_line(proc: subprocess.Popen[str], prefix: str, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    proc.kill()
    raise PeerUnreachable(f"{what} did not start: {err.strip()[-300:]}", step="create",
                          remedy="check the manifest and the platform directory")


class EnclaveManager:
    """Starts and stops enclave processes on one simulated platform."""

    def __init__(
        self,
        home: str | Path,
        platform_dir: str | Path,
        *,
        verifier: Verifier,
        audit: AuditLog | None = None,
        start_timeout: float = 60.0,
        tls_dir: str | Path | None = None,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.platform_dir = Path(platform_dir)
        self.verifier = verifier
        self.audit = audit or AuditLog(self.home / "audit.jsonl")
        self.start_timeout = start_timeout
        #: Deployment PKI (``sharedml.crypto.pki``): with it the enclave serves mutual TLS
        #: as ``enclave`` and this manager calls it as ``platform``.
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None
        self._started: list[EnclaveHandle] = []

    def create(
        self, job: str | None, manifest: Manifest, *, kem: str = "X25519", cluster: ClusterDirs | None = None,
        entry: str = "sharedml.tee.enclave",
    ) -> EnclaveHandle:
        """Start an enclave for ``job``, or (``job=None``) a service enclave that opens jobs on request.

        ``cluster``: the shared sealed-state folder and the trust anchors members verify each other with.
        ``entry``: the enclave's module (``sharedml.tee.enclave.serve_rpc``: a scoring enclave).
        """
        eid = uuid.uuid4().hex[:10]
        home = self.home / eid
        home.mkdir(mode=0o700)
        (home / "manifest.json").write_text(manifest.to_json())
        sock = home / "qe.sock"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        qe = subprocess.Popen(
            [sys.executable, "-m", "sharedml.tee.attestation.simqe", "--platform", str(self.platform_dir),
             "--manifest", str(home / "manifest.json"), "--socket", str(sock)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        _await_line(qe, "ready", self.start_timeout, "quoting process")
        proc = subprocess.Popen(
            [sys.executable, "-m", entry, *(["--job", job] if job else []),
             "--workdir", str(home / "work"), "--qe", str(sock), "--kem", kem,
             *(["--client-ca", str(self.tls_dir / "ca.pem")] if self.tls_dir else []),
             *(["--state-dir", str(cluster.state), "--trust", str(cluster.trust)] if cluster else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            port = _await_line(proc, "listening ", self.start_timeout, "enclave")
        except SharedMLError:
            qe.kill()
            raise
        address = f"127.0.0.1:{port}"
        handle = EnclaveHandle(eid, job, address, home, manifest, proc, qe)
        try:
            handle.certificate = fetch_certificate(address, tls_dir=self.tls_dir,
                                                   tls_name="platform" if self.tls_dir else None)
        except SharedMLError:
            self.destroy(handle)
            raise
        self.audit.append("enclave.create", enclave=eid, job=job, svn=manifest.svn, pid=proc.pid)
        self._started.append(handle)
        return handle

    def stop_all(self) -> int:
        """Destroy every enclave this manager started that still runs (shutdown, or a failed caller)."""
        running = [h for h in self._started if h.process.poll() is None or h.quoting.poll() is None]
        for handle in running:
            try:
                self.destroy(handle)
            except SharedMLError:
                handle.process.kill()
                handle.quoting.kill()
        self._started = []
        return len(running)

    def client(self, handle: EnclaveHandle, party: str = "platform") -> EnclaveClient:
        """A connection to ``handle`` as ``party``, pinned to the enclave's own certificate.

        The pin is only as good as the attestation that binds it: callers run
        :func:`~sharedml.tee.ratls.attest_enclave` before trusting the channel.
        """
        return EnclaveClient(handle.address, server_certificate=handle.certificate,
                             tls_dir=self.tls_dir, tls_name=party if self.tls_dir else None)

    def verify(self, handle: EnclaveHandle, policy: Policy) -> Claims:
        """The platform's own attestation of an enclave it started (canary check)."""
        client = self.client(handle)
        try:
            handle.claims, handle.bundle = attest_enclave(client, self.verifier, policy)
            return handle.claims
        finally:
            client.close()

    def heartbeat(self, handle: EnclaveHandle, timeout: float = 2.0) -> bool:
        if handle.process.poll() is not None:
            return False
        client = self.client(handle)
        try:
            client.status(timeout=timeout)
            return True
        except SharedMLError:
            return False
        finally:
            client.close()

    def destroy(self, handle: EnclaveHandle, timeout: float = 15.0) -> dict[str, Any]:
        """Destroy the enclave; the signed receipt goes to the audit log."""
        body: dict[str, Any] = {}
        if handle.process.poll() is None:
            client = self.client(handle)
            try:
                if handle.job is None:  # a service enclave: its jobs were destroyed one by one
                    body = client.call("Shutdown", {})
                    self.audit.append("enclave.shutdown", enclave=handle.id, jobs_destroyed=body["destroyed"])
                else:
                    receipt = client.destroy()
                    body = verify_receipt(receipt, handle.bundle) if handle.bundle else json.loads(receipt["receipt"])
                    self.audit.append("enclave.destroy", enclave=handle.id, receipt=receipt)
            finally:
                client.close()
        for proc in (handle.process, handle.quoting):
            if proc.poll() is None and proc is handle.quoting:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        (handle.home / "qe.sock").unlink(missing_ok=True)
        return body
