"""Online scoring of a TEE-trained model end to end (issue 17 item 5, issue 12 item 3's shape).

A ``scheme: tee`` job (``sharedml run``'s TEE runner) trains a logistic
regression on the first 70% of default_credit's ids and registers it sealed
to the enclave's identity; a TEE batch-scoring job (``predict {model:}``)
scores 240 of the other 30%. Then, as real processes on loopback: the
operator's scoring enclave (``sharedml serve enclave``: its quoting process
and the enclave), the partner's serving node and the bank's gateway, each
serving party attesting the enclave against its own policy over RA-TLS.
Every one of the 240 ids is requested online, one by one: the score equals
the batch job's within 1e-12. The bank's side of the wire carries none of the
partner's values; an enclave of another identity and a blob of another
version are refused; killing the partner fails requests within the timeout
naming it, and service recovers when it is back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_procs import Proc, client, make_pki, start_gateway

from sharedml.components import jobspec
from sharedml.crypto.pki import load_identity
from sharedml.errors import AttestationError, PolicyDenied
from sharedml.serving.audit import verify_chain
from sharedml.serving.enclave_link import EnclaveLink, EnclaveOptions
from sharedml.serving.tee import TeePartnerClient
from sharedml.standalone.models import LocalRegistry
from sharedml.tee.attestation.base import Policy
from sharedml.tee.enclave import saved
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.enclave.serve import decode_matrix, encode_matrix
from sharedml.tee.job import run_tee_job
from sharedml.tee.model import ReleasedModel

pytestmark = pytest.mark.slow
BANK, PARTNER = "bank", "partner"
TIMEOUT = 1.0
SAMPLE = 240


@dataclass
class World:
    root: Path
    pki: Path
    policy: Path
    enclave: Proc
    node: Proc
    gateway: Proc
    node_port: int
    uid: str
    fingerprint: str
    expected: dict[str, float]  # the batch TEE job's scores of the sampled new ids

    def start_node(self, port: int = 0) -> Proc:
        args = ["node", "--party", PARTNER, "--pki", str(self.pki), "--models", str(self.root / PARTNER / "models"),
                "--state", str(self.root / PARTNER / "state"), "--caller", BANK,
                "--features", str(self.root / "partner.csv"), "--port", str(port),
                "--enclave", self.enclave.address, "--enclave-policy", str(self.policy)]
        return Proc(args, self.root / f"{PARTNER}.log")

    def link(self, party: str = BANK, policy: Policy | None = None) -> EnclaveLink:
        link = EnclaveOptions(self.enclave.address, self.policy).link(self.pki, party)
        if policy is not None:
            link.policy = policy
        return link


def _split(shared_data: Path, root: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each party's rows of the first 70% of the ids (training) and of the rest (new customers)."""
    ids = pd.read_csv(shared_data / "default_credit_hetero_guest.csv", usecols=["id"])["id"].sort_values()
    first = set(ids.iloc[: round(0.7 * len(ids))])
    out = {}
    for party, name in ((BANK, "guest"), (PARTNER, "host")):
        frame = pd.read_csv(shared_data / f"default_credit_hetero_{name}.csv")
        old = frame["id"].isin(first)
        out[party] = (frame[old], frame[~old])
    return out


def _tee_job(name: str, files: dict[str, Path], steps: list[dict[str, object]], out: Path,
             models: Path) -> dict[str, object]:
    """A ``scheme: tee`` job; a scoring job's label holder declares its label but uploads none."""
    spec = jobspec.load({"name": name, "scheme": "tee", "parties": {
        BANK: {"dataset": str(files[BANK]), "label": "y"},
        PARTNER: {"dataset": str(files[PARTNER])}}, "steps": steps})
    return run_tee_job(spec, out, models=models)


@pytest.fixture(scope="module")
def world(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tee-serving")
    rows, models = _split(shared_data, root), root / "operator" / "models"
    train, sample = {}, {}
    pick = np.random.default_rng(17).choice(len(rows[BANK][1]), SAMPLE, replace=False)
    for party, (old, new) in rows.items():
        train[party], sample[party] = root / f"{party}-train.csv", root / f"{party}-sample.csv"
        old.to_csv(train[party], index=False)
        new.iloc[pick].drop(columns=["y"], errors="ignore").to_csv(sample[party], index=False)
        new.to_csv(root / f"{party}.csv", index=False)  # the serving processes' feature sources
    _tee_job("credit-tee", train, [{"psi": {}}, {"split": {"test_size": 0.2, "seed": 7}},
                                   {"train": {"model": "logistic_regression", "epochs": 2}}], root / "train", models)
    LocalRegistry(models).tag("credit-tee@1", "production")
    _tee_job("credit-tee-score", sample, [{"id": "score", "predict": {"model": "credit-tee@production"}}],
             root / "score", models)
    batch = pd.read_csv(root / "score" / BANK / "predictions-score.csv", dtype={"id": str})
    record = LocalRegistry(models).show("credit-tee@production")
    for party in (BANK, PARTNER):  # each party's own copy: the registry; the bank also the sealed blob
        (root / party / "models").mkdir(parents=True)
        shutil.copy(models / "registry.json", root / party / "models")
    shutil.copytree(models / "enclave", root / BANK / "models" / "enclave")
    pki = make_pki(root / "pki", BANK, PARTNER, "platform")
    enclave = Proc(["enclave", "--models", str(models), "--home", str(root / "operator"), "--pki", str(pki)],
                   root / "enclave.log")
    w = World(root, pki, root / "operator" / "enclave-policy.json", enclave, enclave, enclave, 0,
              str(record["uid"]), str(record["fingerprints"]["enclave"]),
              dict(zip(batch["id"], batch["score"].astype(float), strict=True)))
    try:
        w.node = w.start_node()
        w.node_port = int(w.node.address.rsplit(":", 1)[1])
        w.gateway = start_gateway(pki, BANK, {PARTNER: w.node.address}, root / BANK / "models",
                                  root / BANK / "state", root / "bank.csv", serve="credit-tee@production",
                                  timeout=TIMEOUT, extra=("--enclave", enclave.address, "--enclave-policy",
                                                          str(w.policy)))
        yield w
    finally:
        for proc in (w.gateway, w.node, enclave):
            proc.stop()


def test_online_scores_equal_the_tee_batch_job(world: World) -> None:
    assert len(world.expected) == SAMPLE
    with client(world.gateway) as http:
        for i, want in world.expected.items():
            r = http.post("/v1/score", json={"id": i})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == world.uid
            assert abs(r.json()["score"] - want) <= 1e-12, (i, r.json()["score"], want)
        # the bank's own raw columns in the request instead of its feature source
        row = pd.read_csv(world.root / "bank.csv", dtype={"id": str}).set_index("id").loc[next(iter(world.expected))]
        r = http.post("/v1/score", json={"id": row.name, "features": row.drop("y").to_dict()})
        assert r.status_code == 200 and abs(r.json()["score"] - world.expected[row.name]) <= 1e-12
    gateway_log = verify_chain(world.root / BANK / "state" / "audit.jsonl")
    partner_log = verify_chain(world.root / PARTNER / "state" / "audit.jsonl")
    scored = [e for e in gateway_log if e["event"] == "score" and e["outcome"] == "ok"]
    contributed = [e for e in partner_log if e["event"] == "contribute" and e["outcome"] == "ok"]
    assert len(scored) >= SAMPLE + 1 and len(contributed) >= SAMPLE + 1
    text = (world.root / BANK / "state" / "audit.jsonl").read_text()
    assert not any(f'"{i}"' in text for i in world.expected)  # ids only as keyed hashes


def test_the_label_holder_receives_no_value_of_the_partner(world: World) -> None:
    """What reaches the bank (the partner's Contribute reply, the enclave's Score reply) holds
    none of the partner's feature values, as numbers or as text (9.4-3)."""
    partner = pd.read_csv(world.root / "partner.csv", dtype={"id": str}).set_index("id")
    ids = list(world.expected)[:50]
    batch = secrets.token_hex(16)
    identity = load_identity(world.pki, BANK)

    async def contribute() -> bytes:
        peer = TeePartnerClient(PARTNER, world.node.address, identity)
        try:
            return (await peer.contribute(world.uid, batch, ids, 30.0)).tobytes()
        finally:
            await peer.close()

    received = [asyncio.run(contribute())]
    link = world.link()
    own = pd.read_csv(world.root / "bank.csv", dtype={"id": str}).set_index("id").loc[ids].drop(columns="y")
    loaded, _ = link.call("Load", {"version": world.uid, "fingerprint": world.fingerprint},
                          (world.root / BANK / "models" / "enclave" / f"{world.uid}.sealed").read_bytes())
    assert loaded["parties"] == [BANK, PARTNER] and loaded["columns"] == list(own.columns)
    header, body = link.call("Score", {"version": world.uid, "fingerprint": world.fingerprint, "batch": batch,
                                       "ids": ids, "columns": list(own.columns)}, encode_matrix(own.to_numpy()))
    link.close()
    received += [json.dumps(loaded).encode(), json.dumps(header).encode(), body]
    np.testing.assert_allclose(decode_matrix(body, len(ids), 1, "enclave", "t")[:, 0],
                               [world.expected[i] for i in ids], rtol=0, atol=1e-12)
    values = partner.loc[ids].to_numpy(np.float64).ravel()
    wire = b"".join(received)
    for v in values:
        assert np.float64(v).tobytes() not in wire and repr(float(v)).encode() not in wire


def test_another_enclave_identity_or_another_blob_is_refused(world: World) -> None:
    other = Policy(signer="ab" * 48, product_id=1, min_svn=1, allow_simulation=True)
    with pytest.raises(AttestationError, match="attestation policy") as refused:
        world.link(policy=other).connect()
    assert refused.value.party == "enclave"
    blob = (world.root / BANK / "models" / "enclave" / f"{world.uid}.sealed").read_bytes()
    link = world.link()
    try:
        with pytest.raises(PolicyDenied, match="not the registered version"):
            link.call("Load", {"version": "0" * 32, "fingerprint": world.fingerprint}, blob + b"x")
        stranger = SealedStore(lambda svn: b"\x07" * 32, 1)  # another signer/product/platform's seal key
        model = ReleasedModel("linear_regression", ["bank.x0"], {"mean": [0.0], "scale": [1.0], "coef": [1.0],
                                                                "intercept": 0.0})
        foreign = base64.b64decode(saved.seal_models(stranger, {"t": model})["t"])
        with pytest.raises(PolicyDenied, match="sealed for another enclave identity"):
            link.call("Load", {"version": "1" * 32, "fingerprint": saved.fingerprint(foreign)}, foreign)
    finally:
        link.close()


def test_a_dead_partner_fails_requests_naming_it_and_service_recovers(world: World) -> None:
    some = list(world.expected)[-20:]
    world.node.kill()
    with client(world.gateway) as http:
        for i in some[:5]:
            t = time.monotonic()
            r = http.post("/v1/score", json={"id": i})
            assert r.status_code in (502, 504), r.text
            assert r.json()["party"] == PARTNER
            assert time.monotonic() - t < TIMEOUT + 2.0
        world.node = world.start_node(world.node_port)
        deadline, status = time.monotonic() + 30, 0
        while status != 200 and time.monotonic() < deadline:  # gRPC reconnects with back-off (<= 1 s)
            r = http.post("/v1/score", json={"id": some[5]})
            status = r.status_code
        assert status == 200, r.text
        for i in some[5:]:
            r = http.post("/v1/score", json={"id": i})
            assert r.status_code == 200 and abs(r.json()["score"] - world.expected[i]) <= 1e-12
