"""Evidence from an SGX enclave run by Gramine (``gramine-sgx``), through ``/dev/attestation``.

Gramine exposes the SGX quoting flow as pseudo-files inside the enclave
(Gramine docs, "Attestation and secret provisioning"):

1. read ``attestation_type`` — must be ``dcap`` (EPID is end-of-life and
   ``none`` means the manifest did not enable remote attestation);
2. write the 64-byte report data to ``user_report_data``;
3. read ``quote`` — a DCAP quote whose REPORTDATA is what step 2 wrote,
   signed by the platform's quoting enclave;
4. the verifier needs the platform's collateral (PCCS), supplied by a
   :data:`~sharedml.tee.attestation.collateral.CollateralSource`.

Seal keys come from ``keys/_sgx_mrsigner`` (EGETKEY, MRSIGNER policy, the
enclave's own ISVSVN): a key for the running version only. State that must
outlive an upgrade moves through the cluster key instead
(:mod:`sharedml.tee.enclave.trusted_cluster`).

Reveals: the quote (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, attributes,
platform TCB) to whoever gets the evidence. Security model: SGX — the host OS
is untrusted; Intel's quoting enclave and the measured code are trusted.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import AttestationError, ConfigError, PolicyDenied
from sharedml.tee.attestation.base import Attester, Evidence, report_data_for
from sharedml.tee.attestation.collateral import CollateralSource

DEV_ATTESTATION = Path("/dev/attestation")


class GramineAttester(Attester):
    """SGX DCAP quotes through Gramine's ``/dev/attestation`` pseudo-files."""

    backend = "dcap"

    def __init__(
        self,
        collateral: CollateralSource,
        *,
        svn: int,
        root: str | Path = DEV_ATTESTATION,
    ) -> None:
        self.root = Path(root)
        self._collateral = collateral
        self.own_svn = svn
        kind = self._read("attestation_type").decode().strip() if self.root.is_dir() else "absent"
        if kind != "dcap":
            raise ConfigError(
                f"Gramine attestation type is {kind!r}, not 'dcap'", step="attest",
                remedy="run under gramine-sgx with sgx.remote_attestation = \"dcap\" in the manifest",
            )

    def _read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        if user_data:
            raise ConfigError("SGX quotes carry no user data beside the report data", step="attest")
        report_data = report_data_for(nonce, public_key)
        (self.root / "user_report_data").write_bytes(report_data)
        quote = self._read("quote")
        if not quote:
            raise AttestationError("Gramine returned an empty quote", step="attest",
                                   remedy="check the platform's quoting enclave (aesmd) and its PCCS setup")
        # The quote's REPORTDATA is checked against (nonce, key) by the verifier, not here.
        return Evidence(self.backend, quote, self._collateral(quote))

    def seal_key(self, svn: int) -> bytes:
        """A 256-bit key for sealed state of version ``svn`` (only this enclave's own)."""
        if svn != self.own_svn:
            raise PolicyDenied(
                f"Gramine gives the seal key of svn {self.own_svn} only, not {svn}", step="unseal",
                remedy="state written by another version moves through the cluster key",
            )
        base = self._read("keys/_sgx_mrsigner")
        return HKDF(hashes.SHA256(), 32, None, b"sharedml-gramine-seal/1" + svn.to_bytes(4, "big")).derive(base)

    def measurement_seal_key(self) -> bytes:
        """A 256-bit key only this exact enclave (MRENCLAVE) derives on this CPU."""
        base = self._read("keys/_sgx_mrenclave")
        return HKDF(hashes.SHA256(), 32, None, b"sharedml-gramine-seal-measurement/1").derive(base)

    def svn(self) -> int:
        return self.own_svn
