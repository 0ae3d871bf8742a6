"""The revocation list: made and signed at the CA, checked (and re-read) where certificates arrive."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from sharedml.crypto import crl, pki
from sharedml.errors import AuthError, ConfigError


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    pki.init_ca(d)
    for party in ("bank", "insurer"):
        pki.issue(d, party)
    return d


def _cert(ca: Path, party: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca / f"{party}.pem").read_bytes())


def _node_copy(ca: Path, node: Path) -> Path:
    """The operator copies crl.pem to a node's folder (atomically, as a deploy tool would)."""
    node.mkdir(exist_ok=True)
    tmp = node / "crl.pem.new"
    shutil.copy(ca / "crl.pem", tmp)
    tmp.replace(node / "crl.pem")
    return node / "crl.pem"


def test_revoked_certificate_is_refused_and_others_pass(ca: Path, tmp_path: Path) -> None:
    crl.refresh(ca)
    watch = crl.RevocationFile(_node_copy(ca, tmp_path / "node"), (ca / "ca.pem").read_bytes())
    watch.check(_cert(ca, "bank"))  # nothing revoked yet

    new = crl.revoke(ca, party="bank", reason="key-compromise")
    assert new == [_cert(ca, "bank").serial_number]
    _node_copy(ca, tmp_path / "node")
    with pytest.raises(AuthError, match=r"certificate of 'bank' \(serial [0-9a-f]+\) is revoked"):
        watch.check(_cert(ca, "bank"))  # re-read without a restart
    watch.check(_cert(ca, "insurer"))
    entry = watch.current().crl.get_revoked_certificate_by_serial_number(new[0])
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.revoke(ca, party="bank") == []  # already on the list


def test_revoke_by_serial_after_rotation_keeps_the_new_certificate(ca: Path) -> None:
    old = _cert(ca, "bank")
    pki.issue(ca, "bank")  # the successor
    crl.revoke(ca, serial=old.serial_number, reason="superseded")
    watch = crl.RevocationFile(ca / "crl.pem", (ca / "ca.pem").read_bytes())
    with pytest.raises(AuthError):
        watch.check(old)
    watch.check(_cert(ca, "bank"))
    assert set(crl.issued_serials(ca, "bank")) == {old.serial_number, _cert(ca, "bank").serial_number}


def test_revoke_refuses_what_this_ca_never_issued(ca: Path) -> None:
    with pytest.raises(ConfigError, match="no certificate issued to 'nobody'"):
        crl.revoke(ca, party="nobody")
    with pytest.raises(ConfigError, match="no certificate with serial 1234"):
        crl.revoke(ca, serial=0x1234)
    with pytest.raises(ConfigError, match="either a party or a serial"):
        crl.revoke(ca)
    with pytest.raises(ConfigError, match="unknown reason"):
        crl.revoke(ca, party="bank", reason="bored")


def test_list_from_another_ca_is_refused(ca: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    pki.init_ca(evil)
    crl.refresh(evil)
    with pytest.raises(ConfigError, match="not signed by the deployment CA"):
        crl.RevocationFile(evil / "crl.pem", (ca / "ca.pem").read_bytes())
    with pytest.raises(ConfigError, match="no revocation list at"):
        crl.RevocationFile(tmp_path / "missing.pem", (ca / "ca.pem").read_bytes())


def test_replacements_that_are_forged_garbled_or_older_are_ignored(
    ca: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crl.refresh(ca)
    old = (ca / "crl.pem").read_bytes()
    crl.revoke(ca, party="bank")
    node_crl = _node_copy(ca, tmp_path / "node")
    watch = crl.RevocationFile(node_crl, (ca / "ca.pem").read_bytes())
    bank = _cert(ca, "bank")
    caplog.set_level(logging.ERROR, "sharedml.crypto.crl")

    node_crl.write_bytes(old)  # an older list, without the revocation: a replay
    with pytest.raises(AuthError):
        watch.check(bank)
    assert "an old copy" in caplog.text

    node_crl.write_bytes(b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    with pytest.raises(AuthError):
        watch.check(bank)
    evil = tmp_path / "evil"
    pki.init_ca(evil)
    node_crl.write_bytes(crl.refresh(evil).read_bytes())
    with pytest.raises(AuthError):
        watch.check(bank)
    assert "not signed by the deployment CA" in caplog.text


def test_a_stale_list_still_applies_and_warns(
    ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crl.revoke(ca, party="bank", days=1)
    watch = crl.RevocationFile(ca / "crl.pem", (ca / "ca.pem").read_bytes())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert watch.current().stale(later)
    caplog.set_level(logging.WARNING, "sharedml.crypto.crl")
    with pytest.raises(AuthError):
        watch.check(_cert(ca, "bank"), now=later)
    watch.check(_cert(ca, "insurer"), now=later)
    assert caplog.text.count("due for renewal") == 1
    numbers = []
    for _ in range(2):
        crl.refresh(ca)
        numbers.append(crl.RevocationList((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes()).number)
    assert numbers[1] == numbers[0] + 1
    assert crl.RevocationList((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes()).revoked(
        _cert(ca, "bank").serial_number
    )  # a refresh keeps every entry
