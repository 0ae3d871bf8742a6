"""``sharedml pki``: the commands two organisations' operators and the CA's run, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner

from sharedml import pki_cli
from sharedml.crypto import crl, pki
from sharedml.errors import AuthError, ConfigError


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    pki_cli.register(app)
    return app


def _run(cli: typer.Typer, *args: object) -> str:
    result = CliRunner().invoke(cli, ["pki", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_two_organisations_enrol_without_a_key_leaving_its_host(
    cli: typer.Typer, tmp_path: Path
) -> None:
    ca, bank, insurer, mail = (tmp_path / d for d in ("ca", "bank", "insurer", "mail"))
    mail.mkdir()
    _run(cli, "init", ca)
    for party, home in (("bank", bank), ("insurer", insurer)):
        out = _run(cli, "request", home, party, "--host", f"{party}.example")
        assert "stays on this host" in out
        (mail / f"{party}.csr").write_bytes((home / f"{party}.csr").read_bytes())  # e-mailed
        out = _run(cli, "sign", ca, mail / f"{party}.csr", "--name", party)
        assert f"signed '{party}'" in out and f"{party}.example" in out
        _run(cli, "install", home, mail / f"{party}.pem", "--ca", ca / "ca.pem")
        assert pki.load_identity(home, party).party == party
    # what travelled: requests, certificates and ca.pem, never a key
    assert sorted(p.name for p in mail.iterdir()) == [
        "bank.csr", "bank.pem", "insurer.csr", "insurer.pem"
    ]
    for sent in mail.iterdir():
        assert b"PRIVATE KEY" not in sent.read_bytes()
    assert [p.name for p in ca.glob("*.key")] == ["ca.key"]

    out = _run(cli, "revoke", ca, "insurer", "--reason", "cessation-of-operation")
    serial = x509.load_pem_x509_certificate((insurer / "insurer.pem").read_bytes()).serial_number
    assert f"revoked {serial:x}" in out
    listed = crl.RevocationList((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes())
    assert listed.revoked(serial) and len(listed.serials) == 1
    _run(cli, "crl", ca, "--days", "7")
    again = crl.RevocationList((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes())
    assert again.serials == listed.serials and again.number == listed.number + 1


def test_rotation_through_the_commands(cli: typer.Typer, tmp_path: Path) -> None:
    ca, bank = tmp_path / "ca", tmp_path / "bank"
    _run(cli, "init", ca)
    _run(cli, "request", bank, "bank")
    _run(cli, "sign", ca, bank / "bank.csr", "--out", tmp_path / "first.pem")
    _run(cli, "install", bank, tmp_path / "first.pem", "--ca", ca / "ca.pem")
    out = _run(cli, "request", bank, "bank", "--rotate")
    assert "bank.next.key" in out
    _run(cli, "sign", ca, bank / "bank.csr", "--out", tmp_path / "second.pem")
    _run(cli, "install", bank, tmp_path / "second.pem")
    assert (bank / "bank.pem").read_bytes() == (tmp_path / "second.pem").read_bytes()
    first = x509.load_pem_x509_certificate((tmp_path / "first.pem").read_bytes())
    _run(cli, "revoke", ca, "--serial", f"{first.serial_number:x}", "--reason", "superseded")
    listed = crl.RevocationList((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes())
    assert listed.serials == {first.serial_number}


def test_errors_name_what_to_do(cli: typer.Typer, tmp_path: Path) -> None:
    ca, bank = tmp_path / "ca", tmp_path / "bank"
    (tmp_path / "x.csr").write_bytes(pki.make_request("bank")[1])
    with pytest.raises(ConfigError, match="pki init"):
        _run(cli, "sign", ca, tmp_path / "x.csr")
    _run(cli, "init", ca)
    _run(cli, "request", bank, "bank")
    with pytest.raises(ConfigError, match="names 'bank', not 'insurer'"):
        _run(cli, "sign", ca, bank / "bank.csr", "--name", "insurer")
    with pytest.raises(ConfigError, match="not hexadecimal"):
        _run(cli, "revoke", ca, "--serial", "xyz")
    evil = tmp_path / "evil"
    _run(cli, "init", evil)
    _run(cli, "sign", evil, bank / "bank.csr", "--out", tmp_path / "evil.pem")
    with pytest.raises(AuthError, match="not issued by the CA"):
        _run(cli, "install", bank, tmp_path / "evil.pem", "--ca", ca / "ca.pem")
    out = _run(cli, "issue", ca, "dev")
    assert "dev.key" in out


def test_a_missing_file_is_one_line_naming_it_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: the CA signs 'bank.csr' it received; a path that is not there (the
    request is still in pki/) names the file instead of printing a traceback."""
    from sharedml import cli as main_cli

    ca = tmp_path / "ca"
    pki.init_ca(ca)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["sharedml", "pki", "sign", str(ca), "bank.csr",
                                     "--name", "bank"])
    with pytest.raises(SystemExit) as ended:
        main_cli.main()
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "No such file or directory: bank.csr" in " ".join(err.split())
    assert "Traceback" not in err
