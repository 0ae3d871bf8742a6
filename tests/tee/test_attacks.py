"""One test per attack on attestation; each is rejected with AttestationError.

The evidence is real-format (COSE_Sign1 EAT, ES384, chain to the simulated
root); the attacks are made by the means an attacker has: another build,
another signer, an old nonce, a replay, a swapped key, a flipped byte, another
root, a stale certificate, an outdated or revoked platform.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.tee.conftest import SimWorld

from sharedml.errors import AttestationError, ConfigError, PolicyDenied
from sharedml.tee.attestation import Evidence, Policy, Verifier, VersionFloor, report_data_for
from sharedml.tee.attestation.sim import SimVendor

KEY = b"enclave public key bundle"


def reason(info: pytest.ExceptionInfo[AttestationError]) -> str:
    return str(info.value.reason)  # type: ignore[attr-defined]


def quote_challenge(
    sim: SimWorld, verifier: Verifier, now: dt.datetime | None = None, **quoter_kw: object
) -> tuple[bytes, Evidence]:
    """A fresh challenge from ``verifier`` and the enclave's evidence answering it for KEY."""
    nonce = verifier.challenge(now)
    return nonce, sim.quoter(**quoter_kw).quote(report_data_for(nonce, KEY))  # type: ignore[arg-type]


def attest_and_verify(sim: SimWorld, policy: Policy, **quoter_kw: object) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier, **quoter_kw)
    verifier.verify(evidence, policy, nonce=nonce, public_key=KEY)


def test_honest_enclave_is_accepted(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce = verifier.challenge()
    quoter = sim.quoter()
    claims = verifier.verify(quoter.quote(report_data_for(nonce, KEY)), sim.policy(), nonce=nonce, public_key=KEY)
    assert claims.simulated and claims.svn == 2 and claims.product_id == 7
    assert claims.measurement == quoter.measurement.hex()
    assert claims.extra["platform_id"] == "platform-a"


def test_measurement_is_computed_by_the_quoting_side(sim: SimWorld) -> None:
    """Changing a code file after signing makes the quoting side refuse to load it."""
    manifest = sim.manifest()
    (sim.code / "learners.py").write_text("ALGORITHMS = ['exfiltrate']\n")
    with pytest.raises(PolicyDenied):
        sim.quoter(manifest)


def test_wrong_measurement(sim: SimWorld) -> None:
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, Policy(measurements=frozenset({"ab" * 48}), allow_simulation=True))
    assert reason(info) == "measurement"


def test_wrong_signer(sim: SimWorld) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, sim.policy(), manifest=sim.manifest(signer=other))
    assert reason(info) == "signer"


def test_version_below_floor(sim: SimWorld, tmp_path: Path) -> None:
    floor = VersionFloor(0, tmp_path / "floor")
    floor.raise_to(3)
    with pytest.raises(PolicyDenied):
        floor.raise_to(2)
    assert VersionFloor(0, tmp_path / "floor").value == 3  # persisted, cannot be lowered by restart
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, sim.policy(floor=floor), manifest=sim.manifest(svn=2))
    assert reason(info) == "version"


def test_debug_enclave(sim: SimWorld) -> None:
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, sim.policy(), manifest=sim.manifest(debug=True))
    assert reason(info) == "debug"


def test_stale_nonce(sim: SimWorld) -> None:
    verifier = sim.verifier()
    old = verifier.challenge()
    evidence = sim.quoter().quote(report_data_for(old, KEY))
    fresh = verifier.challenge()
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, sim.policy(), nonce=fresh, public_key=KEY)
    assert reason(info) == "binding"


def test_expired_nonce(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "nonce"


def test_replayed_evidence(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier)
    verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=KEY)
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "nonce"


def test_report_data_not_binding_the_key(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier)
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=b"the host's own key")
    assert reason(info) == "binding"


def test_tampered_payload(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier, manifest=sim.manifest(debug=True))
    protected, unprotected, payload, sig = cbor2.loads(evidence.document)
    claims = cbor2.loads(payload)
    claims["debug"] = False  # the host flips the debug flag
    forged = cbor2.dumps([protected, unprotected, cbor2.dumps(claims), sig])
    with pytest.raises(AttestationError) as info:
        verifier.verify(Evidence("sim", forged), sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "signature"


def _foreign_root(sim: SimWorld, tmp_path: Path) -> Path:
    return SimVendor.create(tmp_path / "rogue").provision("platform-x")


def _expired_certificate(sim: SimWorld, tmp_path: Path) -> Path:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    return sim.vendor.provision("platform-old", now=past, valid_for=dt.timedelta(days=2))


def _outdated_tcb(sim: SimWorld, tmp_path: Path) -> Path:
    return sim.vendor.provision("platform-unpatched", tcb_svn=2)


@pytest.mark.parametrize(
    ("provision", "expected"),
    [(_foreign_root, "root"), (_expired_certificate, "expired"), (_outdated_tcb, "tcb")],
    ids=["foreign-root", "expired-certificate", "outdated-tcb"],
)
def test_untrusted_platform(
    sim: SimWorld, tmp_path: Path, provision: Callable[[SimWorld, Path], Path], expected: str
) -> None:
    """A quote from a platform whose certificate the verifier must not trust."""
    platform = provision(sim, tmp_path)
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, sim.policy(), platform=platform)
    assert reason(info) == expected


def test_revoked_platform(sim: SimWorld) -> None:
    platform = sim.vendor.provision("platform-leaked")
    verifier = sim.verifier(crl=sim.vendor.revocation_list(["platform-leaked"]))
    nonce, evidence = quote_challenge(sim, verifier, platform=platform)
    with pytest.raises(AttestationError) as info:
        verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "revoked"


def test_simulated_evidence_when_simulation_not_enabled(sim: SimWorld) -> None:
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, sim.policy(allow_simulation=False))
    assert reason(info) == "simulation"


def test_oversized_evidence(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce = verifier.challenge()
    big = Evidence("sim", secrets.token_bytes(300_000))
    with pytest.raises(AttestationError) as info:
        verifier.verify(big, sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "size"


@pytest.mark.parametrize(
    "document",
    [b"", b"\xff\x00garbage", cbor2.dumps([1, 2, 3]), cbor2.dumps([b"", {}, b"x", b"y"]), cbor2.dumps({"a": 1})],
    ids=["empty", "not-cbor", "short-array", "bad-header", "map"],
)
def test_malformed_evidence(sim: SimWorld, document: bytes) -> None:
    verifier = sim.verifier()
    nonce = verifier.challenge()
    with pytest.raises(AttestationError) as info:
        verifier.verify(Evidence("sim", document), sim.policy(), nonce=nonce, public_key=KEY)
    assert reason(info) == "malformed"
    assert "malformed" not in str(info.value)  # opaque to the peer


def test_truncated_evidence(sim: SimWorld) -> None:
    verifier = sim.verifier()
    nonce, evidence = quote_challenge(sim, verifier)
    with pytest.raises(AttestationError):
        verifier.verify(Evidence("sim", evidence.document[:-40]), sim.policy(), nonce=nonce, public_key=KEY)


def test_policy_must_name_reference_values() -> None:
    with pytest.raises(ConfigError):
        Policy()


def test_floor_applies_to_allowlisted_measurements_too(sim: SimWorld) -> None:
    quoter = sim.quoter(sim.manifest(svn=2))
    policy = Policy(measurements=frozenset({quoter.measurement.hex()}), allow_simulation=True, floor=VersionFloor(3))
    with pytest.raises(AttestationError) as info:
        attest_and_verify(sim, policy, manifest=sim.manifest(svn=2))
    assert reason(info) == "version"
