"""The jobs one enclave process serves: each an :class:`~.runtime.Enclave` with its own keys and lock.

A *service* enclave (no ``--job``) opens jobs on request and keeps serving;
a *single-job* enclave (``--job J``) has exactly one and exits when it is
destroyed. Every job has its own data key bundle born inside, its own state
machine and its own destruction receipt; the process has one TLS key.

While *retiring* (an upgrade is moving work to a newer enclave) the process
refuses to open new jobs — the caller resolves the service again and lands
on the new enclave — and finishes the jobs it has (8.6-6: transparent to users).

The *ledger* lists every finished job with the SHA-256 of its signed receipt;
cluster members keep it as sealed state (:mod:`.cluster_face`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sharedml.errors import PolicyDenied, ProtocolAbort, SharedMLError
from sharedml.tee.enclave.runtime import Enclave

JobFactory = Callable[[str], Enclave]
log = logging.getLogger("sharedml.tee.enclave")


class JobTable:
    def __init__(self, factory: JobFactory | None, *, default: Enclave | None = None) -> None:
        self._factory = factory
        self._jobs: dict[str, tuple[Enclave, threading.Lock]] = {}
        self.default = default.job if default is not None else None
        if default is not None:
            self._jobs[default.job] = (default, threading.Lock())
        self.retiring = False
        self.ledger: list[dict[str, Any]] = []
        #: Called after a job is destroyed (the cluster face seals the ledger).
        self.on_finished: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def single(self) -> bool:
        return self._factory is None

    def open(self, job: str) -> Enclave:
        with self._lock:
            if self.retiring:
                raise PolicyDenied("this enclave is retiring and opens no new job", step="open",
                                   remedy="resolve the service again: a newer enclave serves new jobs")
            if self._factory is None:
                raise PolicyDenied("a single-job enclave opens no other job", step="open")
            if job in self._jobs or not job or len(job) > 128:
                raise ProtocolAbort(f"job {job!r} is open already or malformed", step="open")
            enclave = self._factory(job)
            self._jobs[job] = (enclave, threading.Lock())
            return enclave

    def get(self, job: str | None) -> tuple[Enclave, threading.Lock]:
        name = job or self.default
        with self._lock:
            found = self._jobs.get(name) if name is not None else None
        if found is None:
            raise ProtocolAbort(f"no open job {name!r} in this enclave", step="job",
                                remedy="open the job first (Open), or resolve the service again")
        return found

    def replace_default(self, enclave: Enclave) -> None:
        with self._lock:
            if self.default is not None:
                self._jobs.pop(self.default, None)
            self.default = enclave.job
            self._jobs[enclave.job] = (enclave, threading.Lock())

    def destroy(self, job: str | None) -> dict[str, Any]:
        """Destroy one job; its receipt's digest goes on the ledger."""
        enclave, lock = self.get(job)
        with lock:
            receipt = enclave.destroy()
        digest = hashlib.sha256(json.dumps(receipt, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self._jobs.pop(enclave.job, None)
            self.ledger.append({"job": enclave.job, "receipt_sha256": digest})
        if self.on_finished is not None:
            try:
                self.on_finished()
            except SharedMLError as exc:  # bookkeeping never fails a finished job
                log.warning("sealing the ledger failed after %s: %s", enclave.job, exc)
        return receipt

    def destroy_all(self) -> int:
        names = self.names()
        for name in names:
            self.destroy(name)
        return len(names)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

    def status(self) -> dict[str, Any]:
        return {"jobs": self.names(), "retiring": self.retiring, "finished": len(self.ledger)}
