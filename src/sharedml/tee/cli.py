"""``sharedml tee``: verify attestation evidence, set up a simulated vendor, check audit logs.

Heavy imports stay inside the commands so ``sharedml --help`` stays fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import typer


def _evidence_bytes(path: Path) -> bytes:
    """Raw bytes, or the decoding of a ``0x``-hex or base64 text file."""
    raw = path.read_bytes()
    text = raw.strip()
    try:
        if text.startswith(b"0x"):
            return bytes.fromhex(text[2:].decode())
        return base64.b64decode(text, validate=True)
    except (ValueError, UnicodeDecodeError):
        return raw


def register(app: typer.Typer) -> None:
    tee = typer.Typer(help="TEE scheme: attestation evidence, enclave images, the simulator, audit logs.",
                      no_args_is_help=True)
    app.add_typer(tee, name="tee")
    register_images(tee)
    from sharedml.tee.cluster_cli import register_cluster

    register_cluster(tee)
    from sharedml.tee.provider_cli import register_provider

    register_provider(tee)

    @tee.command("verify")
    def verify(
        evidence: Path = typer.Argument(..., exists=True, dir_okay=False, help="evidence file"),
        backend: str = typer.Option(..., "--backend", help="nitro, dcap, snp or sim"),
        collateral: Path | None = typer.Option(None, help="DCAP collateral JSON, or the SNP VCEK (DER)"),
        at: str | None = typer.Option(None, help="verify at this ISO time (default: now)"),
        measurement: list[str] = typer.Option([], help="allowed measurement (hex); repeatable"),
        signer: str | None = typer.Option(None, help="allowed signer (hex)"),
        product_id: int | None = typer.Option(None, help="product id with --signer"),
        min_svn: int = typer.Option(0, help="minimum security version with --signer"),
        allow_debug: bool = typer.Option(False, help="accept debug enclaves"),
        tcb_status: list[str] = typer.Option(["UpToDate"], help="acceptable TCB status; repeatable"),
        sim_vendor: Path | None = typer.Option(None, help="simulated vendor folder (--backend sim)"),
    ) -> None:
        """Check EVIDENCE against reference values and print its claims (no freshness check)."""
        from sharedml.tee.attestation import Evidence, Policy, Verifier
        from sharedml.tee.attestation.base import Backend

        when = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        chosen: Backend
        if backend == "nitro":
            from sharedml.tee.attestation.nitro import NitroBackend

            chosen = NitroBackend()
        elif backend == "dcap":
            from sharedml.tee.attestation.dcap import DcapBackend

            chosen = DcapBackend()
        elif backend == "snp":
            from sharedml.tee.attestation.snp import SnpBackend

            chosen = SnpBackend()
        elif backend == "sim":
            from sharedml.tee.attestation.sim import SimBackend, SimVendor

            if sim_vendor is None:
                raise typer.BadParameter("--sim-vendor is required with --backend sim")
            vendor = SimVendor(sim_vendor)
            chosen = SimBackend.from_vendor(
                vendor, (sim_vendor / "tcb_info.cbor").read_bytes(), (sim_vendor / "crl.der").read_bytes()
            )
        else:
            raise typer.BadParameter(f"unknown backend {backend!r}")
        document = evidence.read_bytes() if backend in ("dcap", "snp") else _evidence_bytes(evidence)
        ev = Evidence(backend, document, collateral.read_bytes() if collateral else b"")
        policy = Policy(
            measurements=frozenset(measurement), signer=signer, product_id=product_id, min_svn=min_svn,
            allow_debug=allow_debug, allow_simulation=backend == "sim", tcb_statuses=frozenset(tcb_status),
        )
        claims = Verifier([chosen]).appraise(ev, policy, when)
        typer.echo(json.dumps(claims.summary(), indent=2))

    @tee.command("sim-vendor")
    def sim_vendor_init(
        directory: Path = typer.Argument(..., help="folder for the simulated vendor"),
        platform: list[str] = typer.Option(["platform-1"], help="platform to provision; repeatable"),
    ) -> None:
        """Create a simulated TEE vendor (root CA, platform CA, TCB info, CRL) and platforms."""
        from sharedml.tee.attestation.sim import simulated_vendor

        simulated_vendor(directory, tuple(platform))
        typer.echo(f"simulated vendor in {directory} with platforms {', '.join(platform)}")

    @tee.command("audit-verify")
    def audit_verify(log: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
        """Check the hash chain of an enclave manager's audit log."""
        from sharedml.tee.manager import AuditLog

        n = AuditLog(log).verify()
        typer.echo(f"{log}: {n} entries, chain intact")



def register_images(tee: typer.Typer) -> None:
    """``render-manifest``, ``measure`` and ``self-test``: building and checking enclave images."""

    @tee.command("render-manifest")
    def render_manifest(
        template: Path = typer.Argument(..., exists=True, dir_okay=False),
        out: Path = typer.Argument(..., dir_okay=False),
        define: list[str] = typer.Option([], "-D", help="name=value for the template; repeatable"),
    ) -> None:
        """Render a Gramine manifest template and refuse one unfit for release (debug, no DCAP, ...)."""
        import sys
        from types import SimpleNamespace

        from sharedml.tee.images import render_gramine_manifest

        variables: dict[str, object] = {}
        for item in define:
            name, _, value = item.partition("=")
            variables[name] = value
        arch = str(variables.get("arch_libdir", "/lib/x86_64-linux-gnu"))
        variables.setdefault("gramine", SimpleNamespace(
            libos=f"{arch}/gramine/libsysdb.so", runtimedir=lambda: f"{arch}/gramine/runtime/glibc"))
        variables.setdefault("python", SimpleNamespace(stdlib=f"{sys.base_prefix}/lib/python3.11"))
        out.write_text(render_gramine_manifest(template, variables))
        typer.echo(f"wrote {out}")

    @tee.command("measure")
    def measure(
        kind: str = typer.Argument(..., help="sim, gramine (a .sig file), nitro (build-enclave JSON) or snp"),
        source: Path | None = typer.Argument(None, help="the build's output file"),
        svn: int = typer.Option(1, help="sim: the security version providers require"),
        snp_args: list[str] = typer.Option([], "--snp-arg", help="snp: an argument for sev-snp-measure"),
    ) -> None:
        """Print the reference values providers pin for an enclave build (JSON)."""
        from sharedml.tee import images

        if kind == "sim":
            reference = images.sim_reference(svn)
        elif kind in ("gramine", "nitro"):
            if source is None or not source.is_file():
                raise typer.BadParameter(f"measure {kind} needs the build's output file")
            reference = (images.sigstruct_reference(source.read_bytes()) if kind == "gramine"
                         else images.nitro_reference(source.read_text()))
        elif kind == "snp":
            reference = images.snp_reference(snp_args)
        else:
            raise typer.BadParameter(f"unknown kind {kind!r}")
        typer.echo(json.dumps(reference, indent=2))

    @tee.command("self-test")
    def self_test(
        attester: str = typer.Option(..., help="gramine, tsm or nitro (sim: use the manager)"),
        collateral: Path | None = typer.Option(None, help="DCAP collateral JSON or SNP VCEK"),
        pccs: str | None = typer.Option(None, help="PCCS URL for DCAP collateral"),
        svn: int = typer.Option(0, help="gramine: the manifest's sgx.isvsvn"),
        allow_debug: bool = typer.Option(False, help="accept a debug enclave"),
    ) -> None:
        """On real hardware: attest a fresh key and nonce, verify it all, print the claims."""
        from sharedml.tee.enclave.attesters import AttesterConfig, make_attester
        from sharedml.tee.images import attestation_self_test

        made, _ = make_attester(AttesterConfig(attester, None, str(collateral) if collateral else None, pccs, svn))
        typer.echo(json.dumps(attestation_self_test(made, allow_debug=allow_debug), indent=2))
