"""Real Nitro, SGX and TDX evidence verifies at its pinned time; negative vectors fail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.tee.evidence import (
    BLOCKY_AT,
    BLOCKY_PCR0,
    DEBUG_AT,
    ETERNIS_AT,
    OUTDATED_AT,
    SGX_AT,
    SGX_MRENCLAVE,
    SGX_MRSIGNER,
    SNP_AT,
    SNP_MEASUREMENT,
    TDX_AT,
    TDX_MRTD,
    dcap,
    nitro,
    snp_evidence,
)

from sharedml.errors import AttestationError
from sharedml.tee.attestation import Evidence, Policy, Verifier
from sharedml.tee.attestation.dcap import DcapBackend
from sharedml.tee.attestation.nitro import NitroBackend


def reason(info: pytest.ExceptionInfo[AttestationError]) -> str:
    return str(info.value.reason)  # type: ignore[attr-defined]


@pytest.fixture
def verifier() -> Verifier:
    return Verifier([NitroBackend(), DcapBackend()], nonce_ttl=dt.timedelta(days=36500))


def test_nitro_production_document_verifies_and_binds(verifier: Verifier, tee_evidence: Path) -> None:
    ev = nitro(tee_evidence / "nitro/blocky_nitro_attestation.b64")
    ones = b"\x01" * 1024
    nonce = verifier.challenge(BLOCKY_AT, nonce=ones)
    claims = verifier.verify(
        ev, Policy(measurements=frozenset({BLOCKY_PCR0})), nonce=nonce, public_key=ones, now=BLOCKY_AT
    )
    assert claims.measurement == BLOCKY_PCR0
    assert not claims.debug
    assert claims.user_data == ones
    assert claims.extra["module_id"].startswith("i-0a22e5c5f24d22174")


def test_nitro_debug_document_is_refused_unless_debug_allowed(verifier: Verifier, tee_evidence: Path) -> None:
    ev = nitro(tee_evidence / "nitro/blocky_nitro_attestation_debug.b64")
    zero = "00" * 48
    with pytest.raises(AttestationError) as info:
        verifier.appraise(ev, Policy(measurements=frozenset({zero})), DEBUG_AT)
    assert reason(info) == "debug"
    claims = verifier.appraise(ev, Policy(measurements=frozenset({zero}), allow_debug=True), DEBUG_AT)
    assert claims.debug


def test_eternis_document_verifies_in_debug_mode(verifier: Verifier, tee_evidence: Path) -> None:
    ev = nitro(tee_evidence / "nitro/eternis_example_attestation.b64")
    policy = Policy(measurements=frozenset({"00" * 48}), allow_debug=True)
    nonce = verifier.challenge(ETERNIS_AT, nonce=bytes.fromhex("00" * 19 + "01"))
    claims = verifier.verify(ev, policy, nonce=nonce, public_key=b"dummy", now=ETERNIS_AT)
    assert claims.extra["pcr3"].startswith("671ca1e3")


@pytest.mark.parametrize("shift", [dt.timedelta(days=-1), dt.timedelta(hours=4), dt.timedelta(days=3650)])
def test_nitro_outside_validity_windows_fails(verifier: Verifier, tee_evidence: Path, shift: dt.timedelta) -> None:
    ev = nitro(tee_evidence / "nitro/blocky_nitro_attestation.b64")
    with pytest.raises(AttestationError) as info:
        verifier.appraise(ev, Policy(measurements=frozenset({BLOCKY_PCR0})), BLOCKY_AT + shift)
    assert reason(info) == "expired"


def test_nitro_old_document_is_too_old_for_a_fresh_session(verifier: Verifier, tee_evidence: Path) -> None:
    """Still inside the leaf window, but older than max_age: stale."""
    ev = nitro(tee_evidence / "nitro/blocky_nitro_attestation.b64")
    ones = b"\x01" * 1024
    later = BLOCKY_AT + dt.timedelta(minutes=30)
    nonce = verifier.challenge(later, nonce=ones)
    with pytest.raises(AttestationError) as info:
        verifier.verify(ev, Policy(measurements=frozenset({BLOCKY_PCR0})), nonce=nonce, public_key=ones, now=later)
    assert reason(info) == "time"


def test_sgx_quote_verifies_with_collateral(verifier: Verifier, tee_evidence: Path) -> None:
    ev = dcap(tee_evidence / "sgx/sgx_quote", tee_evidence / "sgx/sgx_quote_collateral.json")
    strict = Policy(signer=SGX_MRSIGNER, product_id=0)
    with pytest.raises(AttestationError) as info:
        verifier.appraise(ev, strict, SGX_AT)
    assert reason(info) == "tcb"  # ConfigurationAndSWHardeningNeeded is not UpToDate
    lenient = Policy(
        signer=SGX_MRSIGNER,
        product_id=0,
        tcb_statuses=frozenset({"UpToDate", "ConfigurationAndSWHardeningNeeded"}),
    )
    claims = verifier.appraise(ev, lenient, SGX_AT)
    assert claims.measurement == SGX_MRENCLAVE
    assert claims.report_data is not None and claims.report_data.startswith(b"Hello, world!")
    assert not claims.debug
    assert "INTEL-SA-00615" in claims.extra["advisories"]


def test_tdx_quote_verifies_with_collateral(verifier: Verifier, tee_evidence: Path) -> None:
    ev = dcap(tee_evidence / "tdx/tdx_quote", tee_evidence / "tdx/tdx_quote_collateral.json")
    claims = verifier.appraise(ev, Policy(measurements=frozenset({TDX_MRTD})), TDX_AT)
    assert claims.tcb_status == "UpToDate"
    assert claims.extra["rtmr0"].startswith("44c0197b")


def test_outdated_tdx_quote_fails(verifier: Verifier, tee_evidence: Path) -> None:
    ev = dcap(tee_evidence / "tdx/tdx_quote_outdated", tee_evidence / "tdx/tdx_quote_outdated_collateral.json")
    with pytest.raises(AttestationError) as info:
        verifier.appraise(ev, Policy(measurements=frozenset({"00" * 48})), OUTDATED_AT)
    assert reason(info) == "tcb"


TDX_WINDOW_START = dt.datetime(2025, 6, 19, 10, 32, 27, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "when", [TDX_WINDOW_START - dt.timedelta(days=1), TDX_AT + dt.timedelta(days=1)], ids=["before", "after"]
)
def test_dcap_outside_collateral_window_fails(verifier: Verifier, tee_evidence: Path, when: dt.datetime) -> None:
    ev = dcap(tee_evidence / "tdx/tdx_quote", tee_evidence / "tdx/tdx_quote_collateral.json")
    with pytest.raises(AttestationError) as info:
        verifier.appraise(ev, Policy(measurements=frozenset({TDX_MRTD})), when)
    assert reason(info) == "expired"


def test_dcap_quote_without_its_collateral_fails(verifier: Verifier, tee_evidence: Path) -> None:
    ev = dcap(tee_evidence / "tdx/tdx-quote.hex", tee_evidence / "tdx/tdx_quote_collateral.json")
    raw = bytes.fromhex(ev.document.decode().strip().removeprefix("0x"))
    with pytest.raises(AttestationError):
        verifier.appraise(Evidence("dcap", raw, ev.collateral), Policy(measurements=frozenset({TDX_MRTD})), TDX_AT)


@pytest.fixture
def snp_verifier() -> Verifier:
    from sharedml.tee.attestation.snp import SnpBackend

    return Verifier([SnpBackend()])


def test_snp_report_verifies_with_its_vcek(snp_verifier: Verifier, tee_evidence: Path) -> None:
    ev = snp_evidence(tee_evidence)
    policy = Policy(measurements=frozenset({SNP_MEASUREMENT}))
    with pytest.raises(AttestationError) as info:
        snp_verifier.appraise(ev, policy, SNP_AT)
    assert reason(info) == "debug"  # guest policy 0xb0000 allows debugging
    claims = snp_verifier.appraise(ev, Policy(measurements=frozenset({SNP_MEASUREMENT}), allow_debug=True), SNP_AT)
    assert claims.report_data is not None and claims.report_data.startswith(bytes([1, 2, 3, 4, 5]))
    assert claims.extra["chip_id"].startswith("3ac3fe21")


@pytest.mark.parametrize("attack", ["flip-measurement", "before-vcek", "outdated", "not-a-vcek"])
def test_snp_negatives(tee_evidence: Path, attack: str) -> None:
    from sharedml.tee.attestation.snp import SnpBackend

    ev = snp_evidence(tee_evidence)
    when = SNP_AT
    backend = SnpBackend()
    if attack == "flip-measurement":
        doc = bytearray(ev.document)
        doc[0x90] ^= 1
        ev = Evidence("snp", bytes(doc), ev.collateral)
    elif attack == "before-vcek":
        when = dt.datetime(2022, 9, 24, 0, 50, tzinfo=dt.UTC)
    elif attack == "outdated":
        backend = SnpBackend(min_tcb={"microcode": 0x45})
    else:
        ev = Evidence("snp", ev.document, b"\x30\x03\x02\x01\x00")  # not a certificate
    policy = Policy(measurements=frozenset({SNP_MEASUREMENT}), allow_debug=True)
    with pytest.raises(AttestationError) as info:
        Verifier([backend]).appraise(ev, policy, when)
    expected = {"flip-measurement": "signature", "before-vcek": "expired", "outdated": "tcb", "not-a-vcek": "malformed"}
    assert reason(info) == expected[attack]
