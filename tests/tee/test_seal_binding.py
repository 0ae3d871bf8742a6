"""Sealing a registered TEE model to the enclave's signer (default) or its measurement (issue #17).

Two builds of one release key (same signer, product and svn, different code,
so different measurements) on one simulated platform, with the simulator's
real seal-key derivation (HKDF from the platform's fused secret) and real
AES-GCM: a model sealed to the signer opens in both — it survives an upgrade
— while one sealed to the measurement opens only in the build that sealed it.
The owners' signed data policies choose (``seal: measurement`` from any owner
wins), checked through the enclave runtime's own run and predict; the
Gramine attester's keys from a fake ``/dev/attestation`` tree behave alike.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.tee.conftest import SimWorld
from tests.tee.hardware_fakes import gramine_tree
from tests.tee.test_runtime import JOB, frames, grant, send

from sharedml.components import jobspec
from sharedml.errors import PolicyDenied
from sharedml.tee import scheme
from sharedml.tee.attestation.collateral import FileCollateral
from sharedml.tee.attestation.gramine import GramineAttester
from sharedml.tee.attestation.simqe import LocalSimAttester, SimQuoter
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.model import ReleasedModel

MODEL = ReleasedModel("linear_regression", ["a.x"], {"mean": [0.0], "scale": [1.0], "coef": [2.0], "intercept": 0.5})


def two_builds(sim: SimWorld) -> tuple[SimQuoter, SimQuoter]:
    """The build that trains and a later build of the same release key whose code differs."""
    first = sim.quoter()
    (sim.code / "learners.py").write_text("ALGORITHMS = ['lr', 'xgb']\n")
    later = sim.quoter(sim.manifest())
    assert first.signer == later.signer and first.measurement != later.measurement
    return first, later


def store(quoter: SimQuoter) -> SealedStore:
    return SealedStore(quoter.seal_key, quoter.manifest.svn, measurement_key=quoter.measurement_seal_key)


def predict(uid: str, blob: bytes) -> list[tuple[str, str, object]]:
    from sharedml.components.learn import PredictParams

    return [("score", "predict", PredictParams(model=uid, fingerprints={"enclave": saved.fingerprint(blob)}))]


def opened(sealer: SealedStore, blob: bytes) -> ReleasedModel:
    request = {"u1": base64.b64encode(blob).decode()}
    return saved.open_models(sealer, predict("u1", blob), request)["u1"]


def test_a_signer_bound_model_survives_an_upgrade_a_measurement_bound_one_does_not(sim: SimWorld) -> None:
    first, later = two_builds(sim)
    by_signer = base64.b64decode(saved.seal_models(store(first), {"train": MODEL})["train"])
    by_measurement = base64.b64decode(saved.seal_models(store(first), {"train": MODEL}, "measurement")["train"])
    assert json.loads(by_measurement[4:4 + int.from_bytes(by_measurement[:4], "big")])["bind"] == "measurement"

    assert opened(store(later), by_signer).params == MODEL.params  # the upgrade scores it
    assert opened(store(first), by_measurement).params == MODEL.params  # the build that sealed it
    with pytest.raises(PolicyDenied, match="sealed for another enclave identity") as refused:
        opened(store(later), by_measurement)
    assert refused.value.step == "score" and "another measurement" in str(refused.value)
    with pytest.raises(PolicyDenied, match="derives no measurement-bound seal key"):
        opened(SealedStore(first.seal_key, first.manifest.svn), by_measurement)  # e.g. an attester without one
    with pytest.raises(PolicyDenied, match="cannot seal to"):
        store(first).seal(saved.NAME, b"x", "platform")


def trained_blob(quoter: SimQuoter, tmp: Path, seals: tuple[str, str]) -> tuple[bytes, ReleasedModel]:
    """An enclave of ``quoter`` trains on two owners' uploads whose policies say ``seals``; its sealed model."""
    e = Enclave(LocalSimAttester(quoter), tmp / "work", job=JOB, sealer=store(quoter))
    e.attest(secrets.token_bytes(32))
    a, b = frames(np.random.default_rng(3))
    for (owner, frame), seal in zip((("a", a), ("b", b)), seals, strict=True):
        send(e, frame, grant(owner, ed25519.Ed25519PrivateKey.generate(), list(frame.columns),
                             algorithms=scheme.uses(), seal=seal))
    spec = jobspec.load({"name": JOB, "scheme": "tee", "parties": {"a": {"dataset": "a.csv", "label": "y"},
                                                                     "b": {"dataset": "b.csv"}},
                         "steps": [{"psi": {"key": "id"}}, {"split": {"test_size": 0.2, "seed": 1}},
                                   {"train": {"model": "logistic_regression"}}]})
    answer = e.run({"steps": scheme.wire_steps(spec.parsed_steps()), "label": "a.y", "id": "id"})
    blob = base64.b64decode(answer["sealed"]["train"])
    return blob, ReleasedModel.from_bytes(store(quoter).unseal(blob, saved.NAME))


def scored_by(quoter: SimQuoter, tmp: Path, blob: bytes) -> dict[str, object]:
    """A later job in an enclave of ``quoter`` scores new rows with the registered ``blob``."""
    e = Enclave(LocalSimAttester(quoter), tmp / "score", job=JOB, sealer=store(quoter))
    e.attest(secrets.token_bytes(32))
    a, b = frames(np.random.default_rng(4), n=50)
    for owner, frame in (("a", a.drop(columns=["y"])), ("b", b)):
        send(e, frame, grant(owner, ed25519.Ed25519PrivateKey.generate(), list(frame.columns),
                             algorithms=scheme.uses()))
    uid = "ab" * 16
    step = {"id": "score", "predict": {"model": uid, "fingerprints": {"enclave": saved.fingerprint(blob)}}}
    spec = jobspec.load({"name": JOB, "scheme": "tee", "steps": [step], "parties": {
        "a": {"dataset": "a.csv", "label": "y"}, "b": {"dataset": "b.csv"}}})
    return e.run({"steps": scheme.wire_steps(spec.parsed_steps()), "label": "a.y", "id": "id",
                  "saved": {uid: base64.b64encode(blob).decode()}})


def test_the_owners_policies_choose_the_binding_of_a_trained_model(sim: SimWorld, tmp_path: Path) -> None:
    first, later = two_builds(sim)
    signer_blob, _ = trained_blob(first, tmp_path / "s", ("signer", "signer"))
    assert scored_by(later, tmp_path / "s", signer_blob)["scores"] == ["score"]

    strict_blob, model = trained_blob(first, tmp_path / "m", ("signer", "measurement"))  # one owner asks
    assert model.kind == "logistic_regression"
    assert scored_by(first, tmp_path / "m1", strict_blob)["scores"] == ["score"]
    with pytest.raises(PolicyDenied, match="sealed for another enclave identity") as refused:
        scored_by(later, tmp_path / "m2", strict_blob)
    assert refused.value.step == "score"


def test_gramine_seals_to_mrenclave_or_mrsigner(tmp_path: Path, tee_evidence: Path) -> None:
    quote = (tee_evidence / "sgx/sgx_quote").read_bytes()
    collateral = FileCollateral(tee_evidence / "sgx/sgx_quote_collateral.json")
    roots = [gramine_tree(tmp_path / name, quote) for name in ("v1", "v2")]
    (roots[1] / "keys" / "_sgx_mrsigner").write_bytes((roots[0] / "keys" / "_sgx_mrsigner").read_bytes())
    builds = [GramineAttester(collateral, svn=3, root=root) for root in roots]  # one signer, two MRENCLAVEs
    stores = [SealedStore(g.seal_key, 3, measurement_key=g.measurement_seal_key) for g in builds]
    assert builds[0].seal_key(3) == builds[1].seal_key(3)
    assert builds[0].measurement_seal_key() != builds[1].measurement_seal_key()
    blob = stores[0].seal(saved.NAME, b"model", "measurement")
    assert stores[0].unseal(blob, saved.NAME) == b"model"
    with pytest.raises(Exception, match="another measurement"):
        stores[1].unseal(blob, saved.NAME)
    assert stores[1].unseal(stores[0].seal(saved.NAME, b"model"), saved.NAME) == b"model"
