"""TEE jobs on the platform: ``scheme: tee`` specs run by an enclave node (§6.3, 8.6-2, 9.4-7).

The platform is the *computing platform manager*: it schedules the job on an
enclave node, relays, stores and audits — it never holds a data key, a row or
a model in clear.

Roles:

* an **enclave node** — a service enclave (``python -m sharedml.tee.enclave``
  without ``--job``, e.g. started by :class:`~sharedml.tee.manager.EnclaveManager`
  on a TEE host) registered with :meth:`TeeJobs.add_enclave`: its address and
  the TLS certificate it presents. The platform attests it against the
  deployment's :class:`~sharedml.tee.attestation.base.Policy` (the evidence
  must bind that certificate's key, RA-TLS) before scheduling any job on it;
* the **providers** — every party of the spec attests the job in that enclave
  against its *own* policy and uploads its dataset straight to it, encrypted to
  the job's attested key (:class:`~sharedml.tee.provider.Provider`,
  ``sharedml tee provider upload``); the platform gives them only the address
  and the certificate (:meth:`TeeJobs.where`), which their attestation checks.

Steps, per job (``Job.result["tee"]["stage"]``):

1. *submit* — the spec is checked against :mod:`sharedml.tee.scheme` (a step or
   parameter the enclave would ignore is refused now); the job is stored,
   scheduled on an attested enclave node, and opened there (operator call);
   the platform attests the job's key bundle to check the receipt later;
   stage ``uploading``;
2. *run* — once every party's upload is complete (the enclave's ``Status``,
   polled by :meth:`tick`), the platform asks the enclave to run the spec's
   steps; each step's metrics go to ``Job.result["steps"]`` as the enclave
   releases them (only if every owner's policy allows metrics), and every
   model and score set the policies release to the label holder is fetched
   *sealed to the holder's release key* and kept for it
   (:meth:`released`) — ciphertext the platform cannot open;
3. *destroy* — the job is destroyed in the enclave; its signed receipt is
   checked against the attested key bundle, stored in the job's result and
   its digest written to the platform's audit log (``tee.destroy``).

A failure at any step fails the job with a reason naming the party and step,
and the job is still destroyed in the enclave.

Reveals to the platform: the spec, the enclave's evidence and claims, who has
uploaded, the released metrics, the sizes of the sealed releases, the receipt.
Security model: the platform is trusted for availability only; what a provider
sends is protected by its own attestation and policy.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sharedml.components import jobspec
from sharedml.errors import ConfigError, SharedMLError
from sharedml.platform.job_book import JobBook
from sharedml.platform.job_lifecycle import move
from sharedml.platform.store.models import Job
from sharedml.tee import scheme
from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.envelope import KeyBundle
from sharedml.tee.job import job_roles
from sharedml.tee.ratls import attest_enclave


@dataclass
class EnclaveNode:
    """An attested service enclave the platform schedules TEE jobs on."""

    name: str
    address: str
    certificate: bytes
    measurement: str = ""


class TeeJobs:
    """The platform's TEE jobs over the scheduler's store (module docstring)."""

    def __init__(self, book: JobBook, home: str | Path, verifier: Verifier, policy: Policy, *,
                 tls_dir: str | Path | None = None) -> None:
        self.book = book
        self.home = Path(home)
        self.verifier, self.policy = verifier, policy
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None
        self.nodes: dict[str, EnclaveNode] = {}
        self._bundles: dict[str, KeyBundle] = {}  # job -> the key bundle attested at open
        self._lock = threading.Lock()

    # -- enclave nodes -----------------------------------------------------------
    def _client(self, node: EnclaveNode) -> EnclaveClient:
        return EnclaveClient(node.address, server_certificate=node.certificate, tls_dir=self.tls_dir,
                             tls_name="platform" if self.tls_dir else None)

    def add_enclave(self, name: str, address: str, certificate: bytes) -> EnclaveNode:
        """Attest the service enclave at ``address`` (its TLS key bound) and schedule jobs on it."""
        node = EnclaveNode(name, address, certificate)
        client = self._client(node)
        try:
            claims, _ = attest_enclave(client, self.verifier, self.policy)
        finally:
            client.close()
        node.measurement = claims.measurement
        with self.book.tx():
            self.book.audit("tee.enclave.add", name, {"address": address, "measurement": claims.measurement,
                                                      "svn": claims.svn})
        self.nodes[name] = node
        return node

    def where(self, job_id: str) -> dict[str, Any]:
        """What a provider needs to reach the job's enclave: address and certificate (to pin, then attest)."""
        tee = self._tee(job_id)
        node = self.nodes[tee["enclave"]]
        return {"job": job_id, "address": node.address, "certificate": node.certificate.decode(),
                "stage": tee["stage"]}

    # -- 1. submit ---------------------------------------------------------------
    def submit(self, spec: dict[str, Any], *, created_by: int | None = None, project_id: int | None = None,
               actor: str = "scheduler") -> str:
        parsed = jobspec.load(spec)
        scheme.check_steps(parsed.parsed_steps())
        holder, label, id_column = job_roles(parsed)
        if not self.nodes:
            raise ConfigError("no enclave node is registered for TEE jobs",
                              remedy="start a service enclave and register it (TeeJobs.add_enclave)")
        node = sorted(self.nodes.values(), key=lambda n: n.name)[0]
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = Job(name=parsed.name, spec=json.dumps(spec), scheme="tee", created_by=created_by,
                      project_id=project_id, created_at=now, updated_at=now, max_attempts=1,
                      result={"steps": {}, "tee": {"enclave": node.name, "stage": "opening", "holder": holder,
                                                   "label": label, "id": id_column}})
            s.add(job)
            s.flush()
            job_id = job.id
            self.book.audit("job.submit", job_id, {"name": parsed.name, "scheme": "tee",
                                                   "enclave": node.name}, actor)
        try:
            client = self._client(node)
            try:
                client.open(job_id)
                _, bundle = attest_enclave(client.for_job(job_id), self.verifier, self.policy)
            finally:
                client.close()
        except SharedMLError as exc:
            self._fail(job_id, f"opening the job in enclave node {node.name!r}: {exc}")
            return job_id
        if bundle is None:
            self._fail(job_id, f"enclave node {node.name!r} attested no key for the job")
            return job_id
        self._bundles[job_id] = bundle
        self._update(job_id, "uploading", state="running",
                     reason=f"waiting for uploads from {', '.join(sorted(parsed.parties))}")
        return job_id

    # -- 2./3. the loop ----------------------------------------------------------
    def tick(self) -> None:
        """Start steps 2-3 (in a thread of its own) for every TEE job whose uploads are complete."""
        with self.book.tx() as s:
            ids = [j.id for j in s.scalars(select(Job).where(Job.scheme == "tee", Job.state == "running"))]
        for job_id in ids:
            with self._lock:
                if self._tee(job_id)["stage"] != "uploading" or not self._uploaded(job_id):
                    continue
                self._update(job_id, "running", reason="the enclave runs the job's steps")
            threading.Thread(target=self._finish, args=(job_id,), name=f"tee-{job_id}", daemon=True).start()

    def _uploaded(self, job_id: str) -> bool:
        parties = set(jobspec.load(self._spec(job_id)).parties)
        client = self._client(self.nodes[self._tee(job_id)["enclave"]]).for_job(job_id)
        try:
            return parties <= set(client.status(timeout=5.0).get("uploads", []))
        except SharedMLError:
            return False  # the next tick asks again; a dead node is the job's timeout
        finally:
            client.close()

    def _finish(self, job_id: str) -> None:
        tee = self._tee(job_id)
        steps = jobspec.load(self._spec(job_id)).parsed_steps()
        client = self._client(self.nodes[tee["enclave"]]).for_job(job_id)
        try:
            answer = client.run({"steps": scheme.wire_steps(steps), "label": tee["label"], "id": tee["id"]})
            released = self._fetch(client, job_id, tee["holder"], answer)
            results = {s["id"]: {"enclave": {"metrics": s["metrics"], "seconds": s.get("seconds", 0.0)}}
                       for s in answer["steps"]}
            failure = None
        except SharedMLError as exc:
            results, released, failure = {}, {}, f"enclave run: {exc}"
        receipt = self._destroy(client, job_id)
        client.close()
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            result = dict(job.result or {})
            result["steps"] = results
            result["tee"] = {**tee, "stage": "finished", "released": released, "receipt": receipt}
            job.result = result
            move(job, "failed" if failure or receipt is None else "succeeded", now,
                 failure or (None if receipt else "the enclave gave no valid destruction receipt"))

    def _fetch(self, client: EnclaveClient, job_id: str, holder: str, answer: dict[str, Any]) -> dict[str, Any]:
        """Every release the policies allow the label holder: sealed blobs kept under ``home/<job>/``."""
        out: dict[str, Any] = {}
        folder = self.home / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for what, steps in (("model", answer.get("models", [])), ("scores", answer.get("scores", []))):
            for step in steps:
                try:
                    sealed = client.result(holder, what, step)
                except SharedMLError as exc:  # not released by some owner's policy
                    out[f"{what}:{step}"] = {"withheld": str(exc)[:300]}
                    continue
                path = folder / f"{what}-{step}.sealed"
                path.write_bytes(sealed)
                out[f"{what}:{step}"] = {"to": holder, "bytes": len(sealed), "path": str(path)}
        return out

    def released(self, job_id: str, party: str, what: str, step: str) -> bytes:
        """A release sealed to ``party`` (only it can open it: :meth:`~sharedml.tee.provider.Provider.open_release`)."""
        entry = self._tee(job_id).get("released", {}).get(f"{what}:{step}")
        if not entry or entry.get("to") != party or "path" not in entry:
            raise ConfigError(f"no {what} of step {step!r} was released to {party!r} in job {job_id}",
                              party=party, step=step)
        return Path(entry["path"]).read_bytes()

    def _destroy(self, client: EnclaveClient, job_id: str) -> dict[str, Any] | None:
        """Destroy the job in the enclave; verify, store and audit the receipt."""
        try:
            receipt = client.call("Destroy", {})["receipt"]
            body = verify_receipt(receipt, self._bundles[job_id])
        except (SharedMLError, KeyError) as exc:
            with self.book.tx():
                self.book.audit("tee.destroy.failed", job_id, {"reason": str(exc)[:500]})
            return None
        digest = hashlib.sha256(json.dumps(receipt, sort_keys=True).encode()).hexdigest()
        with self.book.tx():
            self.book.audit("tee.destroy", job_id, {"receipt_sha256": digest, "enclave": body.get("enclave"),
                                                    "files_removed": body.get("files_removed")})
        return {**receipt, "sha256": digest}

    # -- the store -----------------------------------------------------------------
    def _tee(self, job_id: str) -> dict[str, Any]:
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            if job.scheme != "tee":
                raise ConfigError(f"job {job_id} is not a TEE job")
            return dict((job.result or {}).get("tee", {}))

    def _spec(self, job_id: str) -> dict[str, Any]:
        with self.book.tx() as s:
            spec: dict[str, Any] = json.loads(self.book.job(s, job_id).spec)
            return spec

    def _update(self, job_id: str, stage: str, *, state: str | None = None, reason: str | None = None) -> None:
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            job.result = {**(job.result or {}), "tee": {**(job.result or {}).get("tee", {}), "stage": stage}}
            if state is not None:
                move(job, state, now, reason)
            elif reason is not None:
                job.reason = reason

    def _fail(self, job_id: str, reason: str) -> None:
        now = self.book.clock.now()
        with self.book.tx() as s:
            move(self.book.job(s, job_id), "failed", now, reason)
            self.book.audit("job.fail", job_id, {"reason": reason[:500]})

    def receipt(self, job_id: str) -> dict[str, Any]:
        """The job's stored destruction receipt (``receipt``, ``signature``, ``sha256``)."""
        receipt = self._tee(job_id).get("receipt")
        if not receipt:
            raise ConfigError(f"job {job_id} has no destruction receipt (yet)", step="destroy",
                              remedy="wait until the job has finished")
        return dict(receipt)


