"""COSE_Sign1 (RFC 9052) with ES384, and X.509 chains checked at a pinned time.

Shared by the Nitro and simulated backends: both carry a CBOR payload with the
leaf certificate in ``certificate`` and the chain (root first) in ``cabundle``,
as AWS Nitro attestation documents do.

``cryptography``'s ``PolicyBuilder`` verifier rejects the real Nitro chains
(no authority key identifier on the leaf), so the chain is walked by hand:
each certificate directly issued by the next, CA basic constraints on issuers,
every certificate valid at ``now``, the root equal to the pinned one.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sharedml.tee.attestation.base import reject

ES384 = -35
_P384_BYTES = 48


def sign1(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """An untagged COSE_Sign1 ``[protected, {}, payload, signature]`` with ES384."""
    protected = cbor2.dumps({1: ES384})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    sig = r.to_bytes(_P384_BYTES, "big") + s.to_bytes(_P384_BYTES, "big")
    return cbor2.dumps([protected, {}, payload, sig])


def open_sign1(document: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a COSE_Sign1 (tagged 18 or untagged) into (protected, payload, signature)."""
    try:
        obj = cbor2.loads(document)
    except Exception as exc:
        raise reject("malformed", f"not CBOR: {exc}") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != 18:
            raise reject("malformed", f"CBOR tag {obj.tag} is not COSE_Sign1")
        obj = obj.value
    if not (isinstance(obj, list) and len(obj) == 4):
        raise reject("malformed", "COSE_Sign1 must be a 4-element array")
    protected, _unprotected, payload, signature = obj
    if not all(isinstance(v, bytes) for v in (protected, payload, signature)):
        raise reject("malformed", "COSE_Sign1 fields must be byte strings")
    header = cbor2.loads(protected) if protected else {}
    if not isinstance(header, dict) or header.get(1) != ES384:
        raise reject("malformed", f"COSE algorithm {header!r} is not ES384")
    return protected, payload, signature


def check_signature(protected: bytes, payload: bytes, signature: bytes, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise reject("signature", "leaf key is not P-384")
    if len(signature) != 2 * _P384_BYTES:
        raise reject("signature", f"signature is {len(signature)} bytes")
    r = int.from_bytes(signature[:_P384_BYTES], "big")
    s = int.from_bytes(signature[_P384_BYTES:], "big")
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    try:
        key.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise reject("signature", "COSE_Sign1 signature does not verify") from None


def check_chain(
    leaf_der: Any, cabundle: Any, root: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """Verify leaf ← cabundle[-1] ← … ← cabundle[0] == ``root``, all valid at ``now``."""
    if not isinstance(cabundle, list) or not cabundle or len(cabundle) > 8:
        raise reject("malformed", "cabundle must list 1-8 certificates")
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        bundle = [x509.load_der_x509_certificate(c) for c in cabundle]
    except (ValueError, TypeError) as exc:
        raise reject("malformed", f"certificate: {exc}") from None
    if bundle[0] != root:
        raise reject("root", f"chain ends at {bundle[0].subject.rfc4514_string()}, not the pinned root")
    chain = [leaf, *reversed(bundle)]
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise reject(
                "expired",
                f"{cert.subject.rfc4514_string()} valid {cert.not_valid_before_utc}..{cert.not_valid_after_utc}, now {now}",
            )
    for child, issuer in itertools.pairwise(chain):
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise reject("chain", f"{issuer.subject.rfc4514_string()} is not a CA")
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise reject("chain", f"{child.subject.rfc4514_string()}: {exc}") from None
    return leaf
