"""A ``scheme: tee`` job through the platform: its scheduler, an enclave node, two providers.

Real parts: the platform's store (SQLite) and audit chain, the scheduler's
``submit`` (what ``POST /api/v1/jobs`` and the SDK call), a service enclave
process started by the enclave manager on the simulated TEE host, and two
providers that attest the job's enclave against their own policy and upload
over RA-TLS. The label holder opens the model and scores the platform relays
sealed; model, scores and metrics equal the plaintext oracle of
``test_job.py``; the destruction receipt is stored, verifies against the key
bundle the providers attested, and its digest is in the audit chain.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.tee.test_job import STEPS, oracle, oracle_scores

from sharedml.errors import ConfigError
from sharedml.learn import metrics as m
from sharedml.platform.scheduler import Scheduler
from sharedml.platform.service import Platform
from sharedml.platform.tee_jobs import TeeJobs
from sharedml.tee.attestation import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor, signer_id
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.manager import EnclaveManager, build_manifest
from sharedml.tee.model import ReleasedModel
from sharedml.tee.provider import Provider


def spec(shared_data: Path) -> dict[str, Any]:
    return {"name": "credit-tee", "scheme": "tee", "steps": STEPS, "parties": {
        "guest": {"dataset": str(shared_data / "default_credit_hetero_guest.csv"), "label": "y"},
        "host": {"dataset": str(shared_data / "default_credit_hetero_host.csv")}}}


@pytest.mark.slow
def test_tee_job_through_the_platform(tmp_path: Path, shared_data: Path) -> None:
    vendor = SimVendor.create(tmp_path / "vendor")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    manifest = build_manifest(ec.generate_private_key(ec.SECP384R1()), svn=1)
    policy = Policy(signer=signer_id(manifest.signer_public_key).hex(), product_id=1, min_svn=1,
                    allow_simulation=True)
    manager = EnclaveManager(tmp_path / "host", vendor.provision("tee-host-1"), verifier=Verifier([backend]))
    platform = Platform.open(tmp_path / "platform")
    scheduler = Scheduler.for_platform(platform)
    with pytest.raises(ConfigError, match="runs no scheme 'tee' jobs"):
        scheduler.submit(spec(shared_data))
    scheduler.tee = TeeJobs(scheduler.book, tmp_path / "platform" / "tee", Verifier([backend]), policy)
    node = manager.create(None, manifest)  # the enclave node: a service enclave
    providers: list[Provider] = []
    try:
        scheduler.tee.add_enclave("enclave-1", node.address, node.certificate)
        job_id = scheduler.submit(spec(shared_data), actor="alice")
        where = scheduler.tee.where(job_id)
        assert where["stage"] == "uploading"
        for name in ("guest", "host"):
            client = EnclaveClient(where["address"], server_certificate=where["certificate"].encode())
            providers.append(Provider(name, client.for_job(job_id), Verifier([backend])))
        guest, _host = providers
        release = {"guest": guest.release_key}  # the holder's key, given to the host out of band
        for p in providers:
            p.attest(policy)  # each against its own policy, binding the pinned TLS key
            path = Path(spec(shared_data)["parties"][p.name]["dataset"])
            columns = list(pd.read_csv(path, nrows=0).columns)
            p.upload(path, p.grant(job_id, columns, model_to=release, scores_to=release,
                                   signers=[policy.signer or ""]))
        job = wait(scheduler, platform, job_id)
        assert job.state == "succeeded", job.reason
    finally:
        for p in providers:
            p.client.close()
        manager.destroy(node)

    tr, te, y_tr, y_te = oracle(shared_data)
    for model, train_id, eval_id in (("logistic_regression", "train", "evaluate"),
                                     ("secureboost", "train2", "evaluate2")):
        expected = oracle_scores(model, tr, te, y_tr, job=job_id)
        sealed = scheduler.tee.released(job_id, "guest", "model", train_id)
        released = ReleasedModel.from_bytes(guest.open_release(sealed, job_id))
        np.testing.assert_allclose(released.predict(te), expected, rtol=0, atol=1e-12)
        scores = pd.read_parquet(io.BytesIO(guest.open_release(
            scheduler.tee.released(job_id, "guest", "scores", eval_id), job_id, "scores")))
        np.testing.assert_allclose(scores["score"], expected, rtol=0, atol=1e-12)
        reported = job.result["steps"][eval_id]["enclave"]["metrics"]
        for name, value in m.evaluate(y_te, expected, "classification").items():
            assert reported[name] == pytest.approx(value, abs=1e-6), name
    with pytest.raises(ConfigError):  # the host was named for nothing
        scheduler.tee.released(job_id, "host", "model", "train")
    assert guest.bundle is not None
    body = verify_receipt(scheduler.tee.receipt(job_id), guest.bundle)
    assert body["job"] == job_id and body["keys"] == "dropped"
    with platform.store.session() as s:
        from sqlalchemy import select

        from sharedml.platform.store.models import AuditEntry

        actions = {e.action: e for e in s.scalars(select(AuditEntry).where(AuditEntry.target == job_id))}
    assert json.loads(actions["tee.destroy"].detail)["receipt_sha256"] == scheduler.tee.receipt(job_id)["sha256"]
    assert "job.submit" in actions
    assert platform.audit.verify().ok


def wait(scheduler: Scheduler, platform: Platform, job_id: str, limit: float = 600.0) -> Any:
    from sharedml.platform.store.models import Job

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        scheduler.tick()
        with platform.store.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            if job.state in ("succeeded", "failed", "canceled"):
                s.expunge(job)
                return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {limit} s")


@pytest.mark.slow
def test_tee_routes_and_provider_keys(tmp_path: Path, shared_data: Path) -> None:
    """The REST face: an admin registers the enclave node (attested), a provider asks where to
    upload, only the label holder's users fetch its sealed release, anyone may read the receipt;
    the provider's keys as ``sharedml tee provider keygen`` keeps them open the release."""
    from tests.platform.platform_world import make_world
    from tests.tee.test_cli import app as cli_app
    from typer.testing import CliRunner

    from sharedml.tee.provider_cli import OwnerKeys

    keys = tmp_path / "keys"
    out = CliRunner().invoke(cli_app(), ["tee", "provider", "keygen", "--party", "bank", "--keys", str(keys)])
    assert out.exit_code == 0, out.output
    assert (keys / "bank.release").stat().st_mode & 0o077 == 0
    world = make_world(tmp_path / "platform")
    vendor = SimVendor.create(tmp_path / "vendor")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    manifest = build_manifest(ec.generate_private_key(ec.SECP384R1()), svn=1)
    policy = Policy(signer=signer_id(manifest.signer_public_key).hex(), product_id=1, min_svn=1,
                    allow_simulation=True)
    scheduler = world.app.state.scheduler
    scheduler.tee = TeeJobs(scheduler.book, tmp_path / "tee", Verifier([backend]), policy)
    manager = EnclaveManager(tmp_path / "host", vendor.provision("tee-host-1"), verifier=Verifier([backend]))
    node = manager.create(None, manifest)
    try:
        body = {"name": "enclave-1", "address": node.address, "certificate": node.certificate.decode()}
        assert world.call("analyst", "POST", "/api/v1/tee/enclaves", json=body).status_code == 403
        r = world.call("admin", "POST", "/api/v1/tee/enclaves", json=body)
        assert r.status_code == 200 and r.json()["measurement"], r.text
        data = {"bank": "breast_hetero_guest.csv", "shop": "breast_hetero_host.csv"}
        job_id = scheduler.submit({"name": "breast-tee", "scheme": "tee", "parties": {
            "bank": {"dataset": data["bank"], "label": "y"}, "shop": {"dataset": data["shop"]}}, "steps": [
            {"psi": {}}, {"split": {"seed": 1}}, {"train": {"model": "secureboost", "n_estimators": 3}}]})
        where = world.call("admin", "GET", f"/api/v1/tee/jobs/{job_id}").json()
        assert where["address"] == node.address and where["stage"] == "uploading"
        bank = OwnerKeys(keys, "bank").provider(EnclaveClient(
            where["address"], server_certificate=where["certificate"].encode()).for_job(job_id), Verifier([backend]))
        shop = Provider("shop", bank.client, Verifier([backend]))
        for p in (bank, shop):
            p.attest(policy)
            frame = pd.read_csv(shared_data / data[p.name])
            p.upload(frame, p.grant(job_id, list(frame.columns), model_to={"bank": bank.release_key},
                                    signers=[policy.signer or ""]))
        job = wait(scheduler, world.platform, job_id)
        assert job.state == "succeeded", job.reason
        from sharedml.sdk import Client

        sdk = Client("http://testserver", world.tokens["admin"], transport=world.client._transport)
        sealed = sdk.tee_released(job_id, "model", "train")  # the admin acts for bank
        model = ReleasedModel.from_bytes(bank.open_release(sealed, job_id))
        assert model.kind == "xgboost"
        world.add_user("shop-admin", "admin", party="shop")
        assert world.login("shop-admin").status_code == 200
        other = world.call("shop-admin", "GET", f"/api/v1/tee/jobs/{job_id}/released/model/train")
        assert other.status_code >= 400 and "released to 'shop'" in other.text
        assert world.call("analyst", "GET", f"/api/v1/tee/jobs/{job_id}").status_code == 403  # not its job
        receipt = sdk.tee_receipt(job_id)
        assert bank.bundle is not None and verify_receipt(receipt, bank.bundle)["job"] == job_id
        bank.client.close()
        # a canceled job is destroyed in its enclave too (its uploads must not outlive it, 9.4-7)
        canceled = scheduler.submit({"name": "to-cancel", "scheme": "tee", "parties": {
            "bank": {"dataset": data["bank"], "label": "y"}, "shop": {"dataset": data["shop"]}},
            "steps": [{"psi": {}}, {"train": {"model": "secureboost", "n_estimators": 2}}]})
        assert scheduler.tee.where(canceled)["stage"] == "uploading"
        scheduler.cancel(canceled, by="admin")
        scheduler.tick()
        assert scheduler.tee.where(canceled)["stage"] == "finished"
        assert json.loads(scheduler.tee.receipt(canceled)["receipt"])["job"] == canceled
    finally:
        manager.destroy(node)
