"""``sharedml deploy PLAN --out DIR``: write every organisation's bundle (8.6-3)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy(
        plan: Path = typer.Argument(..., help="the deployment plan (YAML; see deploy/README.md)"),
        out: Path = typer.Option(..., "--out", help="a new folder for the bundles"),
        ca: Path | None = typer.Option(
            None, "--ca", help="the deployment CA's folder: its ca.pem (and crl.pem) go in "
            "every bundle; nothing else of it is read"
        ),
    ) -> None:
        """Write one bundle per organisation, the platform's and the dealer's.

        Each holds its node config, systemd unit, compose file, Kubernetes manifests
        and STEPS.md — the steps its operator follows. No key is made here: each
        host makes its own and sends only a certificate request to the CA."""
        from sharedml.deployment.bundle import write_bundles
        from sharedml.deployment.plan import DeploymentPlan

        folders = write_bundles(DeploymentPlan.load(plan), out, ca)
        for folder in folders:
            typer.echo(f"{folder}/  (steps: {folder / 'STEPS.md'})")
        typer.echo(f"order of the steps across operators: {out / 'README.md'}")
