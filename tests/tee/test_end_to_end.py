"""End to end on default_credit_hetero: two providers, one simulated enclave process.

The guest (label holder) and the host attest the enclave, upload over HPKE,
the enclave trains logistic regression and XGBoost, releases the model to the
guest only, and is destroyed. Parity: the released model's predictions equal
the same model trained in plaintext on the joined data with the same seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.crypto import pki
from sharedml.errors import PeerUnreachable, PolicyDenied
from sharedml.tee.attestation import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor, signer_id
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.manager import AuditLog, EnclaveManager, build_manifest
from sharedml.tee.provider import Provider

JOB = "credit-tee"
SEED = 42


def plaintext_oracle(guest: pd.DataFrame, host: pd.DataFrame, algorithm: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Join on id the obvious way, train the same model with the same seed, predict."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    g = guest.rename(columns={c: f"guest.{c}" for c in guest.columns if c != "id"})
    h = host.rename(columns={c: f"host.{c}" for c in host.columns if c != "id"})
    joined = g.merge(h, on="id").sort_values("id").reset_index(drop=True)
    y = joined.pop("guest.y").to_numpy()
    x = joined.drop(columns=["id"])
    idx = np.arange(len(y))
    train, _ = train_test_split(idx, test_size=0.3, random_state=SEED, stratify=y)
    train = np.sort(train)
    if algorithm == "logistic_regression":
        scaler = StandardScaler().fit(x.iloc[train])
        lr = LogisticRegression(max_iter=1000, random_state=SEED).fit(scaler.transform(x.iloc[train]), y[train])
        return x, lr.predict_proba(scaler.transform(x))[:, 1]
    import xgboost as xgb

    clf = xgb.XGBClassifier(n_estimators=30, max_depth=3, max_bin=32, learning_rate=0.3,
                            tree_method="hist", random_state=SEED)
    clf.fit(x.iloc[train], y[train])
    return x, clf.predict_proba(x)[:, 1]


@pytest.mark.slow
def test_two_providers_train_in_enclave_and_destroy(tmp_path: Path, shared_data: Path) -> None:
    vendor = SimVendor.create(tmp_path / "vendor")
    platform = vendor.provision("platform-1")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    signer = ec.generate_private_key(ec.SECP384R1())
    manifest = build_manifest(signer, svn=1)
    sid = signer_id(manifest.signer_public_key).hex()
    policy = Policy(signer=sid, product_id=1, min_svn=1, allow_simulation=True)
    pki_dir = tmp_path / "pki"
    pki.init_ca(pki_dir)
    for party in ("enclave", "platform", "guest", "host"):
        pki.issue(pki_dir, party)
    manager = EnclaveManager(tmp_path / "platform", platform, verifier=Verifier([backend]), tls_dir=pki_dir)
    handle = manager.create(JOB, manifest)
    with pytest.raises(PeerUnreachable):  # mutual TLS: a caller without a deployment certificate
        EnclaveClient(handle.address).status(timeout=5)
    manager.verify(handle, policy)

    guest_df = pd.read_csv(shared_data / "default_credit_hetero_guest.csv")
    host_df = pd.read_csv(shared_data / "default_credit_hetero_host.csv")
    guest = Provider("guest", manager.client(handle, "guest"), Verifier([backend]))
    host = Provider("host", manager.client(handle, "host"), Verifier([backend]))

    # The SDK refuses to send before it has verified the enclave itself.
    grant_g = guest.grant(JOB, list(guest_df.columns), model_to={"guest": guest.release_key}, signers=[sid])
    with pytest.raises(PolicyDenied):
        guest.upload(guest_df, grant_g)

    claims = guest.attest(policy)
    host.attest(policy)
    assert claims.simulated and claims.svn == 1
    grant_h = host.grant(JOB, list(host_df.columns), model_to={"guest": guest.release_key}, signers=[sid])

    sent: list[bytes] = []
    original = host.client.upload

    def recording_upload(upload_id, sealed_key, policy_bytes, size, chunks):  # type: ignore[no-untyped-def]
        def tap():  # type: ignore[no-untyped-def]
            for seq, last, ct in chunks:
                sent.append(ct)
                yield seq, last, ct
        return original(upload_id, sealed_key, policy_bytes, size, tap())

    host.client.upload = recording_upload  # type: ignore[method-assign]
    assert guest.upload(guest_df, grant_g)["rows"] == 30000
    assert host.upload(host_df, grant_h)["rows"] == 30000
    # What crossed the wire from the host holds none of its raw values.
    wire = b"".join(sent)
    for value in host_df.iloc[:50, 1:].to_numpy(dtype=np.float64).ravel():
        assert np.float64(value).tobytes() not in wire

    # Only sealed state ever reaches the enclave's working directory.
    raw_bytes = [np.float64(v).tobytes() for v in guest_df.iloc[:20, 2:].to_numpy(dtype=np.float64).ravel()]
    for algorithm in ("logistic_regression", "xgboost"):
        metrics = guest.client.train({"algorithm": algorithm, "label": "guest.y", "id": "id",
                                      "seed": SEED, "test_size": 0.3})
        model = guest.result()
        x, expected = plaintext_oracle(guest_df, host_df, algorithm)
        got = model.predict_proba(x)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert metrics["test_auc"] > 0.7  # the reference figures: 0.7135 (LR), 0.7757 (XGB)
        with pytest.raises(PolicyDenied):
            host.result(JOB)  # the owners named only the guest
    for path in handle.workdir.rglob("*"):
        content = path.read_bytes() if path.is_file() else b""
        assert b"guest.x0" not in content and not any(r in content for r in raw_bytes)

    with pytest.raises(PolicyDenied):
        host.client.destroy()  # only the platform operator's certificate may destroy
    pid = handle.process.pid
    receipt = manager.destroy(handle)
    assert receipt["files_removed"] == 2 and len(receipt["uploads"]) == 2  # the two sealed models
    events = [e["event"] for e in receipt["events"]]
    assert events.count("upload") == 2 and events.count("train") == 2 and events.count("release") == 2
    assert handle.process.poll() is not None and handle.quoting.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    leftovers = [p for p in handle.workdir.rglob("*") if p.is_file()] if handle.workdir.exists() else []
    assert leftovers == []
    assert AuditLog(tmp_path / "platform" / "audit.jsonl").verify() == 2
