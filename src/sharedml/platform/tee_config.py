"""The ``tee:`` section of the platform's config file (``sharedml platform serve --config FILE``).

With it the platform runs ``scheme: tee`` jobs (:mod:`sharedml.platform.tee_jobs`)::

    tee:
      policy:                      # what every enclave must prove before a job goes to it
        signer: 3f1c...            # release key's id (or measurements: [hex, ...])
        product_id: 1
        min_svn: 1
        tcb_statuses: [UpToDate]   # the minimum TCB: platforms whose TCB status is listed
        allow_debug: false
        allow_simulation: false    # true only with trust: (the simulator)
      trust: null                  # the CPU vendors' roots pinned in the package; or a
                                   # simulated vendor's folder ('sharedml tee sim-vendor')
      enclaves:                    # service enclaves the platform reaches itself, beside
        - {name: sgx-1, address: 10.0.0.5:7300}   # enclave nodes that say hello (role: enclave)
      home: null                   # sealed releases; default DATA_DIR/tee

Relative paths resolve against the file's folder. A file without ``tee:`` runs
no TEE jobs, as does a platform started without ``--config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_NAME = r"^[A-Za-z0-9._-]+$"


class TeePolicy(BaseModel):
    """Reference values (:class:`~sharedml.tee.attestation.base.Policy`) as the operator writes them."""

    model_config = ConfigDict(extra="forbid")

    measurements: list[str] = Field(default_factory=list, max_length=64)
    signer: str | None = None
    product_id: int | None = None
    min_svn: int = Field(0, ge=0)
    tcb_statuses: list[str] = Field(default_factory=lambda: ["UpToDate"], min_length=1)
    allow_debug: bool = False
    allow_simulation: bool = False

    def policy(self) -> Any:
        from sharedml.tee.attestation.base import Policy

        return Policy(measurements=frozenset(self.measurements), signer=self.signer,
                      product_id=self.product_id, min_svn=self.min_svn, allow_debug=self.allow_debug,
                      allow_simulation=self.allow_simulation, tcb_statuses=frozenset(self.tcb_statuses))


class EnclaveEndpoint(BaseModel):
    """A service enclave the platform reaches at a fixed address (no node agent beside it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    address: str = Field(min_length=3, max_length=255)


class TeeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: TeePolicy
    trust: Path | None = None
    enclaves: list[EnclaveEndpoint] = Field(default_factory=list, max_length=64)
    home: Path | None = None

    @model_validator(mode="after")
    def _simulation_is_explicit(self) -> TeeConfig:
        if self.trust is not None and not self.policy.allow_simulation:
            raise ValueError("trust: names a simulated vendor, whose evidence is refused unless "
                             "policy.allow_simulation is true")
        if not self.policy.measurements and self.policy.signer is None:
            raise ValueError("policy needs measurements or a signer (with product_id)")
        return self

    def verifier(self) -> Any:
        """The trust anchors: the simulated vendor's in ``trust``, else the packaged hardware roots."""
        from sharedml.tee.enclave.service import peer_verifier

        return peer_verifier(None if self.trust is None else str(self.trust))


class PlatformFile(BaseModel):
    """The platform's config file; today it holds the ``tee:`` section only."""

    model_config = ConfigDict(extra="forbid")

    tee: TeeConfig | None = None

    @classmethod
    def load(cls, path: str | Path) -> PlatformFile:
        from sharedml.config_file import load_yaml

        path = Path(path)
        config = load_yaml(cls, path, "the platform config",
                           remedy=f"see 'sharedml platform serve --help'; fix {path}")
        base = path.resolve().parent
        if config.tee is not None:
            config.tee.trust = None if config.tee.trust is None else base / config.tee.trust
            config.tee.home = None if config.tee.home is None else base / config.tee.home
        return config
