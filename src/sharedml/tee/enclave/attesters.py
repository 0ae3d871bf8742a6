"""Which attester the enclave process uses: chosen by the image, never guessed from the host.

Each enclave image fixes ``--attester`` in its measured configuration
(``deploy/tee/``): ``gramine`` (SGX under gramine-sgx), ``tsm`` (TDX or
SEV-SNP confidential VM through configfs-tsm), ``nitro`` (AWS Nitro Enclave)
or ``sim`` (the simulator's quoting process). A host that changes the flag
gets evidence no provider's policy accepts (simulated evidence is refused
unless a provider allows simulation).

Sealing: the simulator and Gramine derive seal keys; TDX, SNP and Nitro give
this runtime none, so their state outlives a restart only through the
cluster key (:mod:`.trusted_cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sharedml.errors import ConfigError
from sharedml.tee.attestation.base import Attester
from sharedml.tee.attestation.collateral import CollateralSource, FileCollateral, PccsCollateral
from sharedml.tee.enclave.sealing import SealedStore

KINDS = ("sim", "gramine", "tsm", "nitro")


@dataclass(frozen=True)
class AttesterConfig:
    kind: str
    qe_socket: str | None = None  # sim: the quoting process's socket
    collateral_file: str | None = None  # DCAP collateral JSON or SNP VCEK fetched ahead of time
    pccs_url: str | None = None  # or fetch DCAP collateral from a PCCS
    svn: int = 0  # gramine: the manifest's sgx.isvsvn


def _collateral(config: AttesterConfig) -> CollateralSource | None:
    if config.collateral_file:
        return FileCollateral(config.collateral_file)
    if config.pccs_url:
        return PccsCollateral(config.pccs_url)
    return None


def make_attester(config: AttesterConfig) -> tuple[Attester, SealedStore | None]:
    """The attester (and seal store, where the runtime has seal keys) for ``config.kind``."""
    if config.kind == "sim":
        from sharedml.tee.attestation.simqe import SimAttester

        if not config.qe_socket:
            raise ConfigError("--attester sim needs --qe (the quoting process's socket)", step="start")
        sim = SimAttester(config.qe_socket)
        return sim, SealedStore(sim.seal_key, sim.svn(), measurement_key=sim.measurement_seal_key)
    if config.kind == "gramine":
        from sharedml.tee.attestation.gramine import GramineAttester

        source = _collateral(config)
        if source is None:
            raise ConfigError("--attester gramine needs --collateral or --pccs", step="start",
                              remedy="the verifier needs the platform's DCAP collateral")
        gramine = GramineAttester(source, svn=config.svn)
        return gramine, SealedStore(gramine.seal_key, config.svn, measurement_key=gramine.measurement_seal_key)
    if config.kind == "tsm":
        from sharedml.tee.attestation.configfs_tsm import ConfigfsTsmAttester

        return ConfigfsTsmAttester(collateral=_collateral(config)), None
    if config.kind == "nitro":
        from sharedml.tee.attestation.nsm import NitroAttester

        return NitroAttester(), None
    raise ConfigError(f"unknown attester {config.kind!r}", step="start", remedy=f"use one of {KINDS}")
