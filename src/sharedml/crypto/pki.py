"""The deployment's own PKI: a CA and party certificates (ECDSA P-256); keys never travel.

The certificate subject's common name *is* the party id (docs/architecture.md §1):
a transport accepts a peer only if its certificate chains to the deployment CA
and its id is among the job's peers. Key files are written with mode 0600.

How organisations exchange certificates (9.4-1, 9.4-6):

1. The CA's operator runs ``sharedml pki init CA_DIR`` once (:func:`init_ca`).
2. Each party's operator, on the party's own host, runs ``sharedml pki
   request DIR NAME`` (:func:`~sharedml.crypto.enrol.request`): a new key ``DIR/NAME.key`` (0600)
   and a certificate signing request ``DIR/NAME.csr`` — the name and public
   key, signed by the key (proof of possession). Only the CSR leaves the host.
3. The CA's operator runs ``sharedml pki sign CA_DIR NAME.csr``
   (:func:`sign`): the request's signature and name are checked and the
   certificate is returned — nothing else; a copy stays in ``CA_DIR/issued/``
   so it can be revoked by name (:mod:`sharedml.crypto.crl`).
4. The party's operator runs ``sharedml pki install DIR NAME.pem --ca
   ca.pem`` (:func:`~sharedml.crypto.enrol.install`): the certificate must
   come from that CA and
   hold the key made in step 2.

Rotation repeats steps 2-4 with ``--rotate``: the new key waits as
``DIR/NAME.next.key`` until its certificate is installed, then replaces the
old pair. Processes that read their identity through
:class:`~sharedml.crypto.identity.IdentityFiles` use the new pair for every
connection opened afterwards, so jobs that have not started run on it
without a restart, while running jobs keep their connections.

Every certificate also carries its *pin name*, a DNS name holding its
serial (:func:`pin_name`): a client that has checked a server's certificate
against the revocation list asks TLS for that exact certificate by name.

:func:`issue` (the CA makes the key too) is for one machine only — ``sharedml
up`` and tests — where the CA's host is every party's host.

Layouts::

    CA_DIR/ca.pem  CA_DIR/ca.key  CA_DIR/issued/<serial>.pem  CA_DIR/crl.pem
    DIR/<party>.key  DIR/<party>.csr  DIR/<party>.pem  DIR/ca.pem   (a party's host)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sharedml.errors import AuthError, ConfigError

_PARTY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
#: Curves a party key may use (gRPC's TLS and every TLS 1.3 stack accept them).
_CURVES = (ec.SECP256R1, ec.SECP384R1)
#: The DNS suffix of pin names (``.invalid`` is reserved: never a real host).
PIN_SUFFIX = "sharedml.invalid"


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


def write_private(path: Path, data: bytes) -> None:
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
    write_private(d / "ca.key", _key_pem(key))
    return d / "ca.pem"


def load_ca(ca_dir: str | Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in ``CA_DIR`` (only the CA's host has the key)."""
    d = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise ConfigError(f"no CA in {d}", remedy=f"run 'sharedml pki init {d}' first") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"CA key in {d} is not an EC key")
    return cert, key


# -- the party's key and request (written to disk by sharedml.crypto.enrol) ------------------
def _general_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not _HOST.match(host):
                raise ConfigError(
                    f"{host!r} is neither an IP address nor a DNS name",
                    remedy="give host names like node1.bank.example or addresses like 10.0.0.5",
                ) from None
            names.append(x509.DNSName(host))
    return names


def make_request(party: str, hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """A fresh key and a CSR for ``party`` (PEM key, PEM CSR), in memory.

    ``hosts`` (DNS names or IP addresses) are asked for as subject
    alternative names, for servers reached by host name (the platform's API).
    """
    check_party_id(party)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)])
    )
    names = _general_names(hosts)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


# -- step 3: the CA signs -----------------------------------------------------------------
def read_request(csr_pem: bytes) -> tuple[x509.CertificateSigningRequest, str]:
    """Parse a CSR and check its proof of possession, name and key type."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ConfigError(
            "not a PEM certificate signing request", remedy="pass the .csr 'pki request' wrote"
        ) from None
    if not csr.is_signature_valid:
        raise AuthError("the request's signature does not verify: it was altered or forged")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, _CURVES):
        raise ConfigError(
            "the request's key is not ECDSA P-256 or P-384",
            remedy="make the request with 'sharedml pki request'",
        )
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or len(csr.subject) != 1:
        raise ConfigError("the request's subject must be exactly one common name (the party id)")
    value = names[0].value
    return csr, check_party_id(value if isinstance(value, str) else value.decode())


def _requested_hosts(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    hosts = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    hosts += san.get_values_for_type(x509.DNSName)
    if len(hosts) != len(list(san)):
        raise ConfigError("the request asks for names other than DNS names and IP addresses")
    return _general_names(hosts)


def pin_name(party: str, serial: int) -> str:
    """The DNS name only the certificate with ``serial`` carries (see the module doc)."""
    return f"{party}.s{serial:x}.{PIN_SUFFIX}"


def sign(
    ca_dir: str | Path,
    csr_pem: bytes,
    *,
    party: str | None = None,
    days: int = 365,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> bytes:
    """The certificate (PEM) for a checked request; a copy stays in ``CA_DIR/issued/``.

    ``party``, when given, must be the request's name (the CA's operator says
    whom they expect). ``not_before``/``not_after`` override the validity
    window (tests issue expired certificates this way).
    """
    csr, name = read_request(csr_pem)
    if party is not None and party != name:
        raise ConfigError(
            f"the request names {name!r}, not {party!r}",
            remedy="sign only the request the party's operator sent for that name",
        )
    ca_cert, ca_key = load_ca(ca_dir)
    serial = x509.random_serial_number()
    start = not_before or _now(now) - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    alt = [x509.DNSName(name), x509.DNSName(pin_name(name, serial)), *_requested_hosts(csr)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    issued = Path(ca_dir) / "issued"
    issued.mkdir(exist_ok=True)
    (issued / f"{serial:x}.pem").write_bytes(cert_pem)
    return cert_pem


# -- one machine only ----------------------------------------------------------------------
def issue(
    directory: str | Path,
    party: str,
    days: int = 365,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Identity:
    """Issue ``DIR/<party>.pem`` and ``.key``, signed by the CA in ``DIR``.

    The CA's host makes the key: for one machine (``sharedml up``, tests)
    only; organisations on their own hosts use :func:`request` and :func:`sign`.
    """
    key_pem, csr_pem = make_request(party, ("localhost", "127.0.0.1"))
    cert_pem = sign(
        directory, csr_pem, days=days, now=now, not_before=not_before, not_after=not_after
    )
    d = Path(directory)
    (d / f"{party}.pem").write_bytes(cert_pem)
    write_private(d / f"{party}.key", key_pem)
    return Identity(party, cert_pem, key_pem, (d / "ca.pem").read_bytes())


def same_key(key_pem: bytes, cert: x509.Certificate) -> bool:
    key = serialization.load_pem_private_key(key_pem, None)
    return key.public_key() == cert.public_key()


def load_identity(directory: str | Path, party: str) -> Identity:
    """Read a party's certificate, key and CA from a PKI directory."""
    d = Path(directory)
    try:
        identity = Identity(
            party,
            (d / f"{party}.pem").read_bytes(),
            (d / f"{party}.key").read_bytes(),
            (d / "ca.pem").read_bytes(),
        )
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no certificate for {party!r} in {d}",
            remedy=f"run 'sharedml pki request {d} {party}', have the CA sign it and "
            "'sharedml pki install' the certificate",
        ) from exc
    if not same_key(identity.key_pem, x509.load_pem_x509_certificate(identity.cert_pem)):
        raise ConfigError(
            f"{party}.pem and {party}.key in {d} do not belong together",
            remedy="install the certificate issued for this key",
        )
    return identity


def party_of(cert_pem: bytes) -> str:
    """The party id (subject common name) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise AuthError("peer certificate has no single common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()
