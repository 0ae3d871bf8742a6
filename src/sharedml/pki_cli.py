"""``sharedml pki``: the deployment CA, certificate requests, rotation and revocation.

The commands follow :mod:`sharedml.crypto.pki`'s four steps: ``init`` at the
CA, ``request`` on each party's host, ``sign`` at the CA (which returns only
the certificate), ``install`` back on the party's host; ``revoke`` and ``crl``
at the CA make the revocation list every node and the platform check.
"""

from __future__ import annotations

from pathlib import Path

import typer

pki_app = typer.Typer(
    help="The deployment's certificate authority, certificate requests and revocation list.",
    no_args_is_help=True,
)


@pki_app.command("init")
def pki_init(directory: Path) -> None:
    """Create the deployment CA in DIRECTORY (ca.pem, ca.key mode 0600)."""
    from sharedml.crypto import pki

    path = pki.init_ca(directory)
    typer.echo(f"created CA {path}")


@pki_app.command("issue")
def pki_issue(directory: Path, name: str, days: int = typer.Option(365, min=1)) -> None:
    """One machine only: make NAME's key *and* certificate at the CA in DIRECTORY.

    Organisations on their own hosts use 'pki request' there and 'pki sign'
    here instead, so no key ever leaves its host.
    """
    from sharedml.crypto import pki

    pki.issue(directory, name, days=days)
    typer.echo(f"issued {directory / (name + '.pem')} and {directory / (name + '.key')}")


@pki_app.command("request")
def pki_request(
    directory: Path,
    name: str,
    host: list[str] = typer.Option(
        [], "--host", help="a DNS name or IP address this party's servers are reached by (repeat)"
    ),
    rotate: bool = typer.Option(
        False, "--rotate", help="make the successor of the current key (it keeps working)"
    ),
) -> None:
    """On the party's own host: a new key (stays in DIRECTORY) and a request to send to the CA."""
    from sharedml.crypto import enrol

    csr = enrol.request(directory, name, hosts=host, rotate=rotate)
    key = directory / (f"{name}.next.key" if rotate else f"{name}.key")
    typer.echo(f"key {key} (mode 0600) stays on this host")
    typer.echo(f"send {csr} to the deployment CA's operator ('sharedml pki sign')")


@pki_app.command("sign")
def pki_sign(
    ca_dir: Path,
    csr: Path,
    name: str = typer.Option(
        None, "--name", help="the party you expect the request to come from (checked)"
    ),
    days: int = typer.Option(365, min=1),
    out: Path = typer.Option(None, "--out", help="where to write the certificate"),
) -> None:
    """At the CA: check a request and write its certificate (nothing else)."""
    from cryptography import x509

    from sharedml.crypto import pki

    cert_pem = pki.sign(ca_dir, csr.read_bytes(), party=name, days=days)
    cert = x509.load_pem_x509_certificate(cert_pem)
    party = pki.party_of(cert_pem)
    target = out or csr.with_name(f"{party}.pem")
    target.write_bytes(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    typer.echo(f"signed {party!r}: serial {cert.serial_number:x}, valid until "
               f"{cert.not_valid_after_utc:%Y-%m-%d}, names {[str(n.value) for n in names]}")
    typer.echo(f"send {target} and {ca_dir / 'ca.pem'} back ('sharedml pki install')")


@pki_app.command("install")
def pki_install(
    directory: Path,
    cert: Path,
    ca: Path = typer.Option(None, "--ca", help="the deployment CA's ca.pem (first install)"),
) -> None:
    """On the party's host: put the signed certificate beside its key (a rotation completes)."""
    from sharedml.crypto import enrol

    path = enrol.install(directory, cert.read_bytes(), None if ca is None else ca.read_bytes())
    typer.echo(f"installed {path}; processes take it up for their next connections")


@pki_app.command("revoke")
def pki_revoke(
    ca_dir: Path,
    name: str = typer.Argument(None, help="revoke every certificate issued to this party"),
    serial: str = typer.Option(None, "--serial", help="revoke one certificate (hex serial)"),
    reason: str = typer.Option("unspecified", "--reason", help="key-compromise, superseded, ..."),
    days: int = typer.Option(30, min=1, help="days until the list must be renewed"),
) -> None:
    """At the CA: add certificates to the revocation list (CA_DIR/crl.pem)."""
    from sharedml.crypto import crl
    from sharedml.errors import ConfigError

    try:
        number = None if serial is None else int(serial, 16)
    except ValueError:
        raise ConfigError(f"--serial {serial!r} is not hexadecimal") from None
    new = crl.revoke(ca_dir, party=name, serial=number, reason=reason, days=days)
    done = ", ".join(f"{s:x}" for s in new) or "nothing new (already revoked)"
    typer.echo(f"revoked {done}")
    typer.echo(f"copy {ca_dir / crl.CRL_NAME} to every node's and the platform's PKI folder")


@pki_app.command("crl")
def pki_crl(ca_dir: Path, days: int = typer.Option(30, min=1)) -> None:
    """At the CA: sign the revocation list again (or a first, empty one) for DAYS more days."""
    from sharedml.crypto import crl

    path = crl.refresh(ca_dir, days=days)
    typer.echo(f"wrote {path}; copy it to every node's and the platform's PKI folder")


def register(app: typer.Typer) -> None:
    app.add_typer(pki_app, name="pki")
