"""Where an attester gets what a verifier needs besides the quote itself.

Hardware returns only the signed report. DCAP quotes (SGX, TDX) are verified
with *collateral* (TCB info, QE identity, CRLs) that Intel's PCS or a caching
PCCS serves per platform (FMSPC); SEV-SNP reports with the chip's *VCEK*,
which the host may hand the guest in the extended report's certificate table
(configfs-tsm ``auxblob``) or which comes from AMD's KDS.

A :data:`CollateralSource` maps the raw document to the collateral bytes that
travel in :attr:`~sharedml.tee.attestation.base.Evidence.collateral`:

- :class:`FileCollateral` — bytes an operator fetched ahead of time (air-gapped
  sites, tests);
- :class:`PccsCollateral` — ``dcap_qvl.get_collateral`` from a PCCS URL
  (network; not exercised by this repository's tests, which have no network).

Reveals: a PCCS learns which platform (FMSPC) asks for collateral, not the
quote's report data.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

from sharedml.errors import AttestationError, ConfigError

CollateralSource = Callable[[bytes], bytes]

#: GHCB spec §4.1.8.1 certificate-table GUIDs (stored in RFC 4122 byte order).
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
_ENTRY = struct.Struct("<16sII")


class FileCollateral:
    """Collateral read from a file, whatever the document (fetched ahead of time)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"collateral file {self.path} not found", step="attest",
                              remedy="fetch it with 'dcap-qvl'/PCCS (DCAP) or from AMD KDS (SNP VCEK)")

    def __call__(self, _document: bytes) -> bytes:
        return self.path.read_bytes()


class PccsCollateral:
    """DCAP collateral for a quote from a PCCS (or Intel PCS) at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, document: bytes) -> bytes:
        import dcap_qvl

        try:
            collateral = dcap_qvl.get_collateral(self.url, document)
        except (ValueError, RuntimeError) as exc:
            raise AttestationError(f"cannot fetch DCAP collateral from {self.url}: {exc}", step="attest",
                                   remedy="check the PCCS URL and that this platform is registered") from None
        return str(collateral.to_json()).encode()


def snp_certificates(table: bytes) -> dict[uuid.UUID, bytes]:
    """Parse an SEV-SNP extended-report certificate table (GUID, offset, length entries).

    The table ends at an all-zero entry; offsets count from the table's start.
    """
    certs: dict[uuid.UUID, bytes] = {}
    for pos in range(0, len(table) - _ENTRY.size + 1, _ENTRY.size):
        guid, offset, length = _ENTRY.unpack_from(table, pos)
        if guid == bytes(16):
            return certs
        if offset + length > len(table) or offset < pos + _ENTRY.size:
            raise AttestationError("SNP certificate table entry points outside the table", step="attest")
        certs[uuid.UUID(bytes=guid)] = table[offset : offset + length]
    raise AttestationError("SNP certificate table has no terminating entry", step="attest")


def snp_certificate_table(certs: dict[uuid.UUID, bytes]) -> bytes:
    """The inverse of :func:`snp_certificates` (what a host hands the guest)."""
    head = _ENTRY.size * (len(certs) + 1)
    entries, blobs, offset = [], [], head
    for guid, der in certs.items():
        entries.append(_ENTRY.pack(guid.bytes, offset, len(der)))
        blobs.append(der)
        offset += len(der)
    return b"".join([*entries, bytes(_ENTRY.size), *blobs])
