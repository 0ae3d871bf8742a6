"""Intel SGX and TDX DCAP quotes, verified with their collateral by ``dcap-qvl``.

``dcap-qvl`` (Phala Network's maintained Rust quote verification library)
checks the quote signature, the QE report, the PCK chain embedded in the quote
up to the pinned *Intel SGX Root CA*, the CRLs, and the signed TCB info and QE
identity, all at ``now``; it returns the TCB status. This module maps the
verified report to :class:`Claims`:

- SGX: measurement = MRENCLAVE, signer = MRSIGNER, product = ISVPRODID,
  svn = ISVSVN, debug = ATTRIBUTES.DEBUG (bit 1).
- TDX: measurement = MRTD (RTMR0-3 and MRSEAM in ``extra``), debug =
  TDATTRIBUTES.DEBUG (bit 0); TDX has no signer/product/svn of the TD itself.

The collateral travels in :attr:`Evidence.collateral` as the JSON that
``dcap_qvl.QuoteCollateralV3.to_json`` writes. Intel's root (public, shipped as
package data) is checked against its SHA-256 fingerprint on load.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sharedml.tee.attestation.base import Backend, Claims, Evidence, reject

INTEL_SGX_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


def intel_root_der() -> bytes:
    """The pinned Intel SGX Root CA (DER), checked against its fingerprint."""
    pem = resources.files("sharedml.tee.attestation").joinpath("roots/intel_sgx_root_ca.pem")
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    if cert.fingerprint(hashes.SHA256()).hex() != INTEL_SGX_ROOT_SHA256:
        raise RuntimeError("packaged Intel SGX root does not match its pinned fingerprint")
    return cert.public_bytes(serialization.Encoding.DER)


class DcapBackend(Backend):
    """SGX/TDX quotes against ``root_der`` (default: Intel SGX Root CA)."""

    name = "dcap"

    def __init__(self, root_der: bytes | None = None) -> None:
        self._root = root_der if root_der is not None else intel_root_der()

    def appraise(self, evidence: Evidence, now: dt.datetime) -> Claims:
        import dcap_qvl

        try:
            collateral = dcap_qvl.QuoteCollateralV3.from_json(evidence.collateral.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise reject("malformed", f"collateral: {exc}") from None
        try:
            verified = dcap_qvl.verify_with_root_ca(
                evidence.document, collateral, self._root, int(now.timestamp())
            )
        except ValueError as exc:
            text = str(exc)
            windowed = "expired" in text or "future" in text
            reason = "expired" if windowed else "tcb" if "TCB" in text else "quote"
            raise reject(reason, text) from None
        report = json.loads(verified.to_json())
        body: dict[str, Any]
        kind, body = next(iter(report["report"].items()))
        status = str(report["status"])
        extra = {"advisories": ",".join(report.get("advisory_ids", [])), "kind": kind}
        if kind == "SgxEnclave":
            flags = int.from_bytes(bytes.fromhex(body["attributes"])[:8], "little")
            return Claims(
                backend=self.name,
                measurement=body["mr_enclave"],
                signer=body["mr_signer"],
                product_id=int(body["isv_prod_id"]),
                svn=int(body["isv_svn"]),
                debug=bool(flags & 0x2),
                report_data=bytes.fromhex(body["report_data"]),
                tcb_status=status,
                extra=extra,
            )
        attrs = int.from_bytes(bytes.fromhex(body["td_attributes"])[:8], "little")
        return Claims(
            backend=self.name,
            measurement=body["mr_td"],
            debug=bool(attrs & 0x1),
            report_data=bytes.fromhex(body["report_data"]),
            tcb_status=status,
            extra={
                **extra,
                "mr_seam": body["mr_seam"],
                **{f"rtmr{i}": body[f"rt_mr{i}"] for i in range(4)},
            },
        )
