"""AWS Nitro Enclaves attestation documents.

A document is a COSE_Sign1 (ES384) whose CBOR payload holds ``module_id``,
``digest`` (SHA384), ``timestamp`` (ms), ``pcrs`` (index → 48 bytes),
``certificate`` (leaf, DER), ``cabundle`` (root first), and the optional
``public_key``, ``user_data`` and ``nonce`` (≤ 1024 bytes each). The chain must
end at the pinned AWS Nitro Enclaves Root G1 (shipped as package data; its
SHA-256 fingerprint, published by AWS, is checked on load).

Claims: measurement = PCR0 (the enclave image), signer = PCR8 (the signing
certificate, zero for unsigned images); a document whose PCR0 is all zeros
comes from an enclave in debug mode. Nitro has no product id or security
version. Reference: AWS, "Verifying the root of trust" (Nitro Enclaves user guide).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from importlib import resources
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sharedml.tee.attestation import cose
from sharedml.tee.attestation.base import Backend, Claims, Evidence, reject

AWS_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
MAX_FIELD = 1024


def aws_root() -> x509.Certificate:
    """The pinned AWS Nitro Enclaves Root G1, checked against its published fingerprint."""
    pem = resources.files("sharedml.tee.attestation").joinpath("roots/aws_nitro_enclaves_root_g1.pem")
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    if cert.fingerprint(hashes.SHA256()).hex() != AWS_ROOT_G1_SHA256:
        raise RuntimeError("packaged AWS Nitro root does not match its pinned fingerprint")
    return cert


def _opt_bytes(payload: dict[str, Any], name: str) -> bytes | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) > MAX_FIELD:
        raise reject("malformed", f"{name} must be ≤ {MAX_FIELD} bytes")
    return value


class NitroBackend(Backend):
    """Verifies Nitro documents against ``root`` (default: the AWS root)."""

    name = "nitro"

    def __init__(self, root: x509.Certificate | None = None) -> None:
        self._root = root if root is not None else aws_root()

    def appraise(self, evidence: Evidence, now: dt.datetime) -> Claims:
        protected, raw_payload, signature = cose.open_sign1(evidence.document)
        payload = cbor2.loads(raw_payload)
        if not isinstance(payload, dict):
            raise reject("malformed", "payload is not a map")
        if payload.get("digest") != "SHA384":
            raise reject("malformed", f"digest {payload.get('digest')!r}")
        pcrs = payload.get("pcrs")
        if not isinstance(pcrs, dict) or not pcrs or len(pcrs) > 32:
            raise reject("malformed", "pcrs must map 1-32 indices")
        if any(not isinstance(v, bytes) or len(v) not in (32, 48, 64) for v in pcrs.values()):
            raise reject("malformed", "a PCR has a bad length")
        leaf = cose.check_chain(payload.get("certificate", b""), payload.get("cabundle"), self._root, now)
        cose.check_signature(protected, raw_payload, signature, leaf)
        timestamp = payload.get("timestamp")
        if not isinstance(timestamp, int):
            raise reject("malformed", "timestamp")
        pcr0 = pcrs.get(0, b"")
        pcr8 = pcrs.get(8, b"")
        return Claims(
            backend=self.name,
            measurement=pcr0.hex(),
            signer=pcr8.hex() if pcr8 and any(pcr8) else None,
            debug=not any(pcr0),
            public_key=_opt_bytes(payload, "public_key"),
            nonce=_opt_bytes(payload, "nonce"),
            user_data=_opt_bytes(payload, "user_data"),
            issued_at=dt.datetime.fromtimestamp(timestamp / 1000, dt.UTC),
            extra={
                "module_id": str(payload.get("module_id")),
                **{f"pcr{i}": v.hex() for i, v in sorted(pcrs.items()) if any(v)},
                "document_sha256": hashlib.sha256(evidence.document).hexdigest(),
            },
        )
