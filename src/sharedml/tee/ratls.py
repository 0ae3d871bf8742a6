"""Attestation-bound TLS, the caller's half: pin the enclave's key, then verify it was born inside.

A provider (or the platform) reaching an enclave at ``host:port``:

1. :func:`fetch_certificate` — a TLS handshake that records the certificate
   the server presents (untrusted so far; it may come from anyone);
2. open a gRPC channel that trusts *only* that certificate
   (:class:`~sharedml.tee.enclave.client.EnclaveClient` with
   ``server_certificate``), so the channel ends at the holder of its key;
3. :func:`attest_enclave` — send a fresh nonce over that channel; the enclave
   answers with evidence whose report data binds
   :func:`key_binding` (SHA-256 of the pinned key's SPKI, the data key bundle)
   to the nonce; verify it against the caller's own policy (measurement or
   signer + product + minimum SVN, TCB status, debug off, simulation only if
   allowed). The connection is used only if that passes.

A man-in-the-middle who relays a genuine enclave's evidence but terminates
TLS with its own key fails step 3 (the evidence binds the other key); one who
presents the genuine certificate without its key fails step 2. A replayed
answer fails the nonce.

Reveals: to the enclave, the caller's nonce (random) and, under mutual TLS,
the caller's deployment identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
from pathlib import Path
from typing import Protocol

from sharedml.errors import PeerUnreachable
from sharedml.tee.attestation.base import Claims, Evidence, Policy, Verifier
from sharedml.tee.enclave.ratls import HOSTNAME
from sharedml.tee.envelope import KeyBundle

BINDING_DOMAIN = b"sharedml-ratls/1"


def key_binding(tls_spki_sha256: bytes, bundle: bytes) -> bytes:
    """The 32 bytes evidence binds: the TLS key (by SPKI hash) and the data key bundle.

    ``tls_spki_sha256`` is empty for an in-process enclave with no TLS face.
    """
    h = hashlib.sha256(BINDING_DOMAIN)
    for part in (tls_spki_sha256, hashlib.sha256(bundle).digest()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


class AttestableClient(Protocol):
    tls_spki_sha256: bytes

    def attest(self, nonce: bytes) -> tuple[Evidence, bytes]: ...


def attest_enclave(
    client: AttestableClient, verifier: Verifier, policy: Policy, now: dt.datetime | None = None
) -> tuple[Claims, KeyBundle | None]:
    """Step 3: challenge, verify evidence + policy + binding to the pinned TLS key.

    Returns the claims and the job's data key bundle (``None`` when a service
    enclave attested itself, outside any job).
    """
    nonce = verifier.challenge(now)
    evidence, bundle = client.attest(nonce)
    binding = key_binding(client.tls_spki_sha256, bundle)
    claims = verifier.verify(evidence, policy, nonce=nonce, public_key=binding, now=now)
    return claims, KeyBundle.from_bytes(bundle) if bundle else None


def fetch_certificate(
    address: str,
    *,
    tls_dir: str | Path | None = None,
    tls_name: str | None = None,
    timeout: float = 10.0,
) -> bytes:
    """Step 1: the PEM certificate the server at ``address`` presents (not yet trusted).

    ``tls_dir``/``tls_name``: the caller's deployment identity, for an enclave
    that requires client certificates.
    """
    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # trust comes from the attestation, not from a CA
    ctx.set_alpn_protocols(["h2"])
    if tls_dir is not None and tls_name is not None:
        ctx.load_cert_chain(Path(tls_dir) / f"{tls_name}.pem", Path(tls_dir) / f"{tls_name}.key")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        raise PeerUnreachable(f"no TLS handshake with {address}: {exc}", party="enclave", step="attest",
                              remedy="check the enclave's address and that it is running") from None
    if not der:
        raise PeerUnreachable(f"{address} presented no certificate", party="enclave", step="attest")
    return ssl.DER_cert_to_PEM_cert(der).encode()
