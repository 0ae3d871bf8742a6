"""Each hardware attester against a fake of its interface that answers with real evidence.

The fakes (``hardware_fakes``) play configfs-tsm, Gramine's ``/dev/attestation``
and the NSM driver. The evidence they return was made by real TDX, SEV-SNP,
SGX and Nitro hardware for *other* report data, so for TDX/SNP/SGX the tests
check (1) the attester asked the hardware for exactly the binding of our
nonce and key, (2) the verifier accepts the returned evidence up to its real
roots, and (3) the full verification refuses it for the binding — the
production path end to end. Nitro carries the nonce and key in their own
fields, and the recorded document's fields are known, so it verifies fully.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest
from tests.tee.evidence import (
    BLOCKY_AT,
    BLOCKY_FIELD,
    BLOCKY_PCR0,
    ETERNIS_AT,
    SGX_AT,
    SGX_MRSIGNER,
    SNP_AT,
    SNP_MEASUREMENT,
    TDX_AT,
    TDX_MRTD,
    nitro_document,
)
from tests.tee.hardware_fakes import FakeNsmDriver, FakeTsmKernel, gramine_tree

from sharedml.errors import AttestationError, ConfigError, PolicyDenied
from sharedml.tee.attestation import Evidence, Policy, Verifier, report_data_for
from sharedml.tee.attestation.collateral import VCEK_GUID, FileCollateral, snp_certificate_table
from sharedml.tee.attestation.configfs_tsm import ConfigfsTsmAttester
from sharedml.tee.attestation.dcap import DcapBackend
from sharedml.tee.attestation.gramine import GramineAttester
from sharedml.tee.attestation.nitro import NitroBackend
from sharedml.tee.attestation.nsm import NitroAttester, NsmDevice
from sharedml.tee.attestation.snp import SnpBackend

KEY = b"enclave key bundle"
LONG_TTL = {"nonce_ttl": dt.timedelta(days=36500)}  # the recorded evidence is from 2022-2025


def reason(info: pytest.ExceptionInfo[AttestationError]) -> str:
    return str(info.value.reason)  # type: ignore[attr-defined]


def refused_for_binding(verifier: Verifier, evidence: Evidence, policy: Policy, nonce: bytes, when: dt.datetime) -> None:
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, policy, nonce=nonce, public_key=KEY, now=when)
    assert reason(info) == "binding"


def test_tdx_guest_through_configfs_tsm(tmp_path: Path, tee_evidence: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "tsm", "tdx_guest", (tee_evidence / "tdx/tdx_quote").read_bytes())
    attester = ConfigfsTsmAttester(kernel, collateral=FileCollateral(tee_evidence / "tdx/tdx_quote_collateral.json"))
    verifier = Verifier([DcapBackend()], **LONG_TTL)
    nonce = verifier.challenge(TDX_AT)
    evidence = attester.attest(nonce, KEY)
    assert kernel.inblobs == [report_data_for(nonce, KEY)]
    assert evidence.backend == attester.backend == "dcap"
    assert list((tmp_path / "tsm").iterdir()) == []  # the report entry was removed
    policy = Policy(measurements=frozenset({TDX_MRTD}))
    claims = verifier.appraise(evidence, policy, TDX_AT)  # real quote, real collateral, Intel root
    assert claims.tcb_status == "UpToDate" and claims.report_data is not None
    refused_for_binding(verifier, evidence, policy, nonce, TDX_AT)


def test_snp_guest_through_configfs_tsm_with_the_hosts_vcek(tmp_path: Path, tee_evidence: Path) -> None:
    vcek = (tee_evidence / "snp/vcek.testcer").read_bytes()
    kernel = FakeTsmKernel(tmp_path / "tsm", "sev_guest", (tee_evidence / "snp/attestation.bin").read_bytes(),
                           auxblob=snp_certificate_table({VCEK_GUID: vcek}))
    attester = ConfigfsTsmAttester(kernel)  # no collateral source: the host's auxblob has the VCEK
    verifier = Verifier([SnpBackend()], **LONG_TTL)
    nonce = verifier.challenge(SNP_AT)
    evidence = attester.attest(nonce, KEY)
    assert evidence.backend == "snp" and evidence.collateral == vcek
    assert kernel.inblobs == [report_data_for(nonce, KEY)]
    with pytest.raises(AttestationError) as info:  # the recorded guest allows debugging
        verifier.appraise(evidence, Policy(measurements=frozenset({SNP_MEASUREMENT})), SNP_AT)
    assert reason(info) == "debug"
    policy = Policy(measurements=frozenset({SNP_MEASUREMENT}), allow_debug=True)
    assert verifier.appraise(evidence, policy, SNP_AT).measurement == SNP_MEASUREMENT
    refused_for_binding(verifier, evidence, policy, nonce, SNP_AT)


def test_snp_without_auxblob_needs_a_vcek_source(tmp_path: Path, tee_evidence: Path) -> None:
    report = (tee_evidence / "snp/attestation.bin").read_bytes()
    kernel = FakeTsmKernel(tmp_path / "tsm", "sev_guest", report)
    with pytest.raises(ConfigError, match="VCEK"):
        ConfigfsTsmAttester(kernel).attest(secrets.token_bytes(32), KEY)
    attester = ConfigfsTsmAttester(kernel, collateral=FileCollateral(tee_evidence / "snp/vcek.testcer"))
    evidence = attester.attest(secrets.token_bytes(32), KEY)
    policy = Policy(measurements=frozenset({SNP_MEASUREMENT}), allow_debug=True)
    assert Verifier([SnpBackend()]).appraise(evidence, policy, SNP_AT).svn is not None


def test_configfs_tsm_refuses_a_report_another_writer_changed(tmp_path: Path, tee_evidence: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "tsm", "tdx_guest", (tee_evidence / "tdx/tdx_quote").read_bytes())
    kernel.intruder = True
    attester = ConfigfsTsmAttester(kernel, collateral=FileCollateral(tee_evidence / "tdx/tdx_quote_collateral.json"))
    with pytest.raises(AttestationError, match="generation"):
        attester.attest(secrets.token_bytes(32), KEY)
    assert list((tmp_path / "tsm").iterdir()) == []


def test_configfs_tsm_unknown_provider_and_missing_interface(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "tsm", "arm_cca_guest", b"x")
    with pytest.raises(ConfigError, match="not supported"):
        ConfigfsTsmAttester(kernel).attest(secrets.token_bytes(32), KEY)
    from sharedml.tee.attestation.configfs_tsm import ReportFs

    with pytest.raises(ConfigError, match="Linux"):
        ReportFs(tmp_path / "absent")


def test_sgx_enclave_through_gramine_dev_attestation(tmp_path: Path, tee_evidence: Path) -> None:
    root = gramine_tree(tmp_path / "attestation", (tee_evidence / "sgx/sgx_quote").read_bytes())
    attester = GramineAttester(FileCollateral(tee_evidence / "sgx/sgx_quote_collateral.json"), svn=3, root=root)
    verifier = Verifier([DcapBackend()], **LONG_TTL)
    nonce = verifier.challenge(SGX_AT)
    evidence = attester.attest(nonce, KEY)
    assert (root / "user_report_data").read_bytes() == report_data_for(nonce, KEY)
    policy = Policy(signer=SGX_MRSIGNER, product_id=0,
                    tcb_statuses=frozenset({"UpToDate", "ConfigurationAndSWHardeningNeeded"}))
    claims = verifier.appraise(evidence, policy, SGX_AT)
    assert claims.signer == SGX_MRSIGNER and not claims.debug
    refused_for_binding(verifier, evidence, policy, nonce, SGX_AT)
    # Seal keys: this version's only (Gramine exposes no other), stable across calls.
    assert attester.seal_key(3) == attester.seal_key(3) and len(attester.seal_key(3)) == 32
    with pytest.raises(PolicyDenied):
        attester.seal_key(2)


def test_gramine_without_dcap_is_refused_at_start(tmp_path: Path, tee_evidence: Path) -> None:
    collateral = FileCollateral(tee_evidence / "sgx/sgx_quote_collateral.json")
    root = gramine_tree(tmp_path / "attestation", b"", kind="none")
    with pytest.raises(ConfigError, match="remote_attestation"):
        GramineAttester(collateral, svn=1, root=root)
    with pytest.raises(ConfigError):
        GramineAttester(collateral, svn=1, root=tmp_path / "absent")


def nsm(tmp_path: Path, driver: FakeNsmDriver) -> NsmDevice:
    device = tmp_path / "nsm"
    device.write_bytes(b"")
    return NsmDevice(str(device), ioctl=driver)


def test_nitro_enclave_through_the_nsm_ioctl_verifies_fully(tmp_path: Path, tee_evidence: Path) -> None:
    driver = FakeNsmDriver(nitro_document(tee_evidence / "nitro/blocky_nitro_attestation.b64"))
    attester = NitroAttester(nsm(tmp_path, driver))
    verifier = Verifier([NitroBackend()], **LONG_TTL)
    # The recorded document answered a 1024-byte nonce and key of 0x01: ask for the same.
    nonce = verifier.challenge(BLOCKY_AT, nonce=BLOCKY_FIELD)
    evidence = attester.attest(nonce, BLOCKY_FIELD)
    assert driver.requests == [{"Attestation": {"nonce": BLOCKY_FIELD, "public_key": BLOCKY_FIELD, "user_data": None}}]
    claims = verifier.verify(evidence, Policy(measurements=frozenset({BLOCKY_PCR0})), nonce=nonce,
                             public_key=BLOCKY_FIELD, now=BLOCKY_AT)
    assert claims.measurement == BLOCKY_PCR0 and not claims.debug
    # Another key than the one the NSM signed: refused.
    nonce = verifier.challenge(BLOCKY_AT, nonce=BLOCKY_FIELD)
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, Policy(measurements=frozenset({BLOCKY_PCR0})), nonce=nonce,
                        public_key=KEY, now=BLOCKY_AT)
    assert reason(info) == "binding"


def test_nitro_debug_enclave_and_nsm_errors(tmp_path: Path, tee_evidence: Path) -> None:
    debug = NitroAttester(nsm(tmp_path, FakeNsmDriver(nitro_document(tee_evidence / "nitro/eternis_example_attestation.b64"))))
    evidence = debug.attest(bytes(19) + b"\x01", b"dummy")
    with pytest.raises(AttestationError) as info:
        Verifier([NitroBackend()]).appraise(evidence, Policy(measurements=frozenset({"00" * 48})), ETERNIS_AT)
    assert reason(info) == "debug"
    with pytest.raises(AttestationError, match="InvalidArgument"):
        NitroAttester(nsm(tmp_path, FakeNsmDriver(b"", error="InvalidArgument"))).attest(b"n" * 32, KEY)
    with pytest.raises(ConfigError, match="1024"):
        NitroAttester(nsm(tmp_path, FakeNsmDriver(b""))).attest(b"n" * 32, b"k" * 1025)
    with pytest.raises(ConfigError, match="Nitro"):
        NsmDevice(str(tmp_path / "no-device"))
