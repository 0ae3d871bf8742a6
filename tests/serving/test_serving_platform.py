"""``sharedml serve --platform https://…``: versions named ``NAME@ALIAS`` in a platform's
registry, read over HTTPS verified against the deployment CA (issue 12 item 3).

A real ``sharedml platform serve`` process with the deployment CA's "platform"
certificate (HTTPS, as it serves by default) holds the registry: the SS-LR
model trained by a real job, registered as a job's train tasks register it and
tagged ``production``, and an analyst's API token. The operator starts the
partner's node and the label holder's gateway from each party's own part store
and keys (``--parts``, ``--keys``); the gateway is given the platform's URL, the
token in a file and the CA file (``--platform``, ``--token-file``, ``--ca``) and
``--serve credit@production``. It resolves the alias at the platform, loads its
part (fingerprint checked against the registry's) and scores as the training job
did. A CA that did not sign the platform's certificate, and a token the platform
refuses, are clear errors naming the step and what to check.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving_harness import BANK, PARTNER, Book, Trained
from serving_procs import Proc, client, make_pki
from tests.platform.test_https import serve, stop, wait_listening  # the HTTPS platform process

from sharedml.crypto import pki
from sharedml.errors import ConfigError
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform
from sharedml.platform.store.models import Job, Task
from sharedml.serving.versions_source import platform_versions
from sharedml.standalone.models import LocalRegistry

REF = "credit@production"


@dataclass
class Registry:
    url: str
    pki: Path
    token_file: Path


def _fill(data_dir: Path, uid: str, fingerprints: dict[str, str], token_file: Path) -> None:
    """The registry as a succeeded train job leaves it, the alias, and an analyst's token."""
    platform = Platform.open(data_dir)
    user, _ = platform.users.create("cli", "analyst", "correct horse battery", "analyst",
                                    totp=False)
    analyst = Principal(user.id, user.username, user.role, "cli", 0)
    now = dt.datetime.now(dt.UTC)
    with platform.store.session() as s:
        job = Job(name="credit", spec=json.dumps({"name": "credit", "parties": {}, "steps": []}),
                  created_by=user.id, created_at=now, updated_at=now)
        s.add(job)
        s.flush()
        tasks = [Task(job_id=job.id, party=p, step_id="train", component="train",
                      created_at=now, metrics={"model_uid": uid, "fingerprint": f})
                 for p, f in fingerprints.items()]
        platform.registry.record_job(s, job, tasks)
    platform.registry.tag(analyst, "credit@1", "production")
    _, token = platform.auth.create_token(analyst, "serving", 30)
    token_file.write_text(token + "\n")
    platform.store.engine.dispose()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, book: Book) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("serving-platform")
    pki_dir = make_pki(root / "pki", "platform", BANK, PARTNER)
    version = LocalRegistry(book.models).resolve_text("credit@1")  # the SS-LR model
    _fill(root / "platform", version.uid, version.fingerprints, root / "token")
    proc, port = serve(root / "platform", "--pki-dir", str(pki_dir))
    try:
        wait_listening(proc, port)
        yield Registry(f"https://127.0.0.1:{port}", pki_dir, root / "token")
    finally:
        stop(proc)


def _own(book: Book, party: str) -> list[str]:
    """``--parts`` and ``--keys``: the party's own part store and node keys."""
    return ["--parts", str(book.models / party / "parts"), "--keys",
            str(book.models / party / "keys")]


def test_the_gateway_serves_name_at_alias_from_the_platform_over_https(
        registry: Registry, book: Book, linear_model: Trained, tmp_path: Path) -> None:
    node = Proc(["node", "--party", PARTNER, "--pki", str(registry.pki), *_own(book, PARTNER),
                 "--state", str(tmp_path / "node"), "--caller", BANK, "--features",
                 str(book.data[PARTNER])], tmp_path / "node.log")
    try:
        gateway = Proc(["gateway", "--party", BANK, "--pki", str(registry.pki),
                        *_own(book, BANK), "--platform", registry.url, "--token-file",
                        str(registry.token_file), "--ca", str(registry.pki / "ca.pem"),
                        "--state", str(tmp_path / "gateway"), "--port", "0", "--partner",
                        f"{PARTNER}={node.address}", "--features", str(book.data[BANK]),
                        "--exclude", "y", "--serve", REF], tmp_path / "gateway.log")
        try:
            ids = [str(i) for i in linear_model.test_ids[:20]]
            with client(gateway) as http:
                assert http.get("/v1/versions").json()["stable"] == linear_model.version
                got = http.post("/v1/score", json={"ids": ids})
            assert got.status_code == 200, got.text
            assert got.json()["version"] == linear_model.version
            want = linear_model.scores[:20]
            assert max(abs(s - w) for s, w in zip(got.json()["scores"], want, strict=True)) <= 1e-9
        finally:
            gateway.stop()
    finally:
        node.stop()


def _resolve(registry: Registry, token_file: Path, ca: Path) -> str:
    """``REF`` resolved as ``sharedml serve --platform`` resolves it; its connection closed
    (the platform's graceful stop waits for open ones)."""
    book = platform_versions(registry.url, token_file, ca)
    try:
        return book.resolve_text(REF).name
    finally:
        book.client.close()


def test_a_wrong_ca_or_a_refused_token_is_a_clear_error(registry: Registry, book: Book,
                                                        tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    pki.init_ca(other)  # a CA that did not sign the platform's certificate
    with pytest.raises(ConfigError, match="CERTIFICATE_VERIFY_FAILED") as wrong_ca:
        _resolve(registry, registry.token_file, other / "ca.pem")
    assert wrong_ca.value.step == "serve: versions" and "TLS" in str(wrong_ca.value.remedy)
    assert f"did not resolve {REF!r}" in wrong_ca.value.message
    gateway = subprocess.run(  # as the operator starts it: one error line, no traceback
        [sys.executable, "-m", "sharedml.cli", "serve", "gateway", "--party", BANK, "--pki",
         str(registry.pki), *_own(book, BANK), "--platform", registry.url, "--token-file",
         str(registry.token_file), "--ca", str(other / "ca.pem"), "--state",
         str(tmp_path / "gateway"), "--port", "0", "--serve", REF],
        capture_output=True, text=True, timeout=300)
    said = " ".join((gateway.stdout + gateway.stderr).split())
    assert gateway.returncode == 2 and "Traceback" not in said, said
    assert "CERTIFICATE_VERIFY_FAILED" in said and "serve: versions" in said
    (tmp_path / "bad-token").write_text("smt_not-a-token\n")
    with pytest.raises(ConfigError, match=f"did not resolve {REF!r}") as refused:
        _resolve(registry, tmp_path / "bad-token", registry.pki / "ca.pem")
    assert refused.value.step == "serve: versions"
    assert "token" in refused.value.message.lower() or "token" in str(refused.value.remedy)
    # the right CA and token resolve the alias: the failures above were the CA's and the token's
    assert _resolve(registry, registry.token_file, registry.pki / "ca.pem") == "credit"
