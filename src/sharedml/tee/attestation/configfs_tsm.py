"""Evidence from a confidential VM through Linux configfs-tsm (TDX and SEV-SNP guests).

Linux ≥ 6.7 exposes one report interface for every confidential-computing
guest under ``/sys/kernel/config/tsm/report`` (Documentation/ABI/testing/
configfs-tsm). One request:

1. ``mkdir report/<name>`` — the kernel creates the entry's attributes;
2. read ``provider`` (``tdx_guest`` or ``sev_guest``) and ``generation``;
3. write the 64-byte report data to ``inblob`` (each write bumps
   ``generation``);
4. read ``outblob`` — a TDX quote (via the host's quote generation service)
   or a raw SEV-SNP attestation report — and, for SNP, ``auxblob`` (the
   host-supplied certificate table holding the VCEK, when the host provides it);
5. read ``generation`` again: if another writer touched the entry in between,
   the blob may answer someone else's report data, so the request fails;
6. ``rmdir`` the entry.

The report data is :func:`~sharedml.tee.attestation.base.report_data_for`
(nonce, public key), so the same verifier path checks the binding.

Reveals: the report (measurement, TCB, chip id for SNP) to whoever gets the
evidence. Security model: the guest kernel is part of the measured TCB; the
host can refuse service but cannot forge a report.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sharedml.errors import AttestationError, ConfigError
from sharedml.tee.attestation.base import Attester, Evidence, report_data_for
from sharedml.tee.attestation.collateral import (
    VCEK_GUID,
    VLEK_GUID,
    CollateralSource,
    snp_certificates,
)

TSM_REPORT = Path("/sys/kernel/config/tsm/report")
PROVIDERS = {"tdx_guest": "dcap", "sev_guest": "snp"}


class ReportFs:
    """The configfs-tsm report directory: the four file operations the interface consists of."""

    def __init__(self, root: str | Path = TSM_REPORT) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"no configfs-tsm report interface at {self.root}", step="attest",
                              remedy="run inside a TDX or SEV-SNP guest with Linux ≥ 6.7 and configfs mounted")

    def make_entry(self) -> Path:
        entry = self.root / f"sharedml-{secrets.token_hex(6)}"
        entry.mkdir()
        return entry

    def read(self, entry: Path, name: str) -> bytes:
        return (entry / name).read_bytes()

    def write(self, entry: Path, name: str, data: bytes) -> None:
        fd = os.open(entry / name, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def remove_entry(self, entry: Path) -> None:
        entry.rmdir()


class ConfigfsTsmAttester(Attester):
    """A TDX or SEV-SNP guest's attester over configfs-tsm.

    ``collateral`` supplies what the verifier needs besides the blob: DCAP
    collateral for TDX; for SNP, the VCEK when the host's ``auxblob`` has none.
    """

    def __init__(self, fs: ReportFs | None = None, *, collateral: CollateralSource | None = None) -> None:
        self.fs = fs if fs is not None else ReportFs()
        self._collateral = collateral
        self.backend = ""

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        if user_data:
            raise ConfigError("configfs-tsm reports carry no user data beside the report data", step="attest")
        entry = self.fs.make_entry()
        try:
            return self._request(entry, report_data_for(nonce, public_key))
        finally:
            self.fs.remove_entry(entry)

    def _request(self, entry: Path, report_data: bytes) -> Evidence:
        provider = self.fs.read(entry, "provider").decode().strip()
        backend = PROVIDERS.get(provider)
        if backend is None:
            raise ConfigError(f"configfs-tsm provider {provider!r} is not supported", step="attest",
                              remedy=f"supported: {', '.join(PROVIDERS)}")
        self.backend = backend
        expected = int(self.fs.read(entry, "generation")) + 1
        self.fs.write(entry, "inblob", report_data)
        blob = self.fs.read(entry, "outblob")
        aux = self.fs.read(entry, "auxblob") if backend == "snp" else b""
        generation = int(self.fs.read(entry, "generation"))
        if generation != expected:
            raise AttestationError(
                f"configfs-tsm entry changed while reading (generation {generation}, expected {expected})",
                step="attest", remedy="another process wrote to the report entry; retry",
            )
        if not blob:
            raise AttestationError(f"{provider} returned an empty report", step="attest",
                                   remedy="check the host's quote generation service (TDX) or firmware (SNP)")
        return Evidence(backend, blob, self._collateral_for(backend, blob, aux))

    def _collateral_for(self, backend: str, blob: bytes, aux: bytes) -> bytes:
        if backend == "snp" and aux:
            certs = snp_certificates(aux)
            for guid in (VCEK_GUID, VLEK_GUID):
                if guid in certs:
                    return certs[guid]
        if self._collateral is None:
            what = "DCAP collateral (PCCS)" if backend == "dcap" else "the chip's VCEK (AMD KDS)"
            raise ConfigError(f"the verifier needs {what} and none is configured", step="attest",
                              remedy="pass collateral=FileCollateral(...) or PccsCollateral(url)")
        return self._collateral(blob)
