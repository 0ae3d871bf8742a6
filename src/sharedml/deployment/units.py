"""One process of a deployment as a systemd unit, a compose service and Kubernetes objects.

The three describe the same process: the same ``sharedml`` arguments, the
same bundle folder (installed at ``PREFIX/<who>`` for systemd, mounted at
``/bundle`` in a container), restarted when it dies (systemd ``Restart=``,
compose ``restart:``, a Deployment's pod restart policy; 8.3-5), probed on
``/healthz`` and ``/readyz`` where it serves them. Bundle paths are written
``{bundle}/...`` in :attr:`Process.args` and filled per target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from sharedml.deployment.plan import DeploymentPlan

CONTAINER_BUNDLE = "/bundle"


@dataclass(frozen=True)
class Process:
    """What runs: ``who`` (platform, dealer or an organisation) and how."""

    who: str
    description: str
    #: ``sharedml`` arguments; ``{bundle}`` is the bundle folder.
    args: tuple[str, ...]
    #: Ports other hosts (or Prometheus) connect to.
    ports: tuple[int, ...]
    #: Bundle sub-folders the process writes (its state).
    state: tuple[str, ...]
    #: Folders on the host it reads datasets from (mounted read-only in containers).
    data_dirs: tuple[str, ...] = ()
    #: Bundle files that reach a pod through its ConfigMap (configs and public keys).
    config_files: tuple[str, ...] = ()
    #: Port of ``/healthz``, ``/readyz`` and ``/metrics`` (0: none).
    health_port: int = 0
    health_scheme: str = "HTTP"

    def argv(self, bundle: str) -> list[str]:
        return [a.replace("{bundle}", bundle) for a in self.args]

    @property
    def unit_name(self) -> str:
        return f"sharedml-{self.who}"


def systemd_unit(plan: DeploymentPlan, proc: Process) -> str:
    """A service unit: restarts on failure, writes only its state folders."""
    bundle = plan.bundle_dir(proc.who)
    argv = " ".join([plan.sharedml, *proc.argv(bundle)])
    writable = " ".join(f"{bundle}/{d}" for d in proc.state)
    return f"""[Unit]
Description={proc.description}
Documentation=file://{bundle}/STEPS.md
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=20

[Service]
Type=simple
User={plan.user}
WorkingDirectory={bundle}
ExecStart={argv}
# a crashed process comes back (8.3-5); a clean stop stays stopped
Restart=on-failure
RestartSec=3
KillSignal=SIGTERM
TimeoutStopSec=20
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={writable}
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def compose_file(plan: DeploymentPlan, proc: Process) -> str:
    """A docker-compose project with one service, restarted unless stopped."""
    volumes = [f"./:{CONTAINER_BUNDLE}"] + [f"{d}:{d}:ro" for d in proc.data_dirs]
    service: dict[str, Any] = {
        "image": plan.image,
        "command": proc.argv(CONTAINER_BUNDLE),
        "restart": "unless-stopped",
        "ports": [f"{p}:{p}" for p in proc.ports],
        "volumes": volumes,
        "stop_signal": "SIGTERM",
    }
    if proc.health_port:
        service["healthcheck"] = {
            "test": ["CMD", "python", "-m", "sharedml.deployment.probe",
                     f"{proc.health_scheme.lower()}://127.0.0.1:{proc.health_port}/healthz"],
            "interval": "10s", "timeout": "5s", "retries": 3,
        }
    doc = {"name": f"sharedml-{plan.name}-{proc.who}", "services": {proc.who: service}}
    return _header(proc) + yaml.safe_dump(doc, sort_keys=False)


def kubernetes_manifests(plan: DeploymentPlan, proc: Process) -> str:
    """A Deployment (one replica, recreated), its Service and the state's claim.

    The bundle's files reach the pod as a ConfigMap (configs, public keys; one
    key per file, :func:`config_key`) and a Secret (the PKI folder, which holds
    the private key) that ``STEPS.md`` says how to create; the state lives on a
    PersistentVolumeClaim.
    """
    name = f"sharedml-{proc.who}"
    labels = {"app.kubernetes.io/name": "sharedml", "app.kubernetes.io/instance": name}
    mounts = [
        {"name": "pki", "mountPath": f"{CONTAINER_BUNDLE}/pki", "readOnly": True},
        *({"name": "config", "mountPath": f"{CONTAINER_BUNDLE}/{f}", "subPath": config_key(f),
           "readOnly": True} for f in proc.config_files),
        *({"name": f"state-{i}", "mountPath": f"{CONTAINER_BUNDLE}/{d}"}
          for i, d in enumerate(proc.state)),
        *({"name": f"data-{i}", "mountPath": d, "readOnly": True}
          for i, d in enumerate(proc.data_dirs)),
    ]
    volumes = [
        {"name": "pki", "secret": {"secretName": f"{name}-pki", "defaultMode": 0o400}},
        *([{"name": "config", "configMap": {"name": f"{name}-config"}}]
          if proc.config_files else []),
        *({"name": f"state-{i}", "persistentVolumeClaim": {"claimName": f"{name}-{d}"}}
          for i, d in enumerate(proc.state)),
        *({"name": f"data-{i}", "hostPath": {"path": d, "type": "Directory"}}
          for i, d in enumerate(proc.data_dirs)),
    ]
    container: dict[str, Any] = {
        "name": proc.who, "image": plan.image,
        "args": proc.argv(CONTAINER_BUNDLE),
        "ports": [{"containerPort": p} for p in proc.ports],
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "runAsUser": 10001},
    }
    if proc.health_port:
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            container[probe] = {"httpGet": {"path": path, "port": proc.health_port,
                                            "scheme": proc.health_scheme},
                                "periodSeconds": 10, "failureThreshold": 3}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"restartPolicy": "Always", "containers": [container],
                                       "volumes": volumes}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
        "spec": {"type": "LoadBalancer", "selector": labels,
                 "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in proc.ports]},
    }
    claims = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": f"{name}-{d}", "labels": labels},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
        for d in proc.state
    ]
    return _header(proc) + yaml.safe_dump_all([deployment, service, *claims], sort_keys=False)


def config_key(path: str) -> str:
    """A bundle file's key in the ConfigMap (keys hold no '/')."""
    return path.replace("/", ".")


def _header(proc: Process) -> str:
    return f"# {proc.description} — written by 'sharedml deploy'; see STEPS.md\n"
