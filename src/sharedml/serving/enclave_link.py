"""A serving party's attested connection to the scoring enclave (RA-TLS, mutual TLS).

The label holder's gateway and each partner's serving node reach the scoring
enclave (:mod:`sharedml.tee.enclave.serve`) through one :class:`EnclaveLink`:

1. fetch the certificate the enclave presents, presenting this party's
   deployment certificate (the enclave requires one and names the caller by it);
2. open a channel that trusts only that certificate;
3. attest: a fresh nonce, evidence that binds the pinned key, verified
   against *this party's* policy (measurement or signer + product + minimum
   svn, TCB, debug off; :func:`sharedml.tee.ratls.attest_enclave`).

Only then does a call go out. When the enclave cannot be reached (it
restarted: a new key, so the pinned channel fails), the link connects again
— steps 1-3 against the new key — once per failure, then retries the call;
``on_connect`` (the gateway's) runs after every new connection, before any
call uses it. An enclave that fails attestation is one
:class:`~sharedml.errors.AttestationError` naming the enclave; no feature was
sent to it.

Reveals: to the enclave, this party's certificate name and nonce (and then
what :mod:`sharedml.tee.enclave.serve` says).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharedml.errors import AttestationError, PeerUnreachable
from sharedml.tee.attestation.base import Claims, Policy, Verifier
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.ratls import attest_enclave, fetch_certificate

log = logging.getLogger("sharedml.serving")
STEP = "serve: attest"


class EnclaveLink:
    """This party's attested channel to the scoring enclave at ``address``.

    Args:
        address: ``host:port`` of the scoring enclave.
        pki: this party's PKI folder (its certificate and key, the deployment CA).
        party: this party's name (its certificate).
        policy, verifier: what this party accepts as the enclave, and its trust anchors.
    """

    def __init__(self, address: str, pki: Path, party: str, policy: Policy, verifier: Verifier,
                 connect_timeout: float = 10.0) -> None:
        self.address, self.pki, self.party = address, Path(pki), party
        self.policy, self.verifier, self.connect_timeout = policy, verifier, connect_timeout
        self.on_connect: Callable[[], None] | None = None
        self.claims: Claims | None = None
        self.connections = 0
        self._client: EnclaveClient | None = None
        self._lock = threading.RLock()

    def connect(self) -> Claims:
        """Steps 1-3 (module docstring); the claims of the enclave now pinned."""
        with self._lock:
            cert = fetch_certificate(self.address, tls_dir=self.pki, tls_name=self.party,
                                     timeout=self.connect_timeout)
            client = EnclaveClient(self.address, server_certificate=cert, tls_dir=self.pki,
                                   tls_name=self.party, timeout=self.connect_timeout)
            try:
                claims, _ = attest_enclave(client, self.verifier, self.policy)
            except AttestationError:
                client.close()
                raise AttestationError(f"the enclave at {self.address} does not satisfy {self.party!r}'s "
                                       "attestation policy; nothing was sent to it", party="enclave",
                                       step=STEP, remedy="check the enclave's build against the policy "
                                       "(signer, product, svn, measurement, debug)") from None
            if self._client is not None:
                self._client.close()
            self._client, self.claims = client, claims
            self.connections += 1
            log.info("%s attested the enclave at %s (measurement %s)", self.party, self.address,
                     claims.measurement[:16])
            if self.on_connect is not None:
                self.on_connect()
            return claims

    def call(self, method: str, header: dict[str, Any], body: bytes = b"",
             timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """One call on the attested channel; after a lost connection, attest again and retry once."""
        client, seen = self._current()
        try:
            return client.request(method, header, body, timeout)
        except PeerUnreachable:
            with self._lock:
                if self.connections == seen:  # nobody has reconnected since this call began
                    self.connect()
            return self._current()[0].request(method, header, body, timeout)

    def _current(self) -> tuple[EnclaveClient, int]:
        with self._lock:
            client = self._client
            if client is None:
                self.connect()
                client = self._client
            if client is None:  # connect() sets it or raises
                raise PeerUnreachable(f"no attested channel to the enclave at {self.address}",
                                      party="enclave", step=STEP)
            return client, self.connections

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@dataclass(frozen=True)
class EnclaveOptions:
    """``--enclave HOST:PORT`` and ``--enclave-policy FILE`` of a serving process."""

    address: str
    policy_file: Path

    def link(self, pki: Path, party: str) -> EnclaveLink:
        """This party's link; the policy file is ``sharedml tee provider``'s format
        (signer or measurements, product_id, min_svn, allow_simulation, trust)."""
        from sharedml.tee.provider_cli import read_policy

        policy, verifier = read_policy(self.policy_file)
        return EnclaveLink(self.address, pki, party, policy, verifier)
