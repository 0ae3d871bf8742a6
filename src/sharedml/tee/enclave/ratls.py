"""The enclave's TLS identity, born inside: the server half of attestation-bound TLS.

1. At start the enclave generates an ECDSA P-256 key pair in its own memory
   and self-signs a certificate for it (no CA can vouch for a key it never
   saw; the attestation does instead).
2. It serves gRPC with that certificate; callers pin it (see
   :mod:`sharedml.tee.ratls`), so a connection that completes ends at the
   holder of this private key.
3. Every piece of evidence the enclave produces binds
   :attr:`TlsIdentity.spki_sha256` (with the caller's nonce and the data key
   bundle), so a caller who verifies the evidence knows the pinned key was
   born inside the measured code.

Client authentication stays with the deployment's CA (mutual TLS): the
enclave requires a client certificate from it when given the CA certificate.

Reveals: the certificate (a public key) to anyone who connects.
Reference: Knauth et al., "Integrating Remote Attestation with Transport
Layer Security" (Intel RA-TLS, 2018) — here with the verifier's nonce in the
report data instead of evidence embedded in the certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The name in the enclave's certificate; callers override the target name to it.
HOSTNAME = "sharedml-enclave"


def spki_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of a certificate's SubjectPublicKeyInfo (what the evidence binds)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


class TlsIdentity:
    """A TLS key pair made in this process and its self-signed certificate."""

    def __init__(self, *, now: dt.datetime | None = None, valid_for: dt.timedelta = dt.timedelta(days=30)) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.spki_sha256 = spki_sha256(self.cert_pem)

    def server_credentials(self, client_ca_pem: bytes | None = None) -> grpc.ServerCredentials:
        """gRPC server credentials; with ``client_ca_pem``, clients must present a certificate from it."""
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return grpc.ssl_server_credentials(
            [(key_pem, self.cert_pem)], root_certificates=client_ca_pem,
            require_client_auth=client_ca_pem is not None,
        )
