"""The deployment PKI: keys made on the party's host, the CA returns only certificates (9.4-1).

Each test plays two hosts with two folders: the CA's and the party's. What
crosses between them is checked: the request one way, the certificate (and
ca.pem) the other, never a private key.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sharedml.crypto import enrol, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import AuthError, ConfigError


@pytest.fixture
def hosts(tmp_path: Path) -> tuple[Path, Path]:
    """(CA folder, the bank's folder): two hosts that share no files."""
    ca, bank = tmp_path / "ca-host", tmp_path / "bank-host"
    pki.init_ca(ca)
    bank.mkdir()
    return ca, bank


def _enrol(ca: Path, party_dir: Path, party: str, **kw: object) -> bytes:
    """request on the party's host, sign at the CA, install back; returns the certificate."""
    csr = enrol.request(party_dir, party, **kw)  # type: ignore[arg-type]
    cert_pem = pki.sign(ca, csr.read_bytes(), party=party)
    enrol.install(party_dir, cert_pem, (ca / "ca.pem").read_bytes())
    return cert_pem


def _names(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v.value) for v in san]


def test_request_sign_install_keeps_the_key_on_its_host(hosts: tuple[Path, Path]) -> None:
    ca, bank = hosts
    csr = enrol.request(bank, "bank", hosts=["node1.bank.example", "10.0.0.5"])
    key_file = bank / "bank.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in csr.read_bytes()  # only the request travels

    cert_pem = pki.sign(ca, csr.read_bytes(), party="bank")
    assert b"PRIVATE KEY" not in cert_pem  # only the certificate comes back
    assert not list(ca.glob("bank*.key"))  # the CA never held the bank's key
    enrol.install(bank, cert_pem, (ca / "ca.pem").read_bytes())

    identity = pki.load_identity(bank, "bank")
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert pki.party_of(identity.cert_pem) == "bank"
    assert _names(cert_pem) == [
        "bank", pki.pin_name("bank", cert.serial_number), "10.0.0.5", "node1.bank.example"
    ]
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    assert (ca / "issued" / f"{cert.serial_number:x}.pem").read_bytes() == cert_pem


def test_sign_refuses_a_tampered_request(hosts: tuple[Path, Path]) -> None:
    ca, bank = hosts
    csr = x509.load_pem_x509_csr(enrol.request(bank, "bank").read_bytes())
    other = ec.generate_private_key(ec.SECP256R1())
    # Mallory swaps in her own public key but cannot sign for the bank's key.
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    theirs = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mine = other.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    at = bytes(der).index(theirs)
    der[at : at + len(theirs)] = mine
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(AuthError, match="does not verify"):
        pki.sign(ca, forged)
    assert not (ca / "issued").exists() or not list((ca / "issued").iterdir())


def _csr(key: object, *attrs: x509.NameAttribute) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(list(attrs)))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_sign_refuses_wrong_name_key_type_and_subject(hosts: tuple[Path, Path]) -> None:
    ca, bank = hosts
    csr = enrol.request(bank, "bank").read_bytes()
    with pytest.raises(ConfigError, match="names 'bank', not 'insurer'"):
        pki.sign(ca, csr, party="insurer")
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "bank")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="P-256 or P-384"):
        pki.sign(ca, _csr(rsa_key, cn))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bank")
    with pytest.raises(ConfigError, match="exactly one common name"):
        pki.sign(ca, _csr(ec_key, cn, org))
    with pytest.raises(ConfigError, match="invalid party id"):
        pki.sign(ca, _csr(ec_key, x509.NameAttribute(NameOID.COMMON_NAME, "../ca")))
    with pytest.raises(ConfigError, match="not a PEM certificate signing request"):
        pki.sign(ca, b"hello")


def test_request_never_overwrites_a_key(hosts: tuple[Path, Path]) -> None:
    _, bank = hosts
    with pytest.raises(ConfigError, match="no key for 'bank' to rotate"):
        enrol.request(bank, "bank", rotate=True)
    enrol.request(bank, "bank")
    before = (bank / "bank.key").read_bytes()
    with pytest.raises(ConfigError, match="already holds a key"):
        enrol.request(bank, "bank")
    enrol.request(bank, "bank", rotate=True)
    with pytest.raises(ConfigError, match="already pending"):
        enrol.request(bank, "bank", rotate=True)
    assert (bank / "bank.key").read_bytes() == before
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        enrol.request(bank, "insurer", hosts=["bad host"])


def test_install_refuses_foreign_certificates(hosts: tuple[Path, Path], tmp_path: Path) -> None:
    ca, bank = hosts
    csr = enrol.request(bank, "bank").read_bytes()
    evil = tmp_path / "evil-ca"
    pki.init_ca(evil)
    with pytest.raises(AuthError, match="not issued by the CA"):
        enrol.install(bank, pki.sign(evil, csr), (ca / "ca.pem").read_bytes())
    # a certificate for a key made elsewhere (the CA made it: 'issue')
    elsewhere = pki.issue(ca, "bank").cert_pem
    with pytest.raises(ConfigError, match="holds no key made in"):
        enrol.install(bank, elsewhere, (ca / "ca.pem").read_bytes())
    enrol.install(bank, pki.sign(ca, csr), (ca / "ca.pem").read_bytes())
    with pytest.raises(ConfigError, match="holds another CA"):
        enrol.install(bank, pki.sign(ca, csr), (evil / "ca.pem").read_bytes())


def _rotating(ca: Path, bank: Path) -> tuple[IdentityFiles, bytes, bytes, bytes]:
    """The bank enrolled and watching its files, with a successor signed but not installed:
    (files, first certificate, first key, second certificate)."""
    first = _enrol(ca, bank, "bank")
    first_key = (bank / "bank.key").read_bytes()
    files = IdentityFiles(bank, "bank")
    assert files.current().cert_pem == first and files.generation == 0
    csr = enrol.request(bank, "bank", rotate=True)
    assert files.current().cert_pem == first  # the pending key changes nothing yet
    return files, first, first_key, pki.sign(ca, csr.read_bytes(), party="bank")


def test_rotation_replaces_the_pair_and_identity_files_take_it_up(
    hosts: tuple[Path, Path],
) -> None:
    files, _, first_key, second = _rotating(*hosts)
    bank = hosts[1]
    enrol.install(bank, second)  # ca.pem is already there
    assert not (bank / "bank.next.key").exists()
    now = files.current()
    assert now.cert_pem == second and files.generation == 1
    assert now == pki.load_identity(bank, "bank")
    assert now.key_pem != first_key


def test_identity_files_keep_the_old_pair_while_an_install_is_half_done(
    hosts: tuple[Path, Path],
) -> None:
    files, first, _, second = _rotating(*hosts)
    bank = hosts[1]
    os.replace(bank / "bank.next.key", bank / "bank.key")  # install's first move only
    assert files.current().cert_pem == first and files.generation == 0
    (bank / "bank.pem").write_bytes(second)  # ... and its second
    assert files.current().cert_pem == second and files.generation == 1


def test_load_identity_refuses_a_pair_that_does_not_belong_together(
    hosts: tuple[Path, Path],
) -> None:
    ca, bank = hosts
    _enrol(ca, bank, "bank")
    pki.issue(ca, "other")
    (bank / "bank.key").write_bytes((ca / "other.key").read_bytes())
    with pytest.raises(ConfigError, match="do not belong together"):
        pki.load_identity(bank, "bank")


def test_expired_validity_window_is_kept_as_asked(hosts: tuple[Path, Path]) -> None:
    ca, bank = hosts
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    csr = enrol.request(bank, "bank").read_bytes()
    cert = x509.load_pem_x509_certificate(
        pki.sign(ca, csr, not_before=start, not_after=start + dt.timedelta(days=1))
    )
    assert cert.not_valid_after_utc == start + dt.timedelta(days=1)
