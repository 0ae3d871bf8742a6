"""Remote attestation: evidence, claims, reference values and verifiers.

Backends: ``sim`` (a simulated vendor PKI and quoting process), ``nitro``
(AWS Nitro Enclaves documents), ``dcap`` (Intel SGX/TDX quotes) and ``snp``
(AMD SEV-SNP reports). They share
one verification path, :meth:`Verifier.verify`; only the trust anchors differ.
"""

from sharedml.tee.attestation.base import (
    Attester,
    Backend,
    Claims,
    Evidence,
    Policy,
    Verifier,
    VersionFloor,
    report_data_for,
)

__all__ = [
    "Attester",
    "Backend",
    "Claims",
    "Evidence",
    "Policy",
    "Verifier",
    "VersionFloor",
    "report_data_for",
]
