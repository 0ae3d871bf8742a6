"""The vendored reference data is the upstream bytes, and the product does not read it.

``tests/data/SHA256SUMS`` pins every vendored file; a rewritten line ending or
a truncated copy fails here with the file's name rather than as a parity
miss somewhere else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509

import sharedml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
ROOTS = Path(sharedml.__file__).resolve().parent / "tee" / "attestation" / "roots"


def _sums() -> dict[str, str]:
    lines = (DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines if line)}


def test_every_vendored_file_is_listed_and_matches_its_digest() -> None:
    sums = _sums()
    on_disk = {
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p.name not in ("README.md", "SHA256SUMS")
    }
    assert on_disk == set(sums), "tests/data and its SHA256SUMS disagree"
    wrong = [n for n, d in sums.items() if hashlib.sha256((DATA / n).read_bytes()).hexdigest() != d]
    assert wrong == []


def test_fixtures_read_the_vendored_folders(shared_data: Path, tee_evidence: Path) -> None:
    assert shared_data == DATA / "datasets"
    assert tee_evidence == DATA / "tee-evidence"
    assert (shared_data / "default_credit_hetero_guest.csv").stat().st_size > 1_000_000


@pytest.mark.parametrize(
    ("pinned", "upstream"),
    [
        ("aws_nitro_enclaves_root_g1.pem", "nitro/aws_nitro_enclaves_root_G1.pem"),
        ("intel_sgx_root_ca.pem", "sgx/Intel_SGX_RootCA_from_dcap-qvl.der"),
        ("amd_ask_ark_milan.pem", "snp/ask_ark_milan.pem"),
    ],
)
def test_the_roots_the_product_pins_are_the_upstream_ones(pinned: str, upstream: str) -> None:
    mine = x509.load_pem_x509_certificates((ROOTS / pinned).read_bytes())
    raw = (DATA / "tee-evidence" / upstream).read_bytes()
    theirs = (
        [x509.load_der_x509_certificate(raw)] if upstream.endswith(".der")
        else x509.load_pem_x509_certificates(raw)
    )
    assert mine == theirs


def test_the_product_never_names_the_test_data() -> None:
    """No module under src/ reads tests/data (or the old ../shared location)."""
    src = Path(sharedml.__file__).resolve().parent
    hits = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if any(s in p.read_text() for s in ("tests/data", "tee-evidence", '"shared" / "data"'))
    ]
    assert hits == []
