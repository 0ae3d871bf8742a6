"""Steps 2 and 4 of :mod:`sharedml.crypto.pki`, on a party's own host: request and install.

:func:`request` writes a new key (mode 0600) and its certificate signing
request; only the request is sent to the CA. :func:`install` puts the
certificate the CA returned beside that key, after checking that it comes
from the deployment CA and holds the key; a rotated key (``--rotate``)
replaces the current one only then.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sharedml.crypto.pki import (
    check_party_id,
    make_request,
    party_of,
    same_key,
    write_private,
)
from sharedml.errors import AuthError, ConfigError


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def request(
    directory: str | Path, party: str, *, hosts: Iterable[str] = (), rotate: bool = False
) -> Path:
    """Write ``DIR/<party>.key`` (0600) and ``DIR/<party>.csr``; returns the CSR's path.

    With ``rotate`` the new key goes to ``DIR/<party>.next.key`` and the
    current pair keeps working until :func:`install` puts the new one in place.
    """
    check_party_id(party)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    current, pending = d / f"{party}.key", d / f"{party}.next.key"
    if rotate and not current.exists():
        raise ConfigError(
            f"{d} holds no key for {party!r} to rotate",
            remedy=f"run 'sharedml pki request {d} {party}' without --rotate",
        )
    if not rotate and current.exists():
        raise ConfigError(
            f"{d} already holds a key for {party!r}",
            remedy="pass --rotate to make its successor (the current pair keeps working)",
        )
    if rotate and pending.exists():
        raise ConfigError(
            f"a rotation of {party!r} is already pending in {d} ({pending.name})",
            remedy="install its certificate with 'sharedml pki install', or delete "
            f"{pending.name} to start over",
        )
    key_pem, csr_pem = make_request(party, hosts)
    write_private(pending if rotate else current, key_pem)
    (d / f"{party}.csr").write_bytes(csr_pem)
    return d / f"{party}.csr"


def _check_issued_by(cert: x509.Certificate, ca_pem: bytes, where: str) -> None:
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthError(
            f"the certificate was not issued by the CA in {where}",
            remedy="ask the deployment CA's operator for the certificate and its ca.pem",
        ) from None


def install(directory: str | Path, cert_pem: bytes, ca_pem: bytes | None = None) -> Path:
    """Put a signed certificate beside the key it was requested for; returns its path.

    The certificate must chain to ``ca_pem`` (written to ``DIR/ca.pem``) or
    to the ``DIR/ca.pem`` already there, and hold the pending rotated key
    (which then replaces the current one) or the current key.
    """
    d = Path(directory)
    cert = x509.load_pem_x509_certificate(cert_pem)
    party = party_of(cert_pem)
    ca_path = d / "ca.pem"
    if ca_pem is None and not ca_path.exists():
        raise ConfigError(f"no ca.pem in {d}", remedy="pass the deployment CA's ca.pem (--ca)")
    if ca_pem is not None and ca_path.exists() and ca_path.read_bytes() != ca_pem:
        raise ConfigError(f"{ca_path} holds another CA", remedy="install into this CA's folder")
    _check_issued_by(cert, ca_pem or ca_path.read_bytes(), "the given ca.pem")
    current, pending = d / f"{party}.key", d / f"{party}.next.key"
    if pending.exists() and same_key(pending.read_bytes(), cert):
        key_path: Path | None = pending
    elif current.exists() and same_key(current.read_bytes(), cert):
        key_path = None
    else:
        raise ConfigError(
            f"the certificate of {party!r} holds no key made in {d}",
            remedy="install it on the host where its request was made",
        )
    if ca_pem is not None and not ca_path.exists():
        ca_path.write_bytes(ca_pem)
    if key_path is not None:  # rotation: the key first, the certificate last (see IdentityFiles)
        os.replace(key_path, current)
    _write_atomic(d / f"{party}.pem", cert_pem)
    return d / f"{party}.pem"
