"""``sharedml up``: a deployment on one machine — the platform and a node agent per
party (and the dealer's) as separate processes on loopback.

The other run modes, without a platform, are in :mod:`sharedml.standalone`.
:func:`prepare` (:mod:`sharedml.platform.local_layout`) lays out ``DIR``: the
deployment CA and certificates, each node's ``node.yaml``, the owners'
approval keys, ``cluster.json``, and the first accounts' tokens and passwords.
:class:`LocalDeployment` starts the platform (``sharedml platform serve``: REST API over HTTPS with
the deployment CA's "platform" certificate, node service and scheduler loop in
one process; clients verify it against ``DIR/pki/ca.pem``), one ``sharedml node`` process per party
and the dealer node (unless ``dealer=False``), which connect to the platform
over mutual TLS and talk to each other directly. The dealer node deals the
correlated randomness of secret-shared steps (``protocol: ss``); it holds no
data and sees nothing but the randomness it made (docs/architecture.md §7); on a
real deployment it runs on a host no data party controls. Everything after that goes through the REST API, as in a deployment.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharedml.errors import ConfigError, SharedMLError
from sharedml.platform.local_layout import (
    DEALER,
    ENCLAVE,
    PLATFORM,
    DeploymentSpec,
    free_port,
    prepare,
)

if TYPE_CHECKING:
    from sharedml.sdk import Client

__all__ = ["DEALER", "ENCLAVE", "PLATFORM", "DeploymentSpec", "LocalDeployment", "free_port",
           "prepare"]

log = logging.getLogger("sharedml.platform.local_deployment")


@dataclass
class LocalDeployment:
    """The processes of a prepared deployment: start, stop, kill one, restart the platform."""

    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.root / "cluster.json").read_text())
        return info

    @property
    def nodes(self) -> list[str]:
        """Every node: the parties', then the dealer's and the enclave node (if the cluster has them)."""
        info = self.info
        return [*info["parties"], *[info[k] for k in ("dealer", "enclave") if info.get(k)]]

    def tokens(self) -> dict[str, str]:
        tokens: dict[str, str] = json.loads((self.root / "tokens.json").read_text())
        return tokens

    def client(self, user: str) -> Client:
        """An SDK client as ``user``, verifying the platform against the deployment CA."""
        from sharedml.sdk import Client

        return Client(self.info["url"], self.tokens()[user], verify=self.info["ca"])

    def approve_all(self, job_id: str) -> None:
        """Every party's owner approves ``job_id``, signing with its approval key."""
        for party, key in self.info["approval_keys"].items():
            with self.client(f"{party}-owner") as owner:
                for approval in owner.approvals(job_id, state="pending"):
                    owner.approve(approval["id"], key=key)

    def start(self, wait: float = 60.0) -> LocalDeployment:
        self.start_platform()
        self.wait_platform(wait)  # nodes started earlier would log "connection refused"
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready(wait)
        return self

    def start_platform(self) -> None:
        info = self.info
        port = info["url"].rpartition(":")[2]
        node_port = info["node_service"].rpartition(":")[2]
        self._spawn(PLATFORM, [
            sys.executable, "-m", "sharedml.cli", "platform", "serve",
            "--data-dir", str(self.root / "platform"), "--port", port,
            "--pki-dir", str(self.root / "pki"), "--node-port", node_port, "--tick", "0.2",
            *(["--db-url", info["db_url"]] if info.get("db_url") else []),
            *(["--config", str(self.root / "platform.yaml")] if info.get("enclave") else []),
        ])

    def start_node(self, party: str) -> None:
        config = self.root / "nodes" / party / "node.yaml"
        self._spawn(party, [sys.executable, "-m", "sharedml.cli", "node", str(config)])

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash: nothing is flushed or said goodbye)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def wait_ready(self, wait: float = 60.0) -> None:
        """Until the API answers and every node has said hello."""
        import ssl

        import httpx

        admin = {"Authorization": f"Bearer {self.tokens()['admin']}"}
        tls = ssl.create_default_context(cafile=self.info["ca"])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = httpx.get(f"{self.info['url']}/api/v1/nodes", headers=admin, timeout=2,
                              verify=tls)
                online = {n["id"] for n in r.json() if n["status"] == "online"} if r.is_success else set()
                if set(self.nodes) <= online:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SharedMLError(f"the local cluster in {self.root} did not come up within {wait:g} s",
                            remedy=f"see the logs in {self.root / 'logs'}")

    def wait_platform(self, wait: float = 60.0) -> None:
        """Until the platform's node service accepts connections."""
        host, _, port = self.info["node_service"].rpartition(":")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SharedMLError(f"the platform of {self.root} did not listen within {wait:g} s",
                            remedy=f"see {self.root / 'logs' / 'platform.log'}")

    def check_alive(self) -> None:
        for name, code in self.exited().items():
            raise SharedMLError(f"{name} exited with code {code}:\n{self.log_tail(name)}")

    def exited(self) -> dict[str, int | None]:
        """The processes started here that have exited, with their exit codes."""
        return {name: proc.returncode for name, proc in self.procs.items()
                if proc.poll() is not None}

    def forget(self, name: str) -> None:
        """Drop an exited process's handle (before starting it again)."""
        self.procs.pop(name, None)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        log_file = self.root / "logs" / f"{name}.log"
        return log_file.read_text(errors="replace")[-chars:] if log_file.exists() else ""

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            raise ConfigError(f"{name} is already running")
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

