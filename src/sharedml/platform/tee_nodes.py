"""Enclave nodes as the platform schedules them: stored, probed, attested (§6.3, 8.5-1).

An enclave node is a row of the ``nodes`` table with ``role = 'enclave'``
whose ``address`` is a service enclave's RA-TLS endpoint. Two kinds of rows:

* an **enclave node agent** (``sharedml node`` with ``role: enclave``,
  :mod:`sharedml.node.enclave_host`) says hello and heartbeats like every node;
  its row survives a platform restart and goes offline when it falls silent;
* a **fixed endpoint** (the ``tee.enclaves`` list of the platform's config, or
  ``POST /api/v1/tee/enclaves``) has no agent: the platform writes its row.

For both, the platform itself asks the enclave (``Status``) every
:data:`PROBE_S` seconds and counts an answer as a heartbeat: an enclave that
answers is online whoever runs it. Before the first job goes to a node — and
again whenever its address changes — the platform attests it against its own
policy (:func:`~sharedml.tee.ratls.attest_enclave`: the evidence must bind the
TLS key it presents); a node that fails is refused (audited) until its
address changes. Nothing here holds a key or sees data: evidence, claims,
addresses and certificates only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from sharedml.errors import PeerTimeout, PeerUnreachable, PolicyDenied, SharedMLError
from sharedml.platform.job_book import JobBook
from sharedml.platform.store.models import Node
from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.ratls import attest_enclave, fetch_certificate

#: How often the platform asks each enclave node's enclave whether it answers (seconds).
PROBE_S = 2.0


@dataclass(frozen=True)
class EnclaveNode:
    """An attested service enclave: where it is, the certificate it proved, what it runs."""

    name: str
    address: str
    certificate: bytes
    measurement: str


class EnclaveNodes:
    """The enclave nodes of the store, attested against the platform's policy before use."""

    def __init__(self, book: JobBook, verifier: Verifier, policy: Policy, *,
                 tls_dir: str | Path | None = None) -> None:
        self.book = book
        self.verifier, self.policy = verifier, policy
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None
        self._attested: dict[str, EnclaveNode] = {}
        self._refused: dict[str, str] = {}  # node -> the address whose enclave failed attestation
        self._probed = 0.0

    def client(self, address: str, certificate: bytes) -> EnclaveClient:
        """A connection pinned to ``certificate`` (as the operator, under mutual TLS)."""
        return EnclaveClient(address, server_certificate=certificate, tls_dir=self.tls_dir,
                             tls_name="platform" if self.tls_dir else None)

    def declare(self, name: str, address: str) -> None:
        """A fixed endpoint of the config: stored offline until its enclave answers and attests."""
        self._store(name, address, online=False)

    def add(self, name: str, address: str) -> EnclaveNode:
        """A fixed endpoint registered at run time: attest it now (raises if it fails), store it."""
        node = self._attest(name, address)
        self._store(name, address, online=True)
        self.book.heard(name, self.book.clock.now())
        self._attested[name] = node
        return node

    def _store(self, name: str, address: str, *, online: bool) -> None:
        now = self.book.clock.now()
        with self.book.tx() as s:
            row = s.get(Node, name)
            if row is None:
                row = Node(id=name, party=name, role="enclave", registered_at=now)
                s.add(row)
            elif row.role != "enclave":
                raise PolicyDenied(f"node {name!r} is registered as a {row.role} node", party=name,
                                   remedy="choose another name for the enclave")
            row.address = address
            if online:
                row.status, row.last_heartbeat = "online", now

    def probe(self, force: bool = False) -> None:
        """Ask every enclave node's enclave (at most every :data:`PROBE_S`); an answer is a heartbeat."""
        if not force and time.monotonic() - self._probed < PROBE_S:
            return
        self._probed = time.monotonic()
        with self.book.store.reading() as s:
            rows = [(n.id, n.address, n.status) for n in s.scalars(select(Node).where(Node.role == "enclave"))]
        for name, address, status in rows:
            node = self.attested(name, address)
            if node is None or not self._answers(node):
                continue
            now = self.book.clock.now()
            self.book.heard(name, now)
            if status != "online":
                with self.book.tx() as s:
                    row = s.get(Node, name)
                    if row is not None:
                        row.status, row.last_heartbeat = "online", now

    def _answers(self, node: EnclaveNode) -> bool:
        client = self.client(node.address, node.certificate)
        try:
            client.status(timeout=5.0)
            return True
        except SharedMLError:
            self._attested.pop(node.name, None)  # a new enclave there must prove itself again
            return False
        finally:
            client.close()

    def attested(self, name: str, address: str) -> EnclaveNode | None:
        """The node's enclave at ``address``, attested (once per address); ``None`` if it fails."""
        known = self._attested.get(name)
        if known is not None and known.address == address:
            return known
        if self._refused.get(name) == address:
            return None
        try:
            node = self._attest(name, address)
        except (PeerUnreachable, PeerTimeout):
            return None  # not up (yet): asked again at the next probe
        except SharedMLError as exc:
            self._refused[name] = address
            with self.book.tx():
                self.book.audit("tee.enclave.refused", name, {"address": address, "reason": str(exc)[:300]})
            return None
        self._attested[name] = node
        self._refused.pop(name, None)
        return node

    def _attest(self, name: str, address: str) -> EnclaveNode:
        certificate = fetch_certificate(address, tls_dir=self.tls_dir,
                                        tls_name="platform" if self.tls_dir else None)
        client = self.client(address, certificate)
        try:
            claims, _ = attest_enclave(client, self.verifier, self.policy)
        finally:
            client.close()
        with self.book.tx():
            self.book.audit("tee.enclave.attested", name, {"address": address, "measurement": claims.measurement,
                                                           "svn": claims.svn})
        return EnclaveNode(name, address, certificate, claims.measurement)

    def pick(self) -> EnclaveNode | None:
        """An online, attested enclave node for a new job (the first by name)."""
        with self.book.store.reading() as s:
            rows = [(n.id, n.address) for n in s.scalars(
                select(Node).where(Node.role == "enclave", Node.status == "online").order_by(Node.id))]
        for name, address in rows:
            node = self.attested(name, address)
            if node is not None:
                return node
        return None

    def online(self, name: str, address: str) -> bool:
        """Whether node ``name`` is online and still at ``address`` (its enclave not replaced)."""
        with self.book.store.reading() as s:
            row = s.get(Node, name)
            return row is not None and row.status == "online" and row.address == address
