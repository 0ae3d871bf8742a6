"""Certificate revocation: the CA's list, and the check servers and clients make.

At the CA, :func:`revoke` adds certificates (all of a party's, or one by
serial) to ``CA_DIR/crl.pem``, an X.509 CRL signed by the CA key, and
:func:`refresh` signs the same list again with a later next-update. The CRL
is its own record: each change reads the current list (checking its
signature), edits it and signs it with the next CRL number.

The operator copies ``crl.pem`` beside ``ca.pem`` on every node and on the
platform. :class:`RevocationFile` re-reads it when it changes, so a
revocation takes effect from the next connection or stream, without a
restart. Who checks: the party-to-party server refuses a revoked peer's
stream, a client refuses a revoked server before sending it anything
(:mod:`sharedml.transport.tls`), the platform refuses a revoked node.

Rules a list must pass (else :class:`ConfigError` when a process starts, or
an error logged and the previous list kept when it is replaced):

* its signature verifies with the deployment CA's key and it names the CA
  as issuer;
* it never goes backwards: a list whose CRL number is below the one held
  is refused, so an old copy cannot un-revoke a certificate;
* a list past its next update still applies (a revoked certificate stays
  revoked) and a warning asks for a fresh one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sharedml.crypto.pki import load_ca, party_of
from sharedml.errors import AuthError, ConfigError

log = logging.getLogger("sharedml.crypto.crl")

#: Reasons an operator may give (RFC 5280 §5.3.1); ``unspecified`` adds none.
REASONS: dict[str, x509.ReasonFlags | None] = {
    "unspecified": None,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
}
CRL_NAME = "crl.pem"


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


class RevocationList:
    """A CRL whose signature and issuer were checked against the deployment CA."""

    def __init__(self, crl_pem: bytes, ca_pem: bytes) -> None:
        ca = x509.load_pem_x509_certificate(ca_pem)
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            raise ConfigError("the revocation list is not a PEM CRL") from None
        key = ca.public_key()
        if (
            crl.issuer != ca.subject
            or not isinstance(key, ec.EllipticCurvePublicKey)
            or not crl.is_signature_valid(key)
        ):
            raise ConfigError(
                "the revocation list was not signed by the deployment CA",
                remedy="copy crl.pem from this deployment's CA",
            )
        try:
            self.number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            self.number = 0
        self.crl = crl
        self.serials = frozenset(entry.serial_number for entry in crl)
        self.next_update = crl.next_update_utc

    def revoked(self, serial: int) -> bool:
        return serial in self.serials

    def stale(self, now: dt.datetime | None = None) -> bool:
        return self.next_update is not None and _now(now) > self.next_update


class RevocationFile:
    """A CRL on disk, re-read when it changes; :meth:`check` refuses revoked certificates."""

    def __init__(self, path: str | Path, ca_pem: bytes) -> None:
        self.path = Path(path)
        self.ca_pem = ca_pem
        self._lock = threading.Lock()
        try:
            self._stamp = self._stat()
            self._list = RevocationList(self.path.read_bytes(), ca_pem)
        except FileNotFoundError:
            raise ConfigError(
                f"no revocation list at {self.path}",
                remedy="copy crl.pem from the deployment CA ('sharedml pki crl CA_DIR' makes one)",
            ) from None
        self._warned_stale = False

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def current(self) -> RevocationList:
        """The list in force: the file's, unless it became unreadable, forged or older."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return self._list
                fresh = RevocationList(self.path.read_bytes(), self.ca_pem)
            except (OSError, ConfigError) as exc:
                log.error("keeping the revocation list numbered %d: %s", self._list.number, exc)
                return self._list
            self._stamp = stamp
            if fresh.number < self._list.number:
                log.error(
                    "refused a revocation list numbered %d: the one in force is %d (an old copy?)",
                    fresh.number, self._list.number,
                )
                return self._list
            self._list, self._warned_stale = fresh, False
            return fresh

    def check(self, cert: x509.Certificate, now: dt.datetime | None = None) -> None:
        """Raise :class:`AuthError` if ``cert`` is on the list in force."""
        current = self.current()
        if current.stale(now) and not self._warned_stale:
            self._warned_stale = True
            log.warning(
                "the revocation list %s was due for renewal on %s; still applying it",
                self.path, current.next_update,
            )
        if current.revoked(cert.serial_number):
            who = party_of(cert.public_bytes(serialization.Encoding.PEM))
            raise AuthError(
                f"the certificate of {who!r} (serial {cert.serial_number:x}) is revoked",
                party=who,
                remedy=f"{who!r} needs a new certificate from the deployment CA",
            )


def in_folder(directory: str | Path, ca_pem: bytes) -> RevocationFile | None:
    """The list an operator copied beside ``ca.pem`` (``DIR/crl.pem``), if there is one."""
    path = Path(directory) / CRL_NAME
    return RevocationFile(path, ca_pem) if path.exists() else None


# -- at the CA ------------------------------------------------------------------------------
def _read(ca_dir: Path, ca_pem: bytes) -> tuple[list[x509.RevokedCertificate], int]:
    path = ca_dir / CRL_NAME
    if not path.exists():
        return [], 0
    current = RevocationList(path.read_bytes(), ca_pem)
    return list(current.crl), current.number


def _write(
    ca_dir: Path,
    entries: Iterable[x509.RevokedCertificate],
    number: int,
    days: int,
    now: dt.datetime | None,
) -> Path:
    ca_cert, ca_key = load_ca(ca_dir)
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    path = ca_dir / CRL_NAME
    tmp = path.with_name(CRL_NAME + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    return path


def issued_serials(ca_dir: str | Path, party: str) -> list[int]:
    """Serials of every certificate this CA issued to ``party`` (from ``CA_DIR/issued``)."""
    out = []
    for path in sorted((Path(ca_dir) / "issued").glob("*.pem")):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) == 1 and names[0].value == party:
            out.append(cert.serial_number)
    return out


def revoke(
    ca_dir: str | Path,
    *,
    party: str | None = None,
    serial: int | None = None,
    reason: str = "unspecified",
    days: int = 30,
    now: dt.datetime | None = None,
) -> list[int]:
    """Add every certificate of ``party``, or the one with ``serial``, to the CRL.

    Returns the serials newly revoked. Only certificates this CA issued (a
    record in ``CA_DIR/issued``) can be named, so a typo cannot pass silently.
    """
    d = Path(ca_dir)
    if (party is None) == (serial is None):
        raise ConfigError("name either a party or a serial to revoke")
    if reason not in REASONS:
        raise ConfigError(f"unknown reason {reason!r}", remedy=f"use one of {sorted(REASONS)}")
    if serial is None:
        serials = issued_serials(d, str(party))
        missing = f"no certificate issued to {party!r}"
    else:
        serials = [serial] if (d / "issued" / f"{serial:x}.pem").exists() else []
        missing = f"no certificate with serial {serial:x}"
    if not serials:
        raise ConfigError(f"{missing} in {d / 'issued'}", remedy="check the name or serial")
    ca_pem = (d / "ca.pem").read_bytes()
    entries, number = _read(d, ca_pem)
    held = {e.serial_number for e in entries}
    new = [s for s in serials if s not in held]
    when = _now(now)
    for s in new:
        builder = x509.RevokedCertificateBuilder().serial_number(s).revocation_date(when)
        flag = REASONS[reason]
        if flag is not None:
            builder = builder.add_extension(x509.CRLReason(flag), critical=False)
        entries.append(builder.build())
    _write(d, entries, number + 1, days, now)
    return new


def refresh(ca_dir: str | Path, days: int = 30, now: dt.datetime | None = None) -> Path:
    """Sign the current list again (or a first, empty one) valid for ``days`` more days."""
    d = Path(ca_dir)
    entries, number = _read(d, (d / "ca.pem").read_bytes())
    return _write(d, entries, number + 1, days, now)
