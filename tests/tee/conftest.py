"""Fixtures for the TEE tests: a simulated vendor, platforms and signed manifests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.tee.attestation import Policy, Verifier
from sharedml.tee.attestation.sim import Manifest, SimBackend, SimVendor, sign_manifest
from sharedml.tee.attestation.simqe import SimQuoter


class SimWorld:
    """A simulated vendor with one good platform, a code folder and a signer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vendor = SimVendor.create(root / "vendor")
        self.platform = self.vendor.provision("platform-a", tcb_svn=3)
        self.code = root / "code"
        self.code.mkdir()
        (self.code / "enclave.py").write_text("print('train')\n")
        (self.code / "learners.py").write_text("ALGORITHMS = ['lr']\n")
        self.signer = ec.generate_private_key(ec.SECP384R1())
        self.tcb_info = self.vendor.tcb_info({3: "UpToDate", 2: "OutOfDate"})
        self.crl = self.vendor.revocation_list([])

    def manifest(self, *, svn: int = 2, debug: bool = False, signer: ec.EllipticCurvePrivateKey | None = None) -> Manifest:
        return sign_manifest(
            self.code, ("enclave.py", "learners.py"), {"max_rows": 100000},
            signer or self.signer, product_id=7, svn=svn, debug=debug,
        )

    def quoter(self, manifest: Manifest | None = None, platform: Path | None = None) -> SimQuoter:
        return SimQuoter(platform or self.platform, manifest or self.manifest())

    def verifier(self, crl: bytes | None = None, tcb_info: bytes | None = None) -> Verifier:
        return Verifier([SimBackend.from_vendor(self.vendor, tcb_info or self.tcb_info, crl or self.crl)])

    def policy(self, **kw: object) -> Policy:
        q = self.quoter()
        base: dict[str, object] = {"signer": q.signer.hex(), "product_id": 7, "min_svn": 2, "allow_simulation": True}
        base.update(kw)
        return Policy(**base)  # type: ignore[arg-type]


@pytest.fixture
def sim(tmp_path: Path) -> SimWorld:
    return SimWorld(tmp_path)


NOW = dt.datetime.now(dt.UTC)
