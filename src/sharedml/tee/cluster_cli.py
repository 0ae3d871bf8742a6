"""``sharedml tee cluster up|status|down`` and ``sharedml tee upgrade``: the trusted cluster as a service.

``cluster up`` runs in the foreground on the platform host (simulated TEE
platform): it starts the members, forms the cluster and answers on
``HOME/control.sock`` until ``cluster down`` or a signal. ``status`` and
``upgrade`` talk to that socket. The home folder holds what a platform keeps::

    HOME/vendor     the simulated vendor (root, TCB info, CRL) and platform
    HOME/pki        the deployment CA; certificates of platform and parties
    HOME/signer.pem the release key that signs enclave builds (sim)
    HOME/floor      the anti-rollback floor (only rises)
    HOME/state      the members' sealed state
    HOME/platform   enclave homes and the hash-chained audit log
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from sharedml.errors import SharedMLError


def _open_home(home: Path, svn: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    from sharedml.crypto import pki
    from sharedml.tee.attestation.base import Policy, Verifier, VersionFloor
    from sharedml.tee.attestation.sim import (
        SimBackend,
        SimVendor,
        _write_key,
        load_key,
        signer_id,
        simulated_vendor,
    )
    from sharedml.tee.cluster_service import TrustedCluster
    from sharedml.tee.manager import ClusterDirs, EnclaveManager, build_manifest

    home.mkdir(parents=True, exist_ok=True)
    vendor_dir = home / "vendor"
    if not (vendor_dir / "root.pem").exists():
        simulated_vendor(vendor_dir)
    vendor = SimVendor(vendor_dir)
    if not (home / "pki" / "ca.pem").exists():
        pki.init_ca(home / "pki")
        pki.issue(home / "pki", "platform")
    if not (home / "signer.pem").exists():
        _write_key(home / "signer.pem", ec.generate_private_key(ec.SECP384R1()))
    signer = load_key(home / "signer.pem")
    backend = SimBackend.from_vendor(vendor, (vendor_dir / "tcb_info.cbor").read_bytes(),
                                     (vendor_dir / "crl.der").read_bytes())
    manager = EnclaveManager(home / "platform", vendor_dir / "platforms" / "platform-1",
                             verifier=Verifier([backend]), tls_dir=home / "pki")
    sid = signer_id(build_manifest(signer, svn=svn).signer_public_key).hex()
    policy = Policy(signer=sid, product_id=1, allow_simulation=True)
    cluster = TrustedCluster(manager, policy, VersionFloor(svn, home / "floor"),
                             ClusterDirs(home / "state", vendor_dir))
    return cluster, signer, build_manifest


def _handler(cluster: Any, signer: Any, build: Any, stop: threading.Event) -> Any:
    def handle(req: dict[str, Any]) -> dict[str, Any]:
        try:
            op = req.get("op")
            if op == "status":
                return cluster.status()
            if op == "resolve":
                h = cluster.resolve()
                return {"id": h.id, "address": h.address, "certificate": h.certificate.decode(), "svn": h.manifest.svn}
            if op == "upgrade":
                manifest = build(signer, svn=int(req["svn"]), debug=bool(req.get("debug", False)))
                return {"replaced": cluster.upgrade(manifest), "floor": cluster.floor.value}
            if op == "down":
                stop.set()
                return {"down": True}
            return {"error": f"unknown op {op!r}"}
        except SharedMLError as exc:
            return {"error": str(exc), "kind": type(exc).__name__}

    return handle


def register_cluster(tee: typer.Typer) -> None:
    cluster_app = typer.Typer(help="The trusted cluster of enclaves (8.5-1) as a running service.",
                              no_args_is_help=True)
    tee.add_typer(cluster_app, name="cluster")

    @cluster_app.command("up")
    def up(
        home: Path = typer.Option(..., help="the platform's TEE folder"),
        members: int = typer.Option(2, min=1, max=8, help="enclaves in the cluster"),
        svn: int = typer.Option(1, min=0, help="security version of the build to run"),
    ) -> None:
        """Start the members, form the cluster by mutual attestation, serve until 'cluster down'."""
        from sharedml.tee import control

        cluster, signer, build = _open_home(home, svn)
        stop = threading.Event()
        srv = control.listen(home / "control.sock")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            cluster.up(build(signer, svn=svn), size=members)
            typer.echo(f"cluster up: {members} members at svn {svn}; control {home / 'control.sock'}")
            worker = threading.Thread(target=control.serve, args=(srv, _handler(cluster, signer, build, stop),
                                                                     stop.is_set), daemon=True)
            worker.start()
            stop.wait()
        finally:
            srv.close()
            cluster.manager.stop_all()
            typer.echo("cluster down")

    @cluster_app.command("status")
    def status(home: Path = typer.Option(..., help="the platform's TEE folder")) -> None:
        """Members, their versions, heartbeats and sealed ledgers; the floor."""
        typer.echo(json.dumps(_ask(home, {"op": "status"}), indent=2))

    @cluster_app.command("down")
    def down(home: Path = typer.Option(..., help="the platform's TEE folder")) -> None:
        """Destroy every member and stop the service."""
        typer.echo(json.dumps(_ask(home, {"op": "down"})))

    @tee.command("upgrade")
    def upgrade(
        home: Path = typer.Option(..., help="the platform's TEE folder"),
        svn: int = typer.Option(..., help="security version of the new build"),
        debug: bool = typer.Option(False, help="build in debug mode (must be refused)"),
    ) -> None:
        """Heartbeat canary upgrade of the running cluster, with rollback and the anti-rollback floor."""
        typer.echo(json.dumps(_ask(home, {"op": "upgrade", "svn": svn, "debug": debug}), indent=2))


def _ask(home: Path, req: dict[str, Any]) -> dict[str, Any]:
    from sharedml.errors import PolicyDenied
    from sharedml.tee import control

    answer = control.request(home / "control.sock", req)
    if "error" in answer:
        raise PolicyDenied(str(answer["error"]), step=str(req["op"]))
    return answer
