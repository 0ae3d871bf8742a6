"""The deployment's own PKI: a CA and party certificates (ECDSA P-256).

The certificate subject's common name *is* the party id (docs/architecture.md §1):
a transport accepts a peer only if its certificate chains to the deployment CA
and its id is among the job's peers. Key files are written with mode 0600.

Layout of a PKI directory::

    DIR/ca.pem  DIR/ca.key            the deployment CA
    DIR/<party>.pem  DIR/<party>.key  one pair per party
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sharedml.errors import AuthError, ConfigError

_PARTY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Identity:
    """A party's PEM certificate, private key and the CA it trusts."""

    party: str
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def check_party_id(name: str) -> str:
    if not _PARTY_ID.match(name):
        raise ConfigError(
            f"invalid party id {name!r}",
            remedy="use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def init_ca(
    directory: str | Path,
    name: str = "sharedml deployment CA",
    days: int = 3650,
    now: dt.datetime | None = None,
) -> Path:
    """Create ``DIR/ca.pem`` and ``DIR/ca.key``; refuse to overwrite an existing CA."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "ca.key").exists():
        raise ConfigError(f"{d} already holds a CA", remedy="choose an empty directory")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now(now) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(d / "ca.key", _key_pem(key))
    return d / "ca.pem"


def issue(
    directory: str | Path,
    party: str,
    days: int = 365,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Identity:
    """Issue ``DIR/<party>.pem`` and ``.key`` signed by the CA in ``DIR``.

    ``not_before``/``not_after`` override the validity window (tests issue
    expired certificates this way).
    """
    check_party_id(party)
    d = Path(directory)
    try:
        ca_cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        loaded = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise ConfigError(f"no CA in {d}", remedy=f"run 'sharedml pki init {d}' first") from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"CA key in {d} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now(now) - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(party),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(loaded.public_key()), critical=False
        )
        .sign(loaded, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _key_pem(key)
    (d / f"{party}.pem").write_bytes(cert_pem)
    _write_private(d / f"{party}.key", key_pem)
    return Identity(party, cert_pem, key_pem, (d / "ca.pem").read_bytes())


def load_identity(directory: str | Path, party: str) -> Identity:
    """Read a party's certificate, key and CA from a PKI directory."""
    d = Path(directory)
    try:
        return Identity(
            party,
            (d / f"{party}.pem").read_bytes(),
            (d / f"{party}.key").read_bytes(),
            (d / "ca.pem").read_bytes(),
        )
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no certificate for {party!r} in {d}",
            remedy=f"run 'sharedml pki issue {d} {party}'",
        ) from exc


def party_of(cert_pem: bytes) -> str:
    """The party id (subject common name) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise AuthError("peer certificate has no single common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()
