"""Fuzzing the attestation evidence parsers (issue 14): real Nitro, SGX/TDX (DCAP) and
SEV-SNP evidence with bytes flipped or cut, random documents, and random evidence
envelopes. Each verification refuses with the one opaque
:class:`~sharedml.errors.AttestationError` or, for an untouched document, verifies;
0 crashes, 0 hangs in ``FUZZ_EXAMPLES`` examples per target."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.tee.evidence import (
    BLOCKY_AT,
    BLOCKY_PCR0,
    SGX_AT,
    SGX_MRENCLAVE,
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
from sharedml.tee.attestation.snp import SnpBackend

from .conftest import FUZZ, refuses_only

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def real(tee_evidence: Path) -> dict[str, tuple[Evidence, dt.datetime]]:
    return {
        "nitro": (nitro(tee_evidence / "nitro/blocky_nitro_attestation.b64"), BLOCKY_AT),
        "sgx": (dcap(tee_evidence / "sgx/sgx_quote",
                     tee_evidence / "sgx/sgx_quote_collateral.json"), SGX_AT),
        "tdx": (dcap(tee_evidence / "tdx/tdx_quote",
                     tee_evidence / "tdx/tdx_quote_collateral.json"), TDX_AT),
        "snp": (snp_evidence(tee_evidence), SNP_AT),
    }


VERIFIER = Verifier([NitroBackend(), DcapBackend(), SnpBackend()])
#: The real documents' measurements: the fuzzing is of the parsers, not of the policy.
POLICY = Policy(measurements=frozenset({BLOCKY_PCR0, SGX_MRENCLAVE, TDX_MRTD, SNP_MEASUREMENT}),
                allow_debug=True)


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    raw = bytearray(data)
    for at, byte in flips:
        raw[at % len(raw)] = byte
    return bytes(raw if cut is None else raw[: cut % (len(raw) + 1)])


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4)


@FUZZ
@given(st.sampled_from(["nitro", "sgx", "tdx", "snp"]), FLIPS, st.none() | st.integers(0, 1 << 20),
       st.booleans())
def test_real_evidence_with_bytes_flipped_or_cut(
    real: dict[str, tuple[Evidence, dt.datetime]], which: str, flips: list[tuple[int, int]],
    cut: int | None, in_collateral: bool,
) -> None:
    ev, at = real[which]
    if in_collateral and ev.collateral:
        ev = Evidence(ev.backend, ev.document, _mutate(ev.collateral, flips, cut))
    else:
        ev = Evidence(ev.backend, _mutate(ev.document, flips, cut), ev.collateral)
    refuses_only((AttestationError,), lambda: VERIFIER.appraise(ev, POLICY, at), f"{which}")


@FUZZ
@given(st.sampled_from(["nitro", "dcap", "snp", "sim", "other"]), st.binary(max_size=600),
       st.binary(max_size=200))
def test_random_documents(backend: str, document: bytes, collateral: bytes) -> None:
    ev = Evidence(backend, document, collateral)
    with pytest.raises(AttestationError):
        refuses_only((), lambda: VERIFIER.appraise(ev, POLICY, BLOCKY_AT), backend)


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.fixed_dictionaries({"backend": st.text(max_size=8),
                                        "document": st.text(max_size=40)}).map(
                     lambda d: str(d).replace("'", '"').encode())))
def test_evidence_envelopes(raw: bytes) -> None:
    refuses_only((AttestationError,), lambda: Evidence.from_json(raw), "Evidence.from_json")
