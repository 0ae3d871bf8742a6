"""The deployment plan: who runs what where (the input of ``sharedml deploy``).

A YAML file the operator writes once::

    name: a1-credit
    platform: {host: platform.example.net}      # api_port 8600, node_port 8601
    dealer: {host: dealer.example.net}           # a host no data party controls
    organisations:
      bank:
        host: bank.example.com                   # what the other nodes dial
        datasets: {bank_customers: /srv/sharedml/customers.csv}
        owners: [bank-risk-lead]                 # approval keys its node trusts
      partner:
        host: partner.example.org
        datasets: {partner_features: /data/features.parquet}

Hosts are what the *other* machines dial (a DNS name or an address), never an
any-interface address; each process still binds every interface of its own
host (``listen``). Every name here ends up in certificates, units and configs,
so it is checked before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sharedml.node.addresses import is_wildcard

#: Names of the deployment's own processes; no organisation may take them.
PLATFORM, DEALER = "platform", "dealer"
#: Where a node's bundle holds the platform's audit-checkpoint key its node.yaml pins.
AUDIT_KEY = "pki/platform-audit.pem"
_NAME = r"^[a-z][a-z0-9-]{0,40}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Host(_Strict):
    #: The name or address other machines dial.
    host: str = Field(min_length=1, max_length=253)
    #: What the process binds on its own host.
    listen: str = "0.0.0.0"

    @field_validator("host")
    @classmethod
    def _dialable(cls, host: str) -> str:
        if is_wildcard(host.strip("[]")) or (":" in host and not host.startswith("[")):
            raise ValueError(f"{host!r} is not an address other hosts can dial "
                             "(a name or an address; IPv6 in brackets)")
        return host


class PlatformPlan(Host):
    api_port: int = Field(8600, ge=1, le=65535)
    node_port: int = Field(8601, ge=1, le=65535)
    #: PostgreSQL URL; default SQLite in the platform's data dir. Leave the password out:
    #: the URL goes into the unit's command line; the password goes in the data dir's
    #: ``db.password`` (0600, :mod:`sharedml.platform.db_password`).
    db_url: str | None = None


class DealerPlan(Host):
    port: int = Field(7100, ge=1, le=65535)


class Organisation(Host):
    port: int = Field(7000, ge=1, le=65535)
    #: Dataset name -> a file on the organisation's host (the node's registry).
    datasets: dict[str, str] = Field(default_factory=dict)
    #: Names of the approval keys whose signatures let a job read this party's data.
    owners: list[str] = Field(default_factory=list)
    #: Port of the node's /metrics, /healthz and /readyz (0: none).
    metrics_port: int = Field(9464, ge=0, le=65535)


class DeploymentPlan(_Strict):
    name: str = Field(pattern=_NAME)
    platform: PlatformPlan
    dealer: DealerPlan | None = None
    organisations: dict[str, Organisation] = Field(min_length=2)
    #: The container image every compose file and manifest runs (built from Dockerfile).
    image: str = "sharedml:0.1.0"
    #: Where each bundle is installed on its host (systemd units use absolute paths).
    prefix: str = "/opt/sharedml"
    #: The ``sharedml`` command on the hosts (systemd units).
    sharedml: str = "/usr/local/bin/sharedml"
    #: The systemd user the processes run as.
    user: str = "sharedml"
    heartbeat_s: float = Field(2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _names(self) -> DeploymentPlan:
        import re

        for org in self.organisations:
            if org in (PLATFORM, DEALER) or not re.match(_NAME, org):
                raise ValueError(f"organisation name {org!r}: lower-case letters, digits and "
                                 f"'-', starting with a letter, and not {PLATFORM!r} or {DEALER!r}")
        return self

    @classmethod
    def load(cls, path: Path) -> DeploymentPlan:
        from sharedml.config_file import load_yaml

        return load_yaml(cls, path, "deployment plan",
                         remedy="see deploy/README.md for the plan's fields")

    def owners_of(self, org: str) -> list[str]:
        """The approval keys an organisation's node trusts (default ``<org>-owner``)."""
        return self.organisations[org].owners or [f"{org}-owner"]

    def bundle_dir(self, who: str) -> str:
        """Where ``who``'s bundle is installed on its host."""
        return f"{self.prefix.rstrip('/')}/{who}"
