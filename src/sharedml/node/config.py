"""A node agent's config file (``node.yaml``): who it is, where the platform is, what it holds.

See :mod:`sharedml.node.agent` for the fields in context; relative paths
resolve against the file's folder, so a bundle from ``sharedml deploy`` works
wherever it is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sharedml.checkpoints import FINGERPRINT, fingerprint
from sharedml.config_file import load_yaml
from sharedml.errors import ConfigError
from sharedml.node.enclave_host import EnclaveHostConfig
from sharedml.node.registry import DatasetEntry, entry
from sharedml.scale.config import ComputeConfig
from sharedml.telemetry.access import MetricsAccess


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    party: str
    platform: str
    pki_dir: Path
    work_dir: Path
    listen: str = "127.0.0.1:0"
    #: Where peers reach this node (``host[:port]``) when it is not ``listen``; checked at
    #: start (:mod:`sharedml.node.addresses`): never 0.0.0.0 or ::, and the name resolves.
    advertise: str | None = None
    #: Where to serve /metrics, /healthz and /readyz (plain HTTP): ``host:port`` (open to
    #: who reaches it), or ``{listen: host:port, token_file: FILE}`` (/metrics needs the
    #: file's bearer token, :mod:`sharedml.telemetry.access`); none if unset.
    metrics: str | MetricsAccess | None = None
    #: The platform certificate's subject (checked on every connection).
    platform_name: str = "platform"
    #: The deployment's revocation list (default: ``pki_dir/crl.pem`` when there is one),
    #: checked for every peer and the platform, re-read when it changes.
    crl: Path | None = None
    #: name -> a CSV/Parquet file, or a mapping (``path`` or ``sql`` + ``table``, ``columns``).
    datasets: dict[str, Path | DatasetEntry] = Field(default_factory=dict)
    #: Approver name -> its Ed25519 public key file: whose signed approval lets a job
    #: read this party's data. Written by the party's operator; never from the platform.
    approvers: dict[str, Path] = Field(default_factory=dict)
    heartbeat_s: float = Field(1.0, gt=0.0, le=60.0)
    #: ``party``: runs its party's tasks; ``dealer``: deals MPC randomness, holds no data;
    #: ``enclave``: offers a service enclave for ``scheme: tee`` jobs (:mod:`sharedml.node.enclave_host`).
    role: Literal["party", "dealer", "enclave"] = "party"
    #: An enclave node's enclave: its address, or the simulator's pieces (``role: enclave`` only).
    enclave: EnclaveHostConfig | None = None
    #: The node's keys (:class:`~sharedml.modelpart.FileNodeKeys`); default ``work_dir/keys``.
    keys_dir: Path | None = None
    #: This party's sealed model parts; default ``work_dir/models``.
    models_dir: Path | None = None
    #: The platform's audit-checkpoint public key this node trusts (9.3): a PEM file
    #: (``sharedml platform audit-key --out``) or its ``sha256:`` fingerprint. Unset: the
    #: node pins the first key it is sent (trust on first use).
    audit_checkpoint_key: str | None = None
    #: Where the party's heavy work runs: here (default) or its own Ray cluster
    #: (``compute: {ray: {address: auto, workers: 4, ...}}``, :mod:`sharedml.scale.config`).
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    @model_validator(mode="after")
    def _roles_hold_what_they_may(self) -> NodeConfig:
        if self.role != "party" and self.datasets:
            raise ValueError(f"a {self.role} node holds no datasets; remove 'datasets:'")
        if (self.role == "enclave") != (self.enclave is not None):
            raise ValueError("an enclave node needs 'enclave:' (its address or 'simulate:'), "
                             "and only an enclave node has one")
        return self

    @classmethod
    def load(cls, path: str | Path) -> NodeConfig:
        """Read a YAML node config; relative paths resolve against its folder."""
        path = Path(path)
        config = load_yaml(cls, path, "node config")
        base = path.resolve().parent
        config.pki_dir = base / config.pki_dir
        config.work_dir = base / config.work_dir
        config.crl = None if config.crl is None else base / config.crl
        config.datasets = {k: entry(v, base) for k, v in config.datasets.items()}
        config.approvers = {k: base / v for k, v in config.approvers.items()}
        config.keys_dir = base / (config.keys_dir or config.work_dir / "keys")
        config.models_dir = base / (config.models_dir or config.work_dir / "models")
        config.enclave = None if config.enclave is None else config.enclave.resolved(base)
        if isinstance(config.metrics, MetricsAccess) and config.metrics.token_file is not None:
            config.metrics.token_file = base / config.metrics.token_file
        key = config.audit_checkpoint_key
        if key is not None and not key.startswith("sha256:"):
            config.audit_checkpoint_key = str(base / key)
        return config

    def checkpoint_pin(self) -> str | None:
        """The fingerprint of the platform's checkpoint key ``audit_checkpoint_key`` names
        (reading its PEM file), or ``None`` when the config pins none."""
        key = self.audit_checkpoint_key
        if key is None:
            return None
        remedy = ("ask the platform's operator for its key ('sharedml platform audit-key') "
                  "and set audit_checkpoint_key: to that PEM file or its sha256: fingerprint")
        if key.startswith("sha256:"):
            if not FINGERPRINT.match(key):
                raise ConfigError(f"node {self.party}: audit_checkpoint_key {key!r} is not "
                                  "sha256: and 64 lower-case hex digits", remedy=remedy)
            return key
        try:
            pem = Path(key).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"node {self.party}: cannot read the platform's audit key "
                              f"{key} ({type(exc).__name__})", remedy=remedy) from None
        try:
            return fingerprint(pem)
        except ConfigError:
            raise ConfigError(f"node {self.party}: {key} is not a PEM public key",
                              remedy=remedy) from None
