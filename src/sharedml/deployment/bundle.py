"""Write one bundle per organisation, one for the platform and one for the dealer.

``OUT/<who>/`` holds everything its operator needs besides the package::

    node.yaml            the node's config (organisations and the dealer)
    pki/ca.pem, crl.pem  the deployment CA's certificate and revocation list
                         (when the CA's folder is given); the key and the
                         certificate request are made here, on the host
    pki/platform-audit.pem  (a node's) the platform's audit-checkpoint key, which
                         node.yaml pins: the platform's operator sends it after
                         the platform's first start (STEPS.md)
    owners/              the organisation's approval public keys go here
    systemd/sharedml-<who>.service
    compose.yaml         docker compose (image built from the repo's Dockerfile)
    k8s/<who>.yaml       Deployment, Service, PersistentVolumeClaim(s)
    alerts.yml           Prometheus alert rules (the platform's bundle)
    STEPS.md             this operator's steps, in order

Nothing secret is written: no private key, no token, no password.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sharedml.deployment import steps
from sharedml.deployment.plan import AUDIT_KEY, DEALER, PLATFORM, DeploymentPlan
from sharedml.deployment.units import (
    Process,
    compose_file,
    kubernetes_manifests,
    systemd_unit,
)
from sharedml.errors import ConfigError

ALERTS = Path(__file__).with_name("alerts.yml")


def processes(plan: DeploymentPlan) -> list[Process]:
    """The platform, every organisation's node and the dealer (if planned)."""
    p = plan.platform
    out = [Process(
        PLATFORM, f"sharedml platform of {plan.name}",
        ("platform", "serve", "--data-dir", "{bundle}/data", "--pki-dir", "{bundle}/pki",
         "--host", p.listen, "--port", str(p.api_port), "--node-port", str(p.node_port),
         *(("--db-url", p.db_url) if p.db_url else ())),
        (p.api_port, p.node_port), ("data",), health_port=p.api_port, health_scheme="HTTPS",
    )]
    for org, o in plan.organisations.items():
        data_dirs = sorted({str(Path(path).parent) for path in o.datasets.values()})
        owners = tuple(f"owners/{k}.pub" for k in plan.owners_of(org))
        out.append(Process(
            org, f"sharedml node of {org} ({plan.name})", ("node", "{bundle}/node.yaml"),
            (o.port, *((o.metrics_port,) if o.metrics_port else ())), ("work",),
            data_dirs=tuple(data_dirs), health_port=o.metrics_port,
            config_files=("node.yaml", *owners),
        ))
    if plan.dealer is not None:
        d = plan.dealer
        out.append(Process(
            DEALER, f"sharedml dealer node of {plan.name}",
            ("node", "--dealer", "{bundle}/node.yaml"), (d.port,), ("work",),
            config_files=("node.yaml",),
        ))
    return out


def node_config(plan: DeploymentPlan, who: str) -> dict[str, object]:
    """``node.yaml`` of an organisation or the dealer; paths relative to the bundle."""
    platform = f"{plan.platform.host}:{plan.platform.node_port}"
    common = {"platform": platform, "pki_dir": "pki", "work_dir": "work",
              "heartbeat_s": plan.heartbeat_s, "audit_checkpoint_key": AUDIT_KEY}
    if who == DEALER:
        if plan.dealer is None:
            raise ConfigError("the plan has no dealer")
        d = plan.dealer
        return {"party": DEALER, "role": "dealer", **common,
                "listen": f"{d.listen}:{d.port}", "advertise": f"{d.host}:{d.port}"}
    o = plan.organisations[who]
    config: dict[str, object] = {
        "party": who, **common,
        "listen": f"{o.listen}:{o.port}", "advertise": f"{o.host}:{o.port}",
        "datasets": dict(o.datasets),
        "approvers": {k: f"owners/{k}.pub" for k in plan.owners_of(who)},
    }
    if o.metrics_port:
        config["metrics"] = f"{o.listen}:{o.metrics_port}"
    return config


def write_bundles(plan: DeploymentPlan, out: Path, ca_dir: Path | None = None) -> list[Path]:
    """Write every bundle under ``out`` (which must not hold one yet); returns the folders."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty",
                          remedy="write the bundles to a new folder; never over installed ones")
    ca_files = _ca_files(ca_dir)
    written = []
    for proc in processes(plan):
        folder = out / proc.who
        for sub in ("pki", "systemd", "k8s", *proc.state):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        if proc.who != PLATFORM:
            (folder / "owners").mkdir(exist_ok=True)
            (folder / "node.yaml").write_text(
                "# written by 'sharedml deploy'; paths are relative to this file\n"
                + json.dumps(node_config(plan, proc.who), indent=2) + "\n")
        else:
            shutil.copyfile(ALERTS, folder / "alerts.yml")
        for src in ca_files:
            shutil.copyfile(src, folder / "pki" / src.name)
        (folder / "systemd" / f"{proc.unit_name}.service").write_text(systemd_unit(plan, proc))
        (folder / "compose.yaml").write_text(compose_file(plan, proc))
        (folder / "k8s" / f"{proc.who}.yaml").write_text(kubernetes_manifests(plan, proc))
        (folder / "STEPS.md").write_text(steps.render(plan, proc, has_ca=bool(ca_files)))
        written.append(folder)
    (out / "README.md").write_text(steps.overview(plan))
    return written


def _ca_files(ca_dir: Path | None) -> list[Path]:
    if ca_dir is None:
        return []
    ca = Path(ca_dir) / "ca.pem"
    if not ca.is_file():
        raise ConfigError(f"no ca.pem in {ca_dir}", remedy="sharedml pki init CA_DIR first")
    crl = Path(ca_dir) / "crl.pem"
    return [ca, *([crl] if crl.is_file() else [])]
