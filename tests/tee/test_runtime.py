"""The enclave state machine and data authorisation, in process (no gRPC).

The provider side is driven by hand here so each refusal can be provoked.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.tee.conftest import SimWorld

from sharedml.errors import PolicyDenied, ProtocolAbort
from sharedml.tee.attestation import report_data_for
from sharedml.tee.attestation.simqe import LocalSimAttester
from sharedml.tee.authz import DataPolicy, SignedPolicy, release_parties
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.envelope import (
    ChunkSealer,
    EnclaveKeys,
    KeyBundle,
    data_key,
    release_info,
    upload_info,
)
from sharedml.tee.model import ReleasedModel
from sharedml.tee.provider import chunked
from sharedml.tee.ratls import key_binding

JOB = "job-1"


def frames(rng: np.random.Generator, n: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(int)
    ids = rng.permutation(n)
    a = pd.DataFrame({"id": ids, "y": y, "a0": x[:, 0], "a1": x[:, 1]})
    b = pd.DataFrame({"id": ids, "b0": x[:, 2], "b1": x[:, 3]}).sample(frac=1.0, random_state=1)
    return a, b


def grant(owner: str, key: ed25519.Ed25519PrivateKey, columns: list[str], **kw: object) -> SignedPolicy:
    base: dict[str, object] = {
        "owner": owner, "job": JOB, "algorithms": ("logistic_regression",), "columns": tuple(columns),
        "expires_at": int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp()),
    }
    base.update(kw)
    return DataPolicy(**base).sign(key)  # type: ignore[arg-type]


def send(enclave: Enclave, frame: pd.DataFrame, policy: SignedPolicy, chunk: int = 512) -> dict[str, object]:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    key, uid = data_key(), secrets.token_hex(8)
    sealed = enclave.bundle.seal(key, upload_info(JOB, uid, policy.digest))
    enclave.begin_upload(uid, sealed, policy.to_bytes(), len(buf.getvalue()))
    for seq, last, ct in chunked(buf.getvalue(), ChunkSealer(key, uid.encode()), chunk):
        enclave.upload_chunk(uid, seq, last, ct)
    return enclave.finish_upload(uid)


@pytest.fixture
def enclave(sim: SimWorld, tmp_path: Path) -> Enclave:
    e = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "work", job=JOB)
    e.attest(secrets.token_bytes(32))
    return e


def test_out_of_order_calls_are_refused(sim: SimWorld, tmp_path: Path) -> None:
    e = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "w", job=JOB)
    with pytest.raises(ProtocolAbort):
        e.begin_upload("u1", b"", b"{}", 10)  # upload before attest
    with pytest.raises(ProtocolAbort):
        e.train({"algorithm": "logistic_regression", "label": "a.y"})
    with pytest.raises(ProtocolAbort):
        e.release("a")
    e.destroy()
    with pytest.raises(ProtocolAbort):
        e.attest(b"n" * 32)


def test_evidence_binds_the_enclave_bundle(sim: SimWorld, enclave: Enclave) -> None:
    verifier = sim.verifier()
    nonce = verifier.challenge()
    evidence = enclave.attest(nonce)
    binding = key_binding(b"", enclave.bundle.to_bytes())  # in process: no TLS key to bind
    verifier.verify(evidence, sim.policy(), nonce=nonce, public_key=binding)


def test_train_release_destroy(enclave: Enclave, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = frames(rng)
    ka, kb = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    recipient = EnclaveKeys(signing=False)
    to = {"a": recipient.bundle.to_bytes().hex()}
    assert send(enclave, a, grant("a", ka, list(a.columns), model_to=to))["rows"] == 300
    send(enclave, b, grant("b", kb, list(b.columns), model_to={**to, "b": "00"}))
    metrics = enclave.train({"algorithm": "logistic_regression", "label": "a.y", "seed": 3})
    assert metrics["train_auc"] > 0.9
    model = ReleasedModel.from_bytes(recipient.open(enclave.release("a"), release_info(JOB, "a")))
    assert model.features == ["a.a0", "a.a1", "b.b0", "b.b1"]
    with pytest.raises(PolicyDenied):
        enclave.release("b")  # only owner b named b
    bundle = KeyBundle.from_bytes(enclave.bundle.to_bytes())
    body = verify_receipt(enclave.destroy(), bundle)
    assert not (tmp_path / "work").exists() and len(body["uploads"]) == 2
    assert enclave.state == "destroyed"


def test_algorithm_not_allowed(enclave: Enclave) -> None:
    a, _ = frames(np.random.default_rng(1))
    send(enclave, a, grant("a", ed25519.Ed25519PrivateKey.generate(), list(a.columns)))
    with pytest.raises(PolicyDenied):
        enclave.train({"algorithm": "xgboost", "label": "a.y"})


def test_column_not_allowed(enclave: Enclave) -> None:
    a, _ = frames(np.random.default_rng(1))
    with pytest.raises(PolicyDenied):
        send(enclave, a, grant("a", ed25519.Ed25519PrivateKey.generate(), ["id", "y", "a0"]))


def test_expired_wrong_job_and_forged_policies(enclave: Enclave) -> None:
    a, _ = frames(np.random.default_rng(1))
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(PolicyDenied):
        send(enclave, a, grant("a", key, list(a.columns), expires_at=int(dt.datetime.now(dt.UTC).timestamp()) - 1))
    with pytest.raises(PolicyDenied):
        send(enclave, a, grant("a", key, list(a.columns), job="other-job"))
    good = grant("a", key, list(a.columns))
    widened = DataPolicy.from_bytes(good.body)
    forged = SignedPolicy(
        DataPolicy(**{**widened.__dict__, "algorithms": ("xgboost",)}).to_bytes(), good.signature, good.owner_public_key
    )
    with pytest.raises(PolicyDenied):
        send(enclave, a, forged)


def test_policy_pinned_owner_keys(sim: SimWorld, tmp_path: Path) -> None:
    owner = ed25519.Ed25519PrivateKey.generate()
    e = Enclave(LocalSimAttester(sim.quoter()), tmp_path / "w", job=JOB, owners={"a": b"\0" * 32})
    e.attest(b"n" * 32)
    a, _ = frames(np.random.default_rng(1))
    with pytest.raises(PolicyDenied):
        send(e, a, grant("a", owner, list(a.columns)))


def test_data_key_sealed_for_another_policy_does_not_open(enclave: Enclave) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    p1, p2 = grant("a", key, ["id"]), grant("a", key, ["id", "y"])
    sealed = enclave.bundle.seal(data_key(), upload_info(JOB, "u1", p1.digest))
    with pytest.raises(ProtocolAbort):
        enclave.begin_upload("u1", sealed, p2.to_bytes(), 10)  # the platform swapped the policy


def test_truncated_upload_is_refused(enclave: Enclave) -> None:
    policy = grant("a", ed25519.Ed25519PrivateKey.generate(), ["id"])
    key = data_key()
    enclave.begin_upload("u9", enclave.bundle.seal(key, upload_info(JOB, "u9", policy.digest)), policy.to_bytes(), 8)
    enclave.upload_chunk("u9", 0, False, ChunkSealer(key, b"u9").seal(b"PAR1", False))
    with pytest.raises(ProtocolAbort):
        enclave.finish_upload("u9")  # no final chunk


def test_upload_longer_or_shorter_than_declared_is_refused(enclave: Enclave) -> None:
    policy = grant("a", ed25519.Ed25519PrivateKey.generate(), ["id"])
    for uid, size in (("u7", 2), ("u8", 100)):
        key = data_key()
        enclave.begin_upload(uid, enclave.bundle.seal(key, upload_info(JOB, uid, policy.digest)), policy.to_bytes(), size)
        with pytest.raises(ProtocolAbort):
            enclave.upload_chunk(uid, 0, True, ChunkSealer(key, uid.encode()).seal(b"PAR1", True))
            enclave.finish_upload(uid)


def test_release_parties_is_the_intersection() -> None:
    base = {"owner": "x", "job": JOB, "algorithms": (), "columns": (), "expires_at": 0}
    p1 = DataPolicy(**base, model_to={"a": "k1", "b": "k2"})  # type: ignore[arg-type]
    p2 = DataPolicy(**base, model_to={"a": "k1", "b": "other"})  # type: ignore[arg-type]
    assert release_parties([p1, p2]) == {"a": "k1"}


def test_binding_helper_is_length_prefixed() -> None:
    assert report_data_for(b"ab", b"c") != report_data_for(b"a", b"bc")


def test_metrics_withheld_unless_every_owner_allows(enclave: Enclave) -> None:
    a, b = frames(np.random.default_rng(2))
    send(enclave, a, grant("a", ed25519.Ed25519PrivateKey.generate(), list(a.columns)))
    send(enclave, b, grant("b", ed25519.Ed25519PrivateKey.generate(), list(b.columns), metrics=False))
    assert enclave.train({"algorithm": "logistic_regression", "label": "a.y"}) == {}


def test_destroy_wipes_the_uploaded_tables(enclave: Enclave) -> None:
    a, _ = frames(np.random.default_rng(4))
    send(enclave, a, grant("a", ed25519.Ed25519PrivateKey.generate(), list(a.columns)))
    table = next(iter(enclave._uploads.values())).frame
    assert table is not None and table["a0"].abs().sum() > 0
    enclave.destroy()
    assert table["a0"].abs().sum() == 0 and table["id"].sum() == 0
