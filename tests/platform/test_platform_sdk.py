"""The SDK against a real ``sharedml platform serve`` process over HTTPS (certificate from
the deployment PKI), end to end: login, tokens, users, datasets, grants, a job and its
approval, audit and settings; errors arrive as sharedml exceptions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sharedml import approvals
from sharedml.crypto import pki
from sharedml.errors import AuthError, ConfigError, PeerTimeout, PeerUnreachable, PolicyDenied
from sharedml.platform.errors import Conflict, NotFound
from sharedml.sdk import Client

pytestmark = pytest.mark.slow
PASSWORD = "admin-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, data_dir: Path, stdin: str | None = None) -> str:
    env = {**os.environ, "SHAREDML_PLATFORM_DIR": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "sharedml.cli", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    root = tmp_path_factory.mktemp("sdk")
    data, certs = root / "data", root / "pki"
    pki.init_ca(certs)
    pki.issue(certs, "platform")
    cli("user", "add", "root", "--role", "admin", "--no-totp", data_dir=data, stdin=PASSWORD + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sharedml.cli", "platform", "serve", "--data-dir", str(data),
         "--port", str(port), "--certfile", str(certs / "platform.pem"),
         "--keyfile", str(certs / "platform.key")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(url, verify=str(certs / "ca.pem"), timeout=2) as c:
                    c.login("root", PASSWORD)
                break
            except (PeerUnreachable, PeerTimeout):  # not up yet, or its first login slow
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"platform did not start: {proc.stderr.read() if proc.stderr else ''}") from None
                time.sleep(0.3)
        yield url, certs / "ca.pem", data
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_sdk_drives_the_platform_over_https(server: tuple[str, Path, Path]) -> None:
    url, ca, data = server
    with Client(url, verify=str(ca)) as admin:
        admin.login("root", PASSWORD)
        assert admin.me()["role"] == "admin"
        token = admin.create_token("script")["token"]
        created = admin.create_user("olive", "owner-password", "data_owner", totp=False,
                                    party="bank")
        admin.create_user("andy", "analyst-password", "analyst", totp=False)
        assert {u["username"] for u in admin.users()} == {"root", "olive", "andy"}
        assert admin.user(created["id"])["role"] == "data_owner"
        project = admin.create_project("risk")
        assert admin.projects()[0]["name"] == "risk" and admin.project(project["id"])["id"] == project["id"]
        assert admin.update_settings(task_timeout_s=20)["task_timeout_s"] == 20
        assert admin.settings()["task_timeout_s"] == 20

    with Client(url, token=token, verify=str(ca)) as script:  # the API token, no login
        assert script.me()["username"] == "root"

    with Client(url, verify=str(ca)) as owner, Client(url, verify=str(ca)) as analyst:
        owner.login("olive", "owner-password")
        analyst.login("andy", "analyst-password")
        ds = owner.register_dataset("bank", "customers", [{"name": "age", "type": "int"}], row_count=100)
        assert analyst.datasets() == []
        with pytest.raises(PolicyDenied):
            analyst.dataset(ds["id"])
        andy = next(u for u in admin_users(url, ca) if u["username"] == "andy")
        owner.grant("dataset", ds["id"], andy["id"], "use")
        assert [g["permission"] for g in owner.grants("dataset", ds["id"])] == ["use"]
        assert analyst.dataset(ds["id"])["name"] == "customers"

        spec = "name: credit\nparties:\n  bank: {dataset: customers}\nsteps:\n  - describe: {}\n"
        job = analyst.submit(spec)
        assert analyst.get(job["id"])["state"] == "pending"
        assert [j["id"] for j in analyst.list()] == [job["id"]]
        assert analyst.approval_status(job["id"])["status"] == "pending"
        (approval,) = owner.approvals(state="pending")
        # the owner signs the spec it fetched, with a key that never leaves its side
        key, _ = approvals.keygen(data.parent / "olive-keys", "olive")
        about = owner.approval_spec(approval["id"])
        assert about["spec"] == yaml.safe_load(spec) and about["dataset"] == "customers"
        signed = owner.approve(approval["id"], "ok", key=key)
        assert (signed["state"], signed["signer"]) == ("approved", "olive")
        assert signed["spec_sha256"] == approvals.spec_sha256(about["spec"])
        assert analyst.approval_status(job["id"])["status"] == "approved"
        assert analyst.tasks(job["id"])[0]["party"] == "bank"
        assert analyst.result(job["id"])["job_id"] == job["id"]
        with pytest.raises(PeerTimeout):
            analyst.wait(job["id"], timeout=0.5, poll=0.2)  # no node runs it
        assert analyst.cancel(job["id"])["state"] == "canceled"
        assert analyst.wait(job["id"], timeout=5)["state"] == "canceled"
        with pytest.raises(Conflict):
            analyst.cancel(job["id"])  # 409: already finished
        with pytest.raises(NotFound):
            analyst.job("0123456789abcdef")
        with pytest.raises(PolicyDenied):
            analyst.audit_verify()
        with pytest.raises(ConfigError):
            analyst.submit({"parties": {"bank": {}}, "steps": [{"no_such_step": {}}]})
        analyst.logout()
        with pytest.raises(AuthError):
            analyst.jobs()

    with Client(url, token=token, verify=str(ca)) as auditor_view:
        v = auditor_view.audit_verify()
        assert v["ok"] and v["entries"] > 10
        assert auditor_view.audit_export().count("\n") == v["entries"]
        actions = {e["action"] for e in auditor_view.audit(limit=1000)}
        assert {"auth.login", "dataset.register", "approval.approved", "settings.change"} <= actions
        assert auditor_view.nodes() == []
        assert auditor_view.models() == []


def admin_users(url: str, ca: Path) -> list[dict[str, object]]:
    with Client(url, verify=str(ca)) as c:
        c.login("root", PASSWORD)
        return c.users()


def test_wrong_password_and_plain_http_are_clear_errors(server: tuple[str, Path, Path]) -> None:
    url, ca, _ = server
    with Client(url, verify=str(ca)) as c, pytest.raises(AuthError, match="401"):
        c.login("root", "wrong-password")
    with Client(url, verify=True) as c, pytest.raises(PeerUnreachable):  # not the system's CA
        c.login("root", PASSWORD)


def test_cli_job_commands_use_the_sdk(server: tuple[str, Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sharedml.platform.cli import job_app, user_app

    url, ca, data = server
    runner = CliRunner()

    def run(app: object, *args: str) -> str:
        result = runner.invoke(app, list(args))  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        return result.output

    token = run(user_app, "token", "root", "--data-dir", str(data)).strip()
    spec = tmp_path / "job.yaml"
    spec.write_text("name: cli-job\nparties:\n  bank: {}\nsteps:\n  - describe: {}\n")
    common = ["--url", url, "--token", token, "--ca", str(ca)]
    job_id = run(job_app, "submit", str(spec), *common).split()[2]
    assert job_id in run(job_app, "status", *common)
    assert '"name": "cli-job"' in run(job_app, "status", job_id, *common)
    assert "canceled" in run(job_app, "cancel", job_id, *common)


def test_cli_approval_commands_sign_on_the_owners_side(
    server: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """keygen writes the owner's key (0600) and its public half; show prints the spec and
    the hash computed locally; approve sends only the signature; the platform keeps it."""
    import stat

    from typer.testing import CliRunner

    from sharedml.platform.approval_cli import approval_app
    from sharedml.platform.cli import user_app

    url, ca, data = server
    runner = CliRunner()

    def run(app: object, *args: str) -> str:
        result = runner.invoke(app, list(args))  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        return result.output

    assert "approvers: {carol:" in run(approval_app, "keygen", "carol", "--dir", str(tmp_path))
    key = tmp_path / "carol.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and (tmp_path / "carol.pub").is_file()
    with Client(url, verify=str(ca)) as admin:
        admin.login("root", PASSWORD)
        carol = admin.create_user("carol", "carol-password", "data_owner", totp=False,
                                  party="shop")
        dan = admin.create_user("dan", "dan-password", "analyst", totp=False)
    with Client(url, verify=str(ca)) as owner, Client(url, verify=str(ca)) as analyst:
        owner.login("carol", "carol-password")
        analyst.login("dan", "dan-password")
        ds = owner.register_dataset("shop", "baskets", [{"name": "n", "type": "int"}])
        owner.grant("dataset", ds["id"], dan["id"], "use")
        job = analyst.submit("name: shop-job\nparties:\n  shop: {dataset: baskets}\n"
                             "steps:\n  - describe: {}\n")
        (approval,) = owner.approvals(job["id"])
    token = run(user_app, "token", "carol", "--data-dir", str(data)).strip()
    common = ["--url", url, "--token", token, "--ca", str(ca)]
    shown = run(approval_app, "show", str(approval["id"]), *common)
    spec_hash = approvals.spec_sha256(yaml.safe_load(shown.split("dataset shop/")[0]))
    assert f"spec SHA-256 {spec_hash}" in shown
    assert "step describe (describe) with no other party; reveals: each party's row" in shown
    out = run(approval_app, "approve", str(approval["id"]), "--key", str(key), *common)
    assert "approved (signed by carol)" in out
    with Client(url, token=token, verify=str(ca)) as owner:
        (row,) = owner.approvals(job["id"])
    assert (row["signer"], row["spec_sha256"]) == ("carol", spec_hash)
    assert carol["party"] == "shop"


def test_cli_dataset_commands_register_and_grant_by_name(
    server: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """A data owner registers, shows, grants and revokes with 'sharedml dataset' and names
    (no Python, no user ids); an unknown dataset, another party's dataset and an
    unreachable platform are one clear error each, with what to do."""
    from typer.testing import CliRunner

    from sharedml.platform.cli import user_app
    from sharedml.platform.dataset_cli import dataset_app

    url, ca, data = server
    runner = CliRunner()
    with Client(url, verify=str(ca)) as admin:
        admin.login("root", PASSWORD)
        admin.create_user("erin", "erin-password", "data_owner", totp=False, party="farm")
        admin.create_user("gina", "gina-password", "data_owner", totp=False, party="mill")
        frank = admin.create_user("frank", "frank-password", "analyst", totp=False)
        harvest = admin.create_project("harvest")
        admin.grant("project", harvest["id"], admin.user_named("erin")["id"], "use")

    def as_user(name: str, *args: str, url: str = url) -> Any:
        token = runner.invoke(user_app, ["token", name, "--data-dir", str(data)]).output.strip()
        return runner.invoke(dataset_app, [*args, "--url", url, "--token", token, "--ca", str(ca)])

    def ok(name: str, *args: str) -> str:
        result = as_user(name, *args)
        assert result.exit_code == 0, result.output
        return str(result.output)

    assert "registered farm/crops" in ok("erin", "register", "crops", "--description", "yields")
    assert "farm/crops  rows ?  columns 0" in ok("erin", "list")
    assert ok("erin", "grant", "crops", "frank").strip() == "frank may use farm/crops"
    with Client(url, token=None, verify=str(ca)) as owner:
        owner.login("erin", "erin-password")
        (ds,) = [d for d in owner.datasets() if d["name"] == "crops"]
        assert [(g["user_id"], g["permission"]) for g in owner.grants("dataset", ds["id"])] == [
            (frank["id"], "use")]
    # the owner sees grantees by name; the grantee, who may read the grants, sees ids only
    assert "grant use to frank" in ok("erin", "show", "farm/crops")
    with Client(url, token=None, verify=str(ca)) as grantee:
        grantee.login("frank", "frank-password")
        assert [(g["user_id"], g["username"]) for g in grantee.grants("dataset", ds["id"])] == [
            (frank["id"], None)]
    assert "no longer has a grant" in ok("erin", "revoke", "farm/crops", "frank")
    assert "grant" not in ok("erin", "show", "crops").split("\n", 1)[1]

    unknown = as_user("erin", "grant", "barley", "frank")
    assert isinstance(unknown.exception, ConfigError)
    assert "no dataset 'barley'" in str(unknown.exception)
    assert "sharedml dataset list" in (unknown.exception.remedy or "")
    nobody = as_user("erin", "grant", "crops", "nobody")
    assert isinstance(nobody.exception, NotFound) and "'nobody'" in str(nobody.exception)
    foreign = as_user("gina", "register", "crops", "--party", "farm")
    assert isinstance(foreign.exception, PolicyDenied)
    assert "party 'farm'" in str(foreign.exception) and foreign.exception.remedy
    assert "registered farm/seeds" in ok("erin", "register", "seeds", "--project", "harvest")
    with Client(url, verify=str(ca)) as owner:
        owner.login("erin", "erin-password")
        assert {d["name"]: d["project_id"] for d in owner.datasets()}["seeds"] == harvest["id"]
    no_project = as_user("erin", "register", "oats", "--project", "orchard")
    assert isinstance(no_project.exception, ConfigError)
    assert "no project 'orchard'" in str(no_project.exception)
    down = as_user("erin", "list", url=f"https://127.0.0.1:{free_port()}")
    assert isinstance(down.exception, PeerUnreachable)
    assert "sharedml platform serve" in (down.exception.remedy or "")
