"""AMD SEV-SNP attestation reports, verified with the chip's VCEK.

A report (ABI spec 56860, ATTESTATION_REPORT, 0x4A0 bytes) is signed with
ECDSA P-384 / SHA-384 over bytes 0..0x2A0 by the chip's VCEK; ``r`` and ``s``
are little-endian. The VCEK (from AMD's KDS, carried in
:attr:`Evidence.collateral` as DER) must chain VCEK ← ASK ← ARK (RSA-PSS) to
the pinned ARK, be valid at ``now``, name this chip (hwID = CHIP_ID) and
certify the reported TCB (its bootloader/TEE/SNP/microcode SPL extensions).
The Milan ASK and ARK are AMD's public certificates, shipped as package data;
the ARK's SHA-256 fingerprint is checked on load.

Claims: measurement = MEASUREMENT, signer = AUTHOR_KEY_DIGEST (or
ID_KEY_DIGEST when no author key), svn = GUEST_SVN, debug = POLICY.DEBUG
(bit 19), report_data = REPORT_DATA. TCB status is ``OutOfDate`` when the
reported TCB is below the backend's ``min_tcb``.
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sharedml.tee.attestation.base import Backend, Claims, Evidence, reject

ARK_MILAN_SHA256 = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
REPORT_SIZE = 0x4A0
SIGNED = 0x2A0
_OID = "1.3.6.1.4.1.3704.1."
_SPL = {"bootloader": "3.1", "tee": "3.2", "snp": "3.3", "microcode": "3.8"}


def amd_milan_chain() -> tuple[x509.Certificate, x509.Certificate]:
    """(ASK, ARK) for Milan, the ARK checked against its published fingerprint."""
    pem = resources.files("sharedml.tee.attestation").joinpath("roots/amd_ask_ark_milan.pem")
    ask, ark = x509.load_pem_x509_certificates(pem.read_bytes())
    if ark.fingerprint(hashes.SHA256()).hex() != ARK_MILAN_SHA256:
        raise RuntimeError("packaged AMD ARK-Milan does not match its pinned fingerprint")
    return ask, ark


def tcb(value: int) -> dict[str, int]:
    """TCB_VERSION (u64) → its security patch levels."""
    b = value.to_bytes(8, "little")
    return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def _ext(cert: x509.Certificate, suffix: str) -> bytes:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_OID + suffix)).value
    except x509.ExtensionNotFound:
        raise reject("chain", f"VCEK lacks extension {suffix}") from None
    return bytes(getattr(ext, "value", b""))


def _der_int(raw: bytes) -> int:
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2:
        raise reject("malformed", "VCEK SPL extension is not a DER INTEGER")
    return int.from_bytes(raw[2:], "big")


class SnpBackend(Backend):
    name = "snp"

    def __init__(
        self,
        chain: tuple[x509.Certificate, x509.Certificate] | None = None,
        min_tcb: dict[str, int] | None = None,
    ) -> None:
        self._ask, self._ark = chain if chain is not None else amd_milan_chain()
        self._min_tcb = min_tcb or {}

    def _check_vcek(self, vcek_der: bytes, now: dt.datetime) -> x509.Certificate:
        try:
            with warnings.catch_warnings():
                # AMD's KDS issues VCEKs with serial number 0; cryptography warns that
                # a later release will refuse them. Until AMD changes that, accept it.
                warnings.filterwarnings("ignore", message=".*serial number.*")
                vcek = x509.load_der_x509_certificate(vcek_der)
        except ValueError as exc:
            raise reject("malformed", f"VCEK: {exc}") from None
        for cert in (vcek, self._ask, self._ark):
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise reject("expired", f"{cert.subject.rfc4514_string()} not valid at {now}")
        try:
            vcek.verify_directly_issued_by(self._ask)
            self._ask.verify_directly_issued_by(self._ark)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise reject("root", f"VCEK does not chain to the pinned ARK: {exc}") from None
        return vcek

    def appraise(self, evidence: Evidence, now: dt.datetime) -> Claims:
        r = evidence.document
        if len(r) != REPORT_SIZE:
            raise reject("malformed", f"report is {len(r)} bytes, not {REPORT_SIZE}")
        version, guest_svn, policy = struct.unpack_from("<IIQ", r, 0)
        sig_algo = struct.unpack_from("<I", r, 0x34)[0]
        if version < 2 or sig_algo != 1:
            raise reject("malformed", f"report version {version}, signature algorithm {sig_algo}")
        vcek = self._check_vcek(evidence.collateral, now)
        key = vcek.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise reject("signature", "VCEK is not a P-384 key")
        sig_r = int.from_bytes(r[SIGNED : SIGNED + 72], "little")
        sig_s = int.from_bytes(r[SIGNED + 72 : SIGNED + 144], "little")
        try:
            key.verify(encode_dss_signature(sig_r, sig_s), r[:SIGNED], ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise reject("signature", "report signature does not verify with the VCEK") from None
        chip_id = r[0x1A0:0x1E0]
        if _ext(vcek, "4") != chip_id:
            raise reject("chain", "VCEK belongs to another chip")
        reported = tcb(struct.unpack_from("<Q", r, 0x180)[0])
        for name, suffix in _SPL.items():
            if _der_int(_ext(vcek, suffix)) != reported[name]:
                raise reject("tcb", f"VCEK certifies another {name} SPL than the report's")
        outdated = any(reported[k] < v for k, v in self._min_tcb.items())
        author_enabled = struct.unpack_from("<I", r, 0x48)[0] & 1
        signer = r[0x110:0x140] if author_enabled else r[0xE0:0x110]
        return Claims(
            backend=self.name,
            measurement=r[0x90:0xC0].hex(),
            signer=signer.hex() if any(signer) else None,
            svn=guest_svn,
            debug=bool(policy >> 19 & 1),
            report_data=r[0x50:0x90],
            tcb_status="OutOfDate" if outdated else "UpToDate",
            extra={
                "policy": hex(policy),
                "vmpl": str(struct.unpack_from("<I", r, 0x30)[0]),
                "chip_id": chip_id.hex(),
                **{f"tcb_{k}": str(v) for k, v in reported.items()},
            },
        )
