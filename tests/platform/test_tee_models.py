"""The platform's registry side of TEE models (issue #17): registered sealed, resolved, checked at submit.

Real parts: the platform's store (SQLite) and audit chain, its model registry
(the table MPC versions use), a blob sealed with real AES-GCM
(:class:`~sharedml.tee.enclave.sealing.SealedStore`), the scheduler's
``submit``. No enclave runs here: scoring through an enclave node is
``tests/tee/test_platform_deployment.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from platform_world import World, make_world

from sharedml.errors import ConfigError
from sharedml.platform.scheduler import Scheduler
from sharedml.platform.store.models import Job, Task
from sharedml.platform.tee_jobs import TeeJobs
from sharedml.tee.attestation import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.model import ReleasedModel

PARTIES = {"guest": {"dataset": "guest_data", "label": "y"}, "host": {"dataset": "host_data"}}
MODEL = ReleasedModel("logistic_regression", ["guest.x", "host.z"],
                      {"mean": [0.0, 1.0], "scale": [1.0, 2.0], "coef": [0.123456789, -2.5], "intercept": 0.25})


def tee_jobs(w: World, tmp_path: Path) -> TeeJobs:
    vendor = SimVendor.create(tmp_path / "vendor")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    scheduler = Scheduler.for_platform(w.platform)
    scheduler.tee = TeeJobs(scheduler.book, tmp_path / "tee", Verifier([backend]),
                            Policy(signer="00" * 32, product_id=1, min_svn=1, allow_simulation=True),
                            registry=w.platform.registry)
    return scheduler.tee


def trained(w: World, tee: TeeJobs, name: str = "credit-tee",
            parties: dict[str, dict[str, str]] = PARTIES) -> dict[str, Any]:
    """A finished ``scheme: tee`` job of the analyst's whose train step's model the enclave sealed."""
    blob = SealedStore(lambda svn: bytes(32), 1).seal(saved.NAME, MODEL.to_bytes())
    now = w.clock.now()
    with w.platform.store.session() as s:
        job = Job(name=name, scheme="tee", created_by=w.ids["analyst"], created_at=now, updated_at=now,
                  spec=json.dumps({"name": name, "scheme": "tee", "parties": parties,
                                   "steps": [{"psi": {}}, {"train": {"model": "logistic_regression"}}]}))
        s.add(job)
        s.flush()
        kept = tee.shelf.keep({"train": base64.b64encode(blob).decode()}, {"train": {"auc": 0.75}})
        (row,) = w.platform.registry.record_sealed(s, job, kept)
        return {"uid": row.uid, "blob": blob, "job": job.id}


def score_spec(ref: str, scheme: str = "tee") -> dict[str, Any]:
    return {"name": "score", "scheme": scheme, "parties": PARTIES,
            "steps": [{"id": "score", "predict": {"model": ref}}]}


def test_a_tee_version_is_registered_sealed_and_resolves_for_a_tee_job(tmp_path: Path) -> None:
    w = make_world(tmp_path / "platform")
    tee = tee_jobs(w, tmp_path)
    got = trained(w, tee)
    analyst = w.platform.auth.authenticate(w.tokens["analyst"])

    row = w.platform.registry.get(analyst, "credit-tee@1")
    assert row.uid == got["uid"] and row.parties == ["guest", "host"]  # whose owners consent to deleting it
    assert row.fingerprints == {"enclave": hashlib.sha256(got["blob"]).hexdigest()}
    assert row.metrics == {"enclave": {"auc": 0.75}} and row.created_by == "analyst"
    kept = tee.shelf.path(row.uid).read_bytes()
    assert kept == got["blob"] and b"0.123456789" not in kept and b"coef" not in kept  # sealed, not clear
    assert (tee.shelf.path(row.uid).stat().st_mode & 0o777) == 0o600
    w.platform.registry.tag(analyst, "credit-tee@1", "production")  # as an MPC version's author tags it
    assert w.platform.registry.aliases(row.uid) == ["production"]
    audit = [(e.action, e.target) for e in w.platform.audit.query(action="model.", limit=50)]
    assert ("model.register", "credit-tee@1") in audit and ("model.tag", "credit-tee@production") in audit

    spec = w.platform.registry.resolve_spec(analyst, score_spec("credit-tee@production"))
    assert spec["steps"][0]["predict"] == {"model": row.uid, "fingerprints": dict(row.fingerprints)}
    job_id = tee.submit(spec, created_by=w.ids["analyst"])  # no enclave node: it waits to be placed
    assert tee.where(job_id)["stage"] == "scheduling"


def test_submit_refuses_what_an_enclave_cannot_score(tmp_path: Path) -> None:
    w = make_world(tmp_path / "platform")
    tee = tee_jobs(w, tmp_path)
    analyst = w.platform.auth.authenticate(w.tokens["analyst"])
    got = trained(w, tee)
    with pytest.raises(ConfigError, match="trained by a scheme: tee job; a scheme: mpc job cannot score it"):
        w.platform.registry.resolve_spec(analyst, score_spec("credit-tee@1", scheme="mpc"))

    mpc_uid = "ab" * 16
    with w.platform.store.session() as s:  # a version an MPC job registered: one part per party
        job = s.get(Job, got["job"])
        tasks = [Task(job_id=job.id, party=p, step_id="train", component="train", created_at=w.clock.now(),
                      metrics={"model_uid": mpc_uid, "fingerprint": f"sha256:{p}"}) for p in PARTIES]
        w.platform.registry.record_job(s, job, tasks)
    with pytest.raises(ConfigError, match="trained by a scheme: mpc job; a scheme: tee job cannot score it") as no:
        w.platform.registry.resolve_spec(analyst, score_spec("credit-tee@2"))
    assert no.value.step == "steps[0]"
    with pytest.raises(ConfigError, match="trained by a scheme: mpc job") as no:  # resolved around the API
        tee.submit(score_spec(mpc_uid) | {"steps": [{"id": "s", "predict": {
            "model": mpc_uid, "fingerprints": {"guest": "sha256:guest", "host": "sha256:host"}}}]})
    assert no.value.step == "s"
    with pytest.raises(ConfigError, match="is not resolved from the registry"):
        tee.submit(score_spec("credit-tee@1"))  # the scheduler's own submit: no registry lookup
    tee.shelf.path(got["uid"]).unlink()
    with pytest.raises(ConfigError, match="is not kept by this platform"):
        tee.submit(w.platform.registry.resolve_spec(analyst, score_spec("credit-tee@1")))


def test_deleting_a_tee_version_drops_its_sealed_blob(tmp_path: Path) -> None:
    w = make_world(tmp_path / "platform")
    tee = tee_jobs(w, tmp_path)
    w.platform.registry.sealed = tee.shelf  # as the app wires it when the platform runs TEE jobs
    owner = w.platform.auth.authenticate(w.tokens["data_owner"])
    w.platform.datasets.register(owner, owner_party="bank", name="bank_tee", columns=[])
    got = trained(w, tee, parties={"bank": {"dataset": "bank_tee", "label": "y"}})
    assert tee.shelf.path(got["uid"]).exists()
    done = w.platform.registry.consent_delete(owner, "credit-tee@1")  # the one owner of its one party
    assert done["deleted"] and not tee.shelf.path(got["uid"]).exists()
