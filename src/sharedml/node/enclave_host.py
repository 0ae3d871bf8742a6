"""An enclave node's host side: the service enclave it offers the platform for ``scheme: tee`` jobs.

A node agent with ``role: enclave`` (``node.yaml``) runs on a TEE host, outside
the enclave. It holds no dataset and runs no task of its own: it says hello
to the platform with the *enclave's* RA-TLS address, heartbeats like every
node (so the platform stores it, marks it offline when silent and finds it
again after a restart), and keeps the enclave running. The platform attests
the enclave itself over RA-TLS before it dispatches a job to it
(:mod:`sharedml.platform.tee_jobs`), so this host process is trusted for
availability only — what it sees is what the host OS sees (§7, TEE row).

Two ways to have an enclave (``enclave:`` in the node config, exactly one)::

    enclave:
      address: 10.0.0.5:7300        # already running: gramine-sgx, nitro-cli, a confidential VM
    enclave:
      simulate:                     # the simulator: this agent starts it (tee/manager.py)
        vendor: ../vendor           # 'sharedml tee sim-vendor' folder
        platform: platform-1        # a platform provisioned in vendor/platforms/
        signer: ../signer.pem       # the release key that signs the build (P-384 PEM)
        svn: 1

A simulated enclave that dies is started again with a fresh key; the agent
then says hello anew (a new boot), and the platform retries the jobs that
enclave held (their uploads died with it). It serves mutual TLS: every
caller — the platform, each provider, this agent — presents a certificate
of the deployment CA in the node's ``pki_dir``; only the platform and this
node's name may open, destroy or shut down (``--operator``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from sharedml.tee.manager import EnclaveHandle, EnclaveManager

log = logging.getLogger("sharedml.node")


class SimulatedEnclave(BaseModel):
    """The simulator's pieces on this host: its provisioned platform and the signed build's key."""

    model_config = ConfigDict(extra="forbid")

    vendor: Path
    platform: str = Field("platform-1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    signer: Path
    svn: int = Field(1, ge=0)


class EnclaveHostConfig(BaseModel):
    """``enclave:`` of an enclave node's config (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, min_length=3, max_length=255)
    simulate: SimulatedEnclave | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnclaveHostConfig:
        if (self.address is None) == (self.simulate is None):
            raise ValueError("give exactly one of 'address' (an enclave already running) or 'simulate'")
        return self

    def resolved(self, base: Path) -> EnclaveHostConfig:
        """Relative paths against the config file's folder."""
        if self.simulate is None:
            return self
        sim = self.simulate.model_copy(update={"vendor": base / self.simulate.vendor,
                                               "signer": base / self.simulate.signer})
        return self.model_copy(update={"simulate": sim})


class EnclaveHost:
    """Keeps this node's service enclave available and says where it serves."""

    def __init__(self, config: EnclaveHostConfig, work_dir: Path, *, pki_dir: Path | None = None,
                 name: str = "enclave") -> None:
        self.config = config
        self.work_dir = work_dir
        #: The node's PKI folder and certificate name: a simulated enclave then requires a client
        #: certificate from the deployment CA of every caller (mutual TLS over RA-TLS).
        self.pki_dir, self.name = pki_dir, name
        self._manager: EnclaveManager | None = None
        self._handle: EnclaveHandle | None = None

    def ensure(self) -> str:
        """The enclave's address now; a simulated enclave that is not running is started (again)."""
        if self.config.address is not None:
            return self.config.address
        if self._handle is None or self._handle.process.poll() is not None:
            if self._handle is not None:
                log.warning("service enclave %s exited (code %s); starting a new one",
                            self._handle.id, self._handle.process.returncode)
                self._stop()
            self._handle = self._start()
        return self._handle.address

    def _start(self) -> EnclaveHandle:
        from sharedml.tee.attestation.sim import load_key
        from sharedml.tee.enclave.service import peer_verifier
        from sharedml.tee.manager import EnclaveManager, build_manifest

        sim = self.config.simulate
        assert sim is not None  # the address case returned before (validated config)
        if self._manager is None:
            self._manager = EnclaveManager(self.work_dir / "enclaves", sim.vendor / "platforms" / sim.platform,
                                           verifier=peer_verifier(str(sim.vendor)), tls_dir=self.pki_dir,
                                           tls_name=self.name)
        handle = self._manager.create(None, build_manifest(load_key(sim.signer), svn=sim.svn))
        log.info("service enclave %s serving on %s (simulated, svn %d)", handle.id, handle.address, sim.svn)
        return handle

    def _stop(self) -> None:
        if self._manager is not None:
            self._manager.stop_all()
        self._handle = None

    def close(self) -> None:
        """Shut the simulated enclave down (its open jobs go with it)."""
        self._stop()
