"""A faithful TEE simulator: a simulated vendor, quoting side and verifier backend.

Not a stub: the simulated vendor is a real P-384 PKI, and evidence is a real
COSE_Sign1 Entity Attestation Token (ES384) with a certificate chain, like a
Nitro document. Only the trust anchor differs from hardware, and verifiers
accept it only with ``Policy(allow_simulation=True)``.

1. :class:`SimVendor` (the "CPU vendor") holds a root CA and a platform CA,
   provisions each simulated platform with an attestation key (certified by the
   platform CA) and a fused seal secret, and signs TCB information (COSE_Sign1
   by the root) and a revocation list (an X.509 CRL by the platform CA).
2. The build signs an enclave :class:`Manifest`: code files + configuration,
   product id, security version (svn), debug flag. :func:`measure` is SHA-384
   over every code file (path and content) and the canonical configuration.
3. :class:`~sharedml.tee.attestation.simqe.SimQuoter` is the quoting side
   (run as its own process by :mod:`sharedml.tee.attestation.simqe`). At load it *re-measures the files
   itself* and checks the signer's signature over the measurement (as SGX's
   EINIT checks SIGSTRUCT); the enclave only supplies ``report_data``. It
   derives seal keys bound to signer + product + a version ≤ its own.
4. :class:`SimBackend` verifies: chain to the simulated root, signature,
   TCB level of the platform in the signed TCB info, the platform certificate
   not revoked, everything in date at ``now``.

Reveals: measurement, signer, product, svn, debug flag, platform id and TCB
level to the verifier. Security model: the simulator trusts the host that runs
it, so it demonstrates protocol and policy, not isolation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sharedml.errors import ConfigError
from sharedml.tee.attestation import cose
from sharedml.tee.attestation.base import (
    Backend,
    Claims,
    Evidence,
    reject,
)

PROFILE = "sharedml-sim-eat/1"


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC key")
    return key


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    start: dt.datetime,
    end: dt.datetime,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA384())
    )


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    """What the build signs: code files, configuration and the version triple."""

    root: str
    files: tuple[str, ...]
    config: dict[str, Any]
    product_id: int
    svn: int
    debug: bool
    signer_public_key: bytes  # PEM
    signature: bytes  # ECDSA-P384 over the SIGSTRUCT bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "root": self.root,
                "files": list(self.files),
                "config": self.config,
                "product_id": self.product_id,
                "svn": self.svn,
                "debug": self.debug,
                "signer_public_key": self.signer_public_key.decode(),
                "signature": self.signature.hex(),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        return cls(
            raw["root"],
            tuple(raw["files"]),
            dict(raw["config"]),
            int(raw["product_id"]),
            int(raw["svn"]),
            bool(raw["debug"]),
            raw["signer_public_key"].encode(),
            bytes.fromhex(raw["signature"]),
        )


def measure(root: str | Path, files: tuple[str, ...], config: dict[str, Any]) -> bytes:
    """SHA-384 over each file's path and content (sorted), then the canonical config."""
    h = hashlib.sha384(b"sharedml-sim-measurement/1\0")
    base = Path(root)
    for rel in sorted(files):
        content = (base / rel).read_bytes()
        h.update(rel.encode() + b"\0" + hashlib.sha384(content).digest())
    h.update(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    return h.digest()


def signer_id(public_key_pem: bytes) -> bytes:
    """MRSIGNER analogue: SHA-384 of the signer's public key (DER)."""
    key = serialization.load_pem_public_key(public_key_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha384(der).digest()


def sigstruct(measurement: bytes, product_id: int, svn: int, debug: bool) -> bytes:
    return b"sharedml-sim-sigstruct/1" + measurement + cbor2.dumps([product_id, svn, debug])


def sign_manifest(
    root: str | Path,
    files: tuple[str, ...],
    config: dict[str, Any],
    signer: ec.EllipticCurvePrivateKey,
    *,
    product_id: int,
    svn: int,
    debug: bool = False,
) -> Manifest:
    """The build step: measure the code and sign (measurement, product, svn, debug)."""
    m = measure(root, files, config)
    sig = signer.sign(sigstruct(m, product_id, svn, debug), ec.ECDSA(hashes.SHA384()))
    pub = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Manifest(str(root), tuple(sorted(files)), config, product_id, svn, debug, pub, sig)


# --------------------------------------------------------------------------- vendor


class SimVendor:
    """The simulated CPU vendor's PKI, kept in a directory (keys mode 0600)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        try:
            self.root = x509.load_pem_x509_certificate((self.dir / "root.pem").read_bytes())
            self.pca = x509.load_pem_x509_certificate((self.dir / "pca.pem").read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"no simulated vendor in {self.dir}", remedy="SimVendor.create(dir)") from None

    @classmethod
    def create(cls, directory: str | Path, now: dt.datetime | None = None) -> SimVendor:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        start = _now(now) - dt.timedelta(minutes=5)
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = _cert("sharedml simulated TEE root CA", root_key, None, start, start + dt.timedelta(days=3650), True)
        pca_key = ec.generate_private_key(ec.SECP384R1())
        pca = _cert("sharedml simulated platform CA", pca_key, (root, root_key), start, start + dt.timedelta(days=1825), True)
        (d / "root.pem").write_bytes(_pem(root))
        (d / "pca.pem").write_bytes(_pem(pca))
        _write_key(d / "root.key", root_key)
        _write_key(d / "pca.key", pca_key)
        (d / "platforms").mkdir(exist_ok=True)
        return cls(d)

    def provision(
        self,
        platform_id: str,
        tcb_svn: int = 3,
        *,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = dt.timedelta(days=365),
    ) -> Path:
        """A platform's attestation key + certificate and its fused seal secret."""
        pdir = self.dir / "platforms" / platform_id
        pdir.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        start = _now(now) - dt.timedelta(minutes=5)
        cert = _cert(platform_id, key, (self.pca, load_key(self.dir / "pca.key")), start, start + valid_for, False)
        (pdir / "cert.pem").write_bytes(_pem(cert))
        _write_key(pdir / "key.pem", key)
        fd = os.open(pdir / "seal.secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        (pdir / "tcb_svn").write_text(str(tcb_svn))
        return pdir

    def tcb_info(
        self,
        levels: dict[int, str],
        *,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = dt.timedelta(days=30),
    ) -> bytes:
        """Signed TCB information: platform TCB svn → status, with an update window."""
        issued = _now(now) - dt.timedelta(minutes=5)
        body = {
            "issued": int(issued.timestamp()),
            "next_update": int((issued + valid_for).timestamp()),
            "levels": {int(k): v for k, v in levels.items()},
        }
        return cose.sign1(cbor2.dumps(body), load_key(self.dir / "root.key"))

    def revocation_list(
        self,
        revoked: list[str] = (),  # type: ignore[assignment]
        *,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = dt.timedelta(days=30),
    ) -> bytes:
        """An X.509 CRL by the platform CA revoking the named platforms' certificates."""
        issued = _now(now) - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.pca.subject)
            .last_update(issued)
            .next_update(issued + valid_for)
        )
        for platform_id in revoked:
            cert = x509.load_pem_x509_certificate((self.dir / "platforms" / platform_id / "cert.pem").read_bytes())
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(issued).build()
            )
        crl = builder.sign(load_key(self.dir / "pca.key"), hashes.SHA384())
        return crl.public_bytes(serialization.Encoding.DER)


def simulated_vendor(directory: str | Path, platforms: tuple[str, ...] = ("platform-1",)) -> SimVendor:
    """A vendor in ``directory`` with ``tcb_info.cbor`` and ``crl.der`` beside its root (what
    :func:`sharedml.tee.enclave.service.peer_verifier` reads) and ``platforms`` provisioned."""
    vendor = SimVendor.create(directory)
    for name in platforms:
        vendor.provision(name)
    (vendor.dir / "tcb_info.cbor").write_bytes(vendor.tcb_info({3: "UpToDate"}))
    (vendor.dir / "crl.der").write_bytes(vendor.revocation_list())
    return vendor


def new_signer(path: str | Path) -> str:
    """A release engineer's build-signing key (P-384, 0600) at ``path``; returns its signer id (hex)."""
    key = ec.generate_private_key(ec.SECP384R1())
    _write_key(Path(path), key)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return signer_id(pem).hex()


# --------------------------------------------------------------------------- verifier backend


class SimBackend(Backend):
    """Verifies simulated EATs against a simulated root, TCB info and CRL."""

    name = "sim"

    def __init__(self, root: x509.Certificate, tcb_info: bytes, revocation_list: bytes) -> None:
        self._root = root
        self._tcb_info = tcb_info
        self._crl = x509.load_der_x509_crl(revocation_list)

    @classmethod
    def from_vendor(cls, vendor: SimVendor, tcb_info: bytes, revocation_list: bytes) -> SimBackend:
        return cls(vendor.root, tcb_info, revocation_list)

    def _tcb_status(self, tcb_svn: int, now: dt.datetime) -> str:
        protected, payload, signature = cose.open_sign1(self._tcb_info)
        cose.check_signature(protected, payload, signature, self._root)
        info = cbor2.loads(payload)
        if not info["issued"] <= now.timestamp() <= info["next_update"]:
            raise reject("expired", "TCB info outside its window")
        return str(info["levels"].get(tcb_svn, "OutOfDate"))

    def _check_crl(self, leaf: x509.Certificate, pca: x509.Certificate, now: dt.datetime) -> None:
        crl = self._crl
        pub = pca.public_key()
        if crl.issuer != pca.subject or not isinstance(pub, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(pub):
            raise reject("revoked", "revocation list not signed by the platform CA")
        if crl.next_update_utc is None or not crl.last_update_utc <= now <= crl.next_update_utc:
            raise reject("expired", "revocation list outside its window")
        if crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None:
            raise reject("revoked", f"platform {leaf.subject.rfc4514_string()} is revoked")

    def appraise(self, evidence: Evidence, now: dt.datetime) -> Claims:
        protected, raw, signature = cose.open_sign1(evidence.document)
        p = cbor2.loads(raw)
        if not isinstance(p, dict) or p.get("profile") != PROFILE:
            raise reject("malformed", "not a sharedml simulated EAT")
        leaf = cose.check_chain(p["certificate"], p["cabundle"], self._root, now)
        cose.check_signature(protected, raw, signature, leaf)
        self._check_crl(leaf, x509.load_der_x509_certificate(p["cabundle"][-1]), now)
        rd = p["report_data"]
        if not isinstance(rd, bytes) or len(rd) != 64:
            raise reject("malformed", "report_data")
        return Claims(
            backend=self.name,
            measurement=bytes(p["measurement"]).hex(),
            signer=bytes(p["signer"]).hex(),
            product_id=int(p["product_id"]),
            svn=int(p["svn"]),
            debug=bool(p["debug"]),
            simulated=True,
            report_data=rd,
            user_data=bytes(p["user_data"]),
            issued_at=dt.datetime.fromtimestamp(p["timestamp"] / 1000, dt.UTC),
            tcb_status=self._tcb_status(int(p["tcb_svn"]), now),
            extra={"platform_id": str(p["platform_id"])},
        )
