"""``sharedml tee`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from sharedml.errors import AttestationError
from sharedml.tee.cli import register

PCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command("noop")
    def noop() -> None:  # a second command keeps 'tee' a group
        pass

    return a


def test_verify_real_nitro_document(tee_evidence: Path) -> None:
    args = ["tee", "verify", str(tee_evidence / "nitro/blocky_nitro_attestation.b64"), "--backend", "nitro",
            "--at", "2024-09-07T14:37:40+00:00", "--measurement", PCR0]
    out = CliRunner().invoke(app(), args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["measurement"] == PCR0


def test_verify_refuses_debug_document(tee_evidence: Path) -> None:
    args = ["tee", "verify", str(tee_evidence / "nitro/blocky_nitro_attestation_debug.b64"), "--backend", "nitro",
            "--at", "2024-09-07T14:38:07+00:00", "--measurement", "00" * 48]
    out = CliRunner().invoke(app(), args)
    assert isinstance(out.exception, AttestationError)


def test_sim_vendor_and_audit(tmp_path: Path) -> None:
    out = CliRunner().invoke(app(), ["tee", "sim-vendor", str(tmp_path / "v"), "--platform", "p1"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "v" / "platforms" / "p1" / "cert.pem").exists()
    from sharedml.tee.manager import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("a")
    log.append("b")
    assert CliRunner().invoke(app(), ["tee", "audit-verify", str(log.path)]).exit_code == 0
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0].replace('"a"', '"x"'), lines[1]]) + "\n")
    assert CliRunner().invoke(app(), ["tee", "audit-verify", str(log.path)]).exit_code != 0
