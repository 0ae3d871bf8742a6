"""TEE jobs on a deployment as ``sharedml up --tee`` lays it out: real processes, nothing built by hand.

``sharedml platform serve --config platform.yaml`` (its ``tee:`` section: the
simulated vendor's roots and the build policy) and ``sharedml node`` with
``role: enclave`` (it starts a service enclave on the simulated TEE host) run
as separate processes on loopback; the providers are the parties' owners,
with their own API tokens. Shown here: the enclave node registers like every
node (in the database, listed with its role), the platform attests it and
places the job on it, the job survives a platform restart (its stage, enclave
and attested key bundle are in the store), a killed enclave costs the job an
attempt and the job is dispatched again to the enclave its node starts anew,
and the released model equals the plaintext oracle of ``test_job.py``
(predictions within 1e-12). Then (issue #17) a model trained on the first 70%
of ids is registered sealed and a second job scores the other 30% from
``NAME@production`` to the label holder only, equal to the released model and
the oracle within 1e-12; an MPC version, a swapped blob and another enclave
identity's blob are refused. The enclave node's enclave serves mutual TLS:
every caller here presents a deployment certificate, and one without (or
with another CA's) is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.tee.test_job import SEED, oracle_scores
from typer.testing import CliRunner

from sharedml.crypto.pki import init_ca, issue
from sharedml.errors import PeerUnreachable, PolicyDenied, SharedMLError
from sharedml.modelpart.cli import model_app
from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import ModelVersion
from sharedml.sdk import Client
from sharedml.tee.attestation import Policy
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.saved import NAME
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.enclave.service import peer_verifier
from sharedml.tee.enclave.wipe import verify_receipt
from sharedml.tee.model import ReleasedModel
from sharedml.tee.provider import Provider
from sharedml.tee.ratls import fetch_certificate

STEPS: list[dict[str, Any]] = [
    {"psi": {"key": "id"}},
    {"split": {"test_size": 0.3, "seed": SEED}},
    {"train": {"model": "logistic_regression", "epochs": 3}},
    {"evaluate": {}},
]
DATA = "breast_hetero"  # 569 rows: the test is about the deployment, test_job.py about the learners


def breast_oracle(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Joined on id and split as the spec says (scikit-learn): (train, test with ids, y_train)."""
    return split_oracle(_joined(pd.read_csv(shared_data / f"{DATA}_guest.csv"),
                                pd.read_csv(shared_data / f"{DATA}_host.csv")))


def split_oracle(joined: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    from sklearn.model_selection import train_test_split

    y = joined.pop("guest.y").to_numpy()
    train, test = (np.sort(i) for i in train_test_split(np.arange(len(y)), test_size=0.3, random_state=SEED,
                                                         stratify=y))
    x = joined.drop(columns=["id"])
    return x.iloc[train].reset_index(drop=True), joined.iloc[test].reset_index(drop=True), y[train]


def _joined(guest: pd.DataFrame, host: pd.DataFrame) -> pd.DataFrame:
    g, h = guest.add_prefix("guest."), host.add_prefix("host.")
    joined = g.merge(h, left_on="guest.id", right_on="host.id").sort_values("guest.id")
    return joined.rename(columns={"guest.id": "id"}).drop(columns=["host.id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[LocalDeployment]:
    """The platform and the enclave node of an ``up --tee`` deployment (the parties' nodes are not
    needed: TEE providers upload from their own hosts)."""
    root = tmp_path_factory.mktemp("up-tee")
    files = {p: shared_data / f"{DATA}_{p}.csv" for p in ("guest", "host")}
    prepare(root, DeploymentSpec({p: {f"{p}_data": f} for p, f in files.items()}, dealer=False, tee=True,
                                 heartbeat_s=0.2, max_attempts=3))
    cluster = LocalDeployment(root)
    try:
        cluster.start_platform()
        cluster.wait_platform()
        cluster.start_node("enclave")
        yield cluster
    finally:
        cluster.stop()


def until(what: str, check: Callable[[], Any], limit: float = 120.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            got = check()
        except PeerUnreachable:  # the platform is (re)starting
            got = None
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {limit} s")


def enclave_node(admin: Client) -> dict[str, Any] | None:
    return next((n for n in admin.nodes() if n["id"] == "enclave" and n["status"] == "online"), None)


def provider(cluster: LocalDeployment, party: str, where: dict[str, Any]) -> tuple[Provider, Policy]:
    """A party's owner as a TEE provider: its policy file, the simulated vendor's roots, the pinned cert."""
    raw = json.loads((cluster.root / "tee" / "policy.json").read_text())
    verifier = peer_verifier(raw.pop("trust"))
    client = EnclaveClient(where["address"], server_certificate=where["certificate"].encode(),
                           tls_dir=cluster.root / "pki", tls_name=party)  # the enclave node requires it
    return Provider(party, client.for_job(where["job"]), verifier), Policy(**raw)


def upload(cluster: LocalDeployment, where: dict[str, Any], parties: list[str], holder: Provider | None,
           shared_data: Path) -> Provider:
    """Each party attests the job's enclave against its policy and uploads its table; returns the holder."""
    for party in parties:
        p, policy = provider(cluster, party, where)
        holder = holder or p
        claims = p.attest(policy)
        table = pd.read_csv(shared_data / f"{DATA}_{party}.csv")
        p.upload(table, p.grant(where["job"], list(table.columns), measurements=[claims.measurement],
                                model_to={"guest": holder.release_key}))
        if p is not holder:
            p.client.close()
    assert holder is not None
    return holder


def enclave_pid(cluster: LocalDeployment) -> int:
    """The enclave process the enclave node started last (its manager's audit log names the pid)."""
    log = cluster.root / "nodes" / "enclave" / "work" / "enclaves" / "audit.jsonl"
    created = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "enclave.create"]
    return int(created[-1]["pid"])


@pytest.mark.slow
def test_tee_job_on_an_up_deployment(deployment: LocalDeployment, shared_data: Path) -> None:
    cluster = deployment
    with cluster.client("admin") as admin:
        node = until("the enclave node registers", lambda: enclave_node(admin))
    assert node["role"] == "enclave"
    spec = {"name": "breast-tee", "scheme": "tee", "steps": STEPS, "parties": {
        "guest": {"dataset": "guest_data", "label": "y"}, "host": {"dataset": "host_data"}}}
    with cluster.client("analyst") as analyst:
        job_id = analyst.submit(spec)["id"]
    with cluster.client("guest-owner") as owner:  # the providers ask with their own accounts
        where = until("the job is placed", lambda: _placed(owner, job_id, attempt=0))
    assert where["address"] == node["address"]

    holder = upload(cluster, where, ["guest"], None, shared_data)
    holder.client.close()
    cluster.kill("platform")  # a platform restart: the job's stage, enclave and bundle are in the store
    cluster.start_platform()
    cluster.wait_platform()
    with cluster.client("host-owner") as owner:
        again = until("the job is still placed", lambda: _placed(owner, job_id, attempt=0))
    assert again["address"] == where["address"]
    with cluster.client("admin") as admin:
        assert until("the enclave node is back online", lambda: enclave_node(admin))["address"] == where["address"]

    os.kill(enclave_pid(cluster), signal.SIGKILL)  # the enclave dies with one upload in
    with cluster.client("guest-owner") as owner:
        moved = until("the job is dispatched again", lambda: _placed(owner, job_id, attempt=1), limit=180)
    assert moved["address"] != where["address"]
    holder = upload(cluster, moved, ["guest", "host"], None, shared_data)
    with cluster.client("analyst") as analyst:
        job = analyst.wait(job_id, timeout=300)
    assert job["state"] == "succeeded", job["reason"]
    with cluster.client("guest-owner") as owner:  # the label holder's owner fetches its release
        sealed = owner.tee_released(job_id, "model", "train")
        receipt = owner.tee_receipt(job_id)
    holder.client.close()

    tr, te, y_tr = breast_oracle(shared_data)
    expected = oracle_scores("logistic_regression", tr, te, y_tr, job=job_id)
    released = ReleasedModel.from_bytes(holder.open_release(sealed, job_id))
    np.testing.assert_allclose(released.predict(te), expected, rtol=0, atol=1e-12)
    assert holder.bundle is not None and verify_receipt(receipt, holder.bundle)["job"] == job_id
    with cluster.client("admin") as admin:
        actions = [e["action"] for e in admin.audit(limit=1000) if e["target"] == job_id]
    assert actions.count("tee.dispatch") == 2 and "job.retry" in actions and "tee.destroy" in actions


def _placed(owner: Client, job_id: str, attempt: int) -> dict[str, Any] | None:
    where = owner.tee_enclave(job_id)
    return where if where["stage"] == "uploading" and where["attempt"] == attempt else None


def rows(shared_data: Path, party: str, part: str) -> pd.DataFrame:
    """The party's rows among the first 70% of ids (``train``) or the other 30% (``score``, no label)."""
    table = pd.read_csv(shared_data / f"{DATA}_{party}.csv")
    ids = np.sort(pd.read_csv(shared_data / f"{DATA}_guest.csv")["id"].to_numpy())
    first = table["id"] < ids[int(0.7 * len(ids))]
    return table[first] if part == "train" else table[~first].drop(columns=["y"], errors="ignore")


def run_tee(cluster: LocalDeployment, spec: dict[str, Any], tables: dict[str, pd.DataFrame],
            release: str) -> tuple[str, dict[str, Any], Provider]:
    """Submit as the analyst; each party attests and uploads ``tables`` granting ``release`` (model or
    scores) to the guest; the finished job and the guest's provider."""
    with cluster.client("analyst") as analyst:
        job_id = analyst.submit(spec)["id"]
    with cluster.client("guest-owner") as owner:
        where = until("the job is placed", lambda: _placed(owner, job_id, attempt=0))
    holder: Provider | None = None
    for party, table in tables.items():
        p, policy = provider(cluster, party, where)
        holder = holder or p
        claims = p.attest(policy)
        p.upload(table, p.grant(job_id, list(table.columns), measurements=[claims.measurement],
                                **{f"{release}_to": {"guest": holder.release_key}}))
        p.client.close()
    with cluster.client("analyst") as analyst:
        job = analyst.wait(job_id, timeout=300)
    assert holder is not None
    return job_id, job, holder


@pytest.mark.slow
def test_a_registered_tee_model_scores_new_rows_through_the_platform(deployment: LocalDeployment,
                                                                     shared_data: Path) -> None:
    """Issue #17: a platform TEE job registers its model sealed; a second job scores the other 30% of
    ids from NAME@production inside the enclave, to the label holder only; an MPC version, a swapped
    blob and a blob of another enclave identity are refused naming the step."""
    cluster = deployment
    with cluster.client("admin") as admin:
        until("the enclave node is online", lambda: enclave_node(admin))
    parties = {"guest": {"dataset": "guest_data", "label": "y"}, "host": {"dataset": "host_data"}}
    train = {"name": "breast-saved", "scheme": "tee", "parties": parties,
             "steps": STEPS[:3]}  # psi, split, train: on the first 70% of ids
    train_id, job, holder = run_tee(cluster, train, {p: rows(shared_data, p, "train") for p in parties}, "model")
    assert job["state"] == "succeeded", job["reason"]
    with cluster.client("guest-owner") as owner:
        model = ReleasedModel.from_bytes(holder.open_release(owner.tee_released(train_id, "model", "train"),
                                                             train_id))

    with cluster.client("analyst") as analyst:  # registered as MPC versions are
        (version,) = analyst.model_versions("breast-saved")
    as_analyst = ["--url", cluster.info["url"], "--token", cluster.tokens()["analyst"], "--ca", cluster.info["ca"]]
    tagged = CliRunner().invoke(model_app, ["tag", "breast-saved@1", "production", *as_analyst])
    assert tagged.exit_code == 0, tagged.output  # by its author, with the CLI MPC versions use
    shown = CliRunner().invoke(model_app, ["show", "breast-saved@production", *as_analyst])
    assert shown.exit_code == 0 and json.loads(shown.output)["uid"] == version["uid"], shown.output
    blob_path = cluster.root / "platform" / "tee" / "models" / f"{version['uid']}.sealed"
    blob = blob_path.read_bytes()
    assert version["job_id"] == train_id and version["parties"] == ["guest", "host"]
    assert version["fingerprints"] == {"enclave": hashlib.sha256(blob).hexdigest()}
    assert version["created_by"] == "analyst" and version["spec_hash"].startswith("sha256:")
    assert json.dumps(model.params["coef"][0]).encode() not in blob  # sealed: no parameter in clear

    score = {"name": "breast-score", "scheme": "tee", "parties": parties,
             "steps": [{"id": "score", "predict": {"model": "breast-saved@production"}}]}
    new = {p: rows(shared_data, p, "score") for p in parties}
    score_id, job, holder = run_tee(cluster, score, new, "scores")
    assert job["state"] == "succeeded", job["reason"]
    with cluster.client("guest-owner") as owner:
        got = pd.read_parquet(io.BytesIO(holder.open_release(owner.tee_released(score_id, "scores", "score"),
                                                             score_id, "scores")))
    with cluster.client("host-owner") as owner, pytest.raises(SharedMLError, match="no scores of step"):
        owner.tee_released(score_id, "scores", "score")  # scores go to the label holder only
    joined = _joined(new["guest"], new["host"])
    assert got["id"].tolist() == joined["id"].tolist() and len(got) == len(joined) > 100
    np.testing.assert_allclose(got["score"].to_numpy(), model.predict(joined), rtol=0, atol=1e-12)
    tr, _, y = split_oracle(_joined(rows(shared_data, "guest", "train"), rows(shared_data, "host", "train")))
    expected = oracle_scores("logistic_regression", tr, joined, y, job=train_id)
    np.testing.assert_allclose(got["score"].to_numpy(), expected, rtol=0, atol=1e-12)  # the plaintext model
    with cluster.client("analyst") as analyst:
        assert [v["version"] for v in analyst.model_versions("breast-saved")] == [1]  # scoring trains nothing

    refused_cases(cluster, train_id, version, blob_path, model, score, new)


def refused_cases(cluster: LocalDeployment, train_id: str, version: dict[str, Any], blob_path: Path,
                  model: ReleasedModel, score: dict[str, Any], new: dict[str, pd.DataFrame]) -> None:
    """An MPC version (at submit), a swapped blob and another enclave identity's blob (in the enclave)."""
    store = Store(sqlite_url(cluster.root / "platform"))  # the operator's hand on the registry
    with store.session() as s:
        s.add(ModelVersion(uid="ab" * 16, name="breast-mpc", version=1, job_id=train_id, step="train",
                           spec_hash=version["spec_hash"], parties=["guest", "host"],
                           fingerprints={"guest": "sha256:1", "host": "sha256:2"}, created_by="analyst",
                           created_at=dt.datetime.now(dt.UTC)))
    mpc = {**score, "steps": [{"id": "score", "predict": {"model": "breast-mpc@1"}}]}
    with cluster.client("analyst") as analyst, pytest.raises(SharedMLError, match="trained by a scheme: mpc job"):
        analyst.submit(mpc)

    foreign = SealedStore(lambda svn: b"\x07" * 32, 1).seal(NAME, model.to_bytes())  # another identity's key
    blob_path.write_bytes(foreign)
    _, job, _ = run_tee(cluster, score, new, "scores")
    assert job["state"] == "failed" and "not the registered version" in job["reason"], job["reason"]
    assert "score" in job["reason"]

    with store.session() as s:  # a version registered with that blob: it opens in no enclave of ours
        s.get(ModelVersion, version["uid"]).fingerprints = {"enclave": hashlib.sha256(foreign).hexdigest()}
    _, job, _ = run_tee(cluster, score, new, "scores")
    assert job["state"] == "failed" and "sealed for another enclave identity" in job["reason"], job["reason"]
    store.dispose()


@pytest.mark.slow
def test_the_enclave_node_refuses_a_caller_without_a_deployment_certificate(deployment: LocalDeployment,
                                                                           tmp_path: Path) -> None:
    """Mutual TLS over RA-TLS: the enclave node's enclave answers only callers with a certificate of the
    deployment CA (the platform dials with its own, so its jobs above ran); only the platform operates it."""
    cluster = deployment
    with cluster.client("admin") as admin:
        address = until("the enclave node is online", lambda: enclave_node(admin))["address"]
    pki = cluster.root / "pki"
    certificate = fetch_certificate(address, tls_dir=pki, tls_name="guest")
    anonymous = EnclaveClient(address, server_certificate=certificate, timeout=10)
    with pytest.raises(PeerUnreachable):
        anonymous.status(timeout=5)
    anonymous.close()
    init_ca(tmp_path / "other")  # a certificate that names the platform, from another CA
    issue(tmp_path / "other", "platform")
    impostor = EnclaveClient(address, server_certificate=certificate, tls_dir=tmp_path / "other",
                             tls_name="platform", timeout=10)
    with pytest.raises(PeerUnreachable):
        impostor.open("breast-impostor")
    impostor.close()
    guest = EnclaveClient(address, server_certificate=certificate, tls_dir=pki, tls_name="guest", timeout=10)
    try:
        assert "jobs" in guest.status(timeout=5)  # a party of the deployment reaches it, to upload
        with pytest.raises(PolicyDenied, match="only the platform operator"):
            guest.open("breast-by-guest")
    finally:
        guest.close()
