"""TEE jobs on the platform: ``scheme: tee`` specs run by an enclave node (§6.3, 8.6-2, 9.4-7).

The platform is the *computing platform manager*: it places the job on an
enclave node, relays, stores and audits — it never holds a data key, a row or
a model in clear.

Roles:

* an **enclave node** — a service enclave the platform knows from the store
  (:mod:`sharedml.platform.tee_nodes`: an enclave node agent that says hello,
  or a fixed endpoint of the platform's config); the platform attests it
  against its own :class:`~sharedml.tee.attestation.base.Policy` (the evidence
  must bind the TLS key it presents, RA-TLS) before placing a job on it;
* the **providers** — every party of the spec attests the job in that enclave
  against its *own* policy and uploads its dataset straight to it, encrypted to
  the job's attested key (:class:`~sharedml.tee.provider.Provider`,
  ``sharedml tee provider upload``); the platform gives them only the address
  and the certificate (:meth:`TeeJobs.where`), which their attestation checks.

Steps, per job (``Job.result["tee"]``: ``stage``, ``attempt``, the node, its
address and certificate, the attested key bundle — all in the store, so a
platform restart loses nothing):

1. *submit* — the spec is checked against :mod:`sharedml.tee.scheme` (a step or
   parameter the enclave would ignore is refused now), and each ``predict
   {model:}`` must name a TEE version the REST API resolved whose sealed blob
   the platform keeps (:mod:`sharedml.platform.tee_models`); the job is stored
   (stage ``scheduling``);
2. *dispatch* — on an online, attested enclave node the job is opened
   (operator call) and its key bundle attested, so the receipt can be checked
   later; stage ``uploading``. No node, or a node that fails to open it: the
   job waits or tries again at the next tick, at most ``max_attempts`` times;
3. *run* — once every party's upload is complete (the enclave's ``Status``),
   the enclave runs the spec's steps (with the sealed blobs of the models its
   ``predict`` steps score, which the enclave checks and unseals); each step's metrics go to
   ``Job.result["steps"]`` as the enclave releases them (only if every owner's
   policy allows metrics), and every model and score set the policies release
   to the label holder is fetched *sealed to the holder's release key* and kept
   for it (:meth:`released`) — ciphertext the platform cannot open; each
   ``train`` step's model, sealed to the enclave's identity, is kept and
   registered when the job succeeds (:mod:`sharedml.platform.tee_models`);
4. *destroy* — the job is destroyed in the enclave; its signed receipt is
   checked against the attested key bundle, stored in the job's result and
   its digest written to the platform's audit log (``tee.destroy``).

**Retries.** An attempt is lost when its enclave node goes offline, is
replaced (a new address: the uploads died with the old enclave), no longer
knows the job, or stops answering during the run: the job goes back to step 2
(attempt + 1) and its providers upload again to the enclave :meth:`where`
names now. A platform restart during step 3 loses the attempt likewise (the
run's answer had no one to go to). A step that fails inside the enclave
(bad data, a refused parameter, a policy) fails the job at once: running it
again would fail again. Every failure names the party and step, and the job
is destroyed in its enclave — a canceled job too, at the next tick, with its
receipt stored (9.4-7: uploads do not outlive their job).

Reveals to the platform: the spec, the enclave's evidence and claims, who has
uploaded, the released metrics, the sizes of the sealed releases, each model
sealed to the enclave (its size and SHA-256), the receipt. The platform dials
enclaves with its deployment certificate (``tls_dir``: mutual TLS over RA-TLS).
Security model: the platform is trusted for availability only; what a provider
sends is protected by its own attestation and policy.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sharedml.components import jobspec
from sharedml.errors import ConfigError, PeerTimeout, PeerUnreachable, SharedMLError
from sharedml.platform.job_book import JobBook
from sharedml.platform.job_lifecycle import move
from sharedml.platform.store.models import Job
from sharedml.platform.tee_models import SealedRegistry, SealedShelf
from sharedml.platform.tee_nodes import EnclaveNode, EnclaveNodes
from sharedml.platform.tee_run import finish, tee_destroy
from sharedml.tee import scheme
from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.envelope import KeyBundle
from sharedml.tee.job import job_roles
from sharedml.tee.ratls import attest_enclave

#: Transport failures: the attempt is lost, the job tries again; anything else is the job's own.
LOST = (PeerUnreachable, PeerTimeout)


class TeeJobs:
    """The platform's TEE jobs over the scheduler's store (module docstring)."""

    def __init__(self, book: JobBook, home: str | Path, verifier: Verifier, policy: Policy, *,
                 tls_dir: str | Path | None = None, registry: SealedRegistry | None = None) -> None:
        self.book = book
        self.home = Path(home)
        #: Sealed models: kept under ``home``, registered in ``registry`` (none: kept, not registered).
        self.shelf, self.registry = SealedShelf(self.home), registry
        self.nodes = EnclaveNodes(book, verifier, policy, tls_dir=tls_dir)
        self.verifier, self.policy = verifier, policy
        self._running: set[str] = set()  # jobs whose step 3 runs in a thread of this process
        self._busy: set[str] = set()  # jobs a thread is dispatching or watching right now
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, book: JobBook, config: Any, data_dir: Path, *, registry: SealedRegistry | None = None,
                    tls_dir: Path | None = None) -> TeeJobs:
        """From the platform config's ``tee:`` (:class:`~sharedml.platform.tee_config.TeeConfig`);
        its fixed endpoints go online once they answer and attest (:meth:`EnclaveNodes.probe`).
        ``tls_dir``: the deployment's PKI, whose ``platform`` certificate it dials enclaves with."""
        jobs = cls(book, config.home or data_dir / "tee", config.verifier(), config.policy.policy(),
                   registry=registry, tls_dir=tls_dir)
        for endpoint in config.enclaves:
            jobs.nodes.declare(endpoint.name, endpoint.address)
        return jobs

    def add_enclave(self, name: str, address: str, certificate: bytes | None = None) -> EnclaveNode:
        """Register the fixed endpoint ``address`` (attested now; a given ``certificate`` must match)."""
        node = self.nodes.add(name, address)
        if certificate is not None and certificate.strip() != node.certificate.strip():
            raise ConfigError(f"enclave {name!r} at {address} presents another certificate than the one given",
                              party=name, step="register", remedy="give the certificate it serves now, or none")
        return node

    def where(self, job_id: str) -> dict[str, Any]:
        """What a provider needs to reach the job's enclave: address and certificate (to pin, then attest)."""
        tee = self._tee(job_id)
        if "address" not in tee:
            return {"job": job_id, "stage": tee["stage"], "address": None, "certificate": None,
                    "attempt": tee.get("attempt", 0)}
        return {"job": job_id, "address": tee["address"], "certificate": tee["certificate"],
                "stage": tee["stage"], "attempt": tee.get("attempt", 0)}

    # -- 1. submit ---------------------------------------------------------------
    def submit(self, spec: dict[str, Any], *, created_by: int | None = None, project_id: int | None = None,
               actor: str = "scheduler", max_attempts: int = 3) -> str:
        parsed = jobspec.load(spec)
        scheme.check_steps(parsed.parsed_steps())
        self.shelf.check(parsed.parsed_steps())
        holder, label, id_column = job_roles(parsed)
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = Job(name=parsed.name, spec=json.dumps(spec), scheme="tee", created_by=created_by,
                      project_id=project_id, created_at=now, updated_at=now, max_attempts=max_attempts,
                      result={"steps": {}, "tee": {"stage": "scheduling", "attempt": 0, "holder": holder,
                                                   "label": label, "id": id_column}})
            s.add(job)
            s.flush()
            job_id = job.id
            self.book.audit("job.submit", job_id, {"name": parsed.name, "scheme": "tee"}, actor)
        self._one_at_a_time(job_id, self._dispatch)
        return job_id

    def _one_at_a_time(self, job_id: str, step: Callable[[str], None]) -> None:
        """Run ``step`` for the job unless another thread (the API's submit, the loop) is at it."""
        with self._lock:
            if job_id in self._busy or job_id in self._running:
                return
            self._busy.add(job_id)
        try:
            step(job_id)
        finally:
            with self._lock:
                self._busy.discard(job_id)

    # -- 2. dispatch -------------------------------------------------------------
    def _dispatch(self, job_id: str) -> None:
        if self._tee(job_id).get("stage") != "scheduling":
            return
        node = self.nodes.pick()
        if node is None:
            self._note(job_id, "waiting for an attested enclave node (none is online)")
            return
        client = self.nodes.client(node.address, node.certificate)
        try:
            client.open(job_id)
            _, bundle = attest_enclave(client.for_job(job_id), self.verifier, self.policy)
            if bundle is None:
                raise ConfigError(f"enclave node {node.name!r} attested no key for the job", party=node.name)
        except SharedMLError as exc:
            self._attempt_lost(job_id, f"opening the job in enclave node {node.name!r}: {exc}")
            return
        finally:
            client.close()
        parties = ", ".join(sorted(jobspec.load(self._spec(job_id)).parties))
        self._update(job_id, "uploading", state="running", reason=f"waiting for uploads from {parties}",
                     enclave=node.name, address=node.address, certificate=node.certificate.decode(),
                     bundle=bundle.to_bytes().hex())
        with self.book.tx():
            self.book.audit("tee.dispatch", job_id, {"enclave": node.name, "measurement": node.measurement,
                                                     "attempt": self._tee(job_id).get("attempt", 0)})

    def _attempt_lost(self, job_id: str, reason: str) -> None:
        """This attempt cannot finish: try again (step 2) while attempts remain, else fail."""
        tee = self._tee(job_id)
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            attempt, limit = int(tee.get("attempt", 0)) + 1, job.max_attempts
        if attempt >= limit:
            self._fail(job_id, f"{reason} (attempt {attempt} of {limit}; no attempt left)")
            return
        self._update(job_id, "scheduling", reason=f"{reason}; trying again (attempt {attempt + 1} of {limit}): "
                     "providers upload again", attempt=attempt, drop=("enclave", "address", "certificate", "bundle"))
        with self.book.tx():
            self.book.audit("job.retry", job_id, {"reason": reason[:500], "attempt": attempt})

    # -- the loop ----------------------------------------------------------------
    def tick(self) -> None:
        """Probe enclave nodes; dispatch waiting jobs; start step 3 (a thread each) when uploads are in."""
        self.nodes.probe()
        with self.book.tx() as s:
            live = [(j.id, dict((j.result or {}).get("tee", {}))) for j in
                    s.scalars(select(Job).where(Job.scheme == "tee", Job.state.in_(("pending", "running"))))]
        for job_id, tee in live:
            if tee.get("stage") == "scheduling":
                self._one_at_a_time(job_id, self._dispatch)
            elif tee.get("stage") == "uploading":
                self._one_at_a_time(job_id, self._watch_uploads)
        with self.book.tx() as s:
            canceled = [j.id for j in s.scalars(select(Job).where(Job.scheme == "tee", Job.state == "canceled"))
                        if (j.result or {}).get("tee", {}).get("stage") in ("uploading", "running")]
        for job_id in canceled:
            self._one_at_a_time(job_id, self._destroy_canceled)

    def _destroy_canceled(self, job_id: str) -> None:
        """A canceled job's uploads must not outlive it in the enclave (9.4-7): destroy, keep the receipt."""
        tee = self._tee(job_id)
        client = self._job_client(job_id, tee)
        try:
            receipt = tee_destroy(client, self.book, job_id, self._bundle(tee))
        finally:
            client.close()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            job.result = {**(job.result or {}), "tee": {**tee, "stage": "finished", "receipt": receipt}}

    def _watch_uploads(self, job_id: str) -> None:
        tee = self._tee(job_id)
        if tee.get("stage") != "uploading":
            return
        if not self.nodes.online(tee["enclave"], tee["address"]):
            self._abandon(job_id, tee, f"enclave node {tee['enclave']!r} went offline or was replaced "
                          "while providers uploaded")
            return
        parties = set(jobspec.load(self._spec(job_id)).parties)
        client = self._job_client(job_id, tee)
        try:
            uploads = set(client.status(timeout=5.0).get("uploads", []))
        except LOST:
            return  # asked again next tick; a dead node goes offline and loses the attempt
        except SharedMLError as exc:  # the enclave no longer knows the job
            self._abandon(job_id, tee, f"enclave node {tee['enclave']!r}: {exc}")
            return
        finally:
            client.close()
        with self._lock:
            if not parties <= uploads or job_id in self._running:
                return
            self._running.add(job_id)
        self._update(job_id, "running", reason="the enclave runs the job's steps")
        threading.Thread(target=self._finish, args=(job_id,), name=f"tee-{job_id}", daemon=True).start()

    def _finish(self, job_id: str) -> None:
        tee = self._tee(job_id)
        client = self._job_client(job_id, tee)
        try:
            outcome = finish(client, self.book, job_id, self._spec(job_id), tee, self.home / job_id, self.shelf)
        finally:
            client.close()
            with self._lock:
                self._running.discard(job_id)
        if outcome.lost is not None:
            self._attempt_lost(job_id, outcome.lost)
            return
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            result = dict(job.result or {})
            result["steps"] = outcome.steps
            result["tee"] = {**tee, "stage": "finished", "released": outcome.released, "receipt": outcome.receipt}
            job.result = result
            failure = outcome.failure or (None if outcome.receipt else "the enclave gave no valid destruction receipt")
            if job.state == "running":  # (canceled while the enclave ran: it stays canceled)
                move(job, "failed" if failure else "succeeded", now, failure)
            if job.state == "succeeded" and self.registry is not None:
                kept = self.shelf.keep(outcome.sealed, {k: v["enclave"]["metrics"] for k, v in outcome.steps.items()})
                self.registry.record_sealed(s, job, kept)

    def _abandon(self, job_id: str, tee: dict[str, Any], reason: str) -> None:
        """Destroy what is left of the attempt in its enclave (if it still answers); try again."""
        client = self._job_client(job_id, tee)
        try:
            tee_destroy(client, self.book, job_id, self._bundle(tee))
        finally:
            client.close()
        self._attempt_lost(job_id, reason)

    def recover(self) -> list[str]:
        """On platform start: a job whose run this process no longer drives loses its attempt."""
        with self.book.tx() as s:
            ids = [j.id for j in s.scalars(select(Job).where(Job.scheme == "tee", Job.state == "running"))
                   if (j.result or {}).get("tee", {}).get("stage") == "running"]
        for job_id in ids:
            self._abandon(job_id, self._tee(job_id), "the platform restarted while the enclave ran the job")
        return ids

    # -- releases and receipts -----------------------------------------------------
    def released(self, job_id: str, party: str, what: str, step: str) -> bytes:
        """A release sealed to ``party`` (only it can open it: :meth:`~sharedml.tee.provider.Provider.open_release`)."""
        entry = self._tee(job_id).get("released", {}).get(f"{what}:{step}")
        if not entry or entry.get("to") != party or "path" not in entry:
            raise ConfigError(f"no {what} of step {step!r} was released to {party!r} in job {job_id}",
                              party=party, step=step)
        return Path(entry["path"]).read_bytes()

    def receipt(self, job_id: str) -> dict[str, Any]:
        """The job's stored destruction receipt (``receipt``, ``signature``, ``sha256``)."""
        receipt = self._tee(job_id).get("receipt")
        if not receipt:
            raise ConfigError(f"job {job_id} has no destruction receipt (yet)", step="destroy",
                              remedy="wait until the job has finished")
        return dict(receipt)

    # -- the store -----------------------------------------------------------------
    def _job_client(self, job_id: str, tee: dict[str, Any]) -> EnclaveClient:
        return self.nodes.client(tee["address"], tee["certificate"].encode()).for_job(job_id)

    @staticmethod
    def _bundle(tee: dict[str, Any]) -> KeyBundle:
        return KeyBundle.from_bytes(bytes.fromhex(tee["bundle"]))

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

    def _update(self, job_id: str, stage: str, *, state: str | None = None, reason: str | None = None,
                drop: tuple[str, ...] = (), **fields: Any) -> None:
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            tee = {k: v for k, v in (job.result or {}).get("tee", {}).items() if k not in drop}
            job.result = {**(job.result or {}), "tee": {**tee, **fields, "stage": stage}}
            if state is not None and state != job.state:
                move(job, state, now, reason)
            elif reason is not None:
                job.reason, job.updated_at = reason, now

    def _note(self, job_id: str, reason: str) -> None:
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            if job.reason != reason:
                job.reason = reason

    def _fail(self, job_id: str, reason: str) -> None:
        now = self.book.clock.now()
        with self.book.tx() as s:
            job = self.book.job(s, job_id)
            job.result = {**(job.result or {}), "tee": {**(job.result or {}).get("tee", {}), "stage": "finished"}}
            move(job, "failed", now, reason)
            self.book.audit("job.fail", job_id, {"reason": reason[:500]})
