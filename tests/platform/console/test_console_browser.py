"""The console in a real browser (headless chromium via Playwright) against a platform
served on loopback with an injected clock: TOTP login and self-enrolment, a data
owner's approval, the audit chain's verify button on an intact and a tampered
log, the 30-minute idle expiry, a 403 page instead of data, and CSRF refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from console_browser import Served, log_in, secret_of, serve
from platform_world import PASSWORD, World, make_world
from sqlalchemy import text

from sharedml import approvals
from sharedml.platform.auth import Totp

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[World, Served]]:
    world = make_world(tmp_path)
    served = serve(world.app)
    yield world, served
    served.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def _dataset(world: World, owner: str, name: str = "credit_bank") -> int:
    r = world.call(owner, "POST", "/api/v1/datasets", json={
        "owner_party": "bank", "name": name,
        "columns": [{"name": "id", "type": "int"}, {"name": "salary_secret", "type": "float"},
                    {"name": "y", "type": "int"}]})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_login_with_totp_and_self_enrolment(live: tuple[World, Served], page: Any) -> None:
    world, served = live
    world.add_user("alice", "analyst", totp=True)
    log_in(page, served.url, "alice", PASSWORD)  # no code: refused
    assert page.locator("#login-message").is_visible()
    log_in(page, served.url, "alice", PASSWORD, world.code("alice"))
    assert page.locator("#me").inner_text() == "alice"

    # the operator requires TOTP: bob (none yet) is sent to enrolment and cannot go elsewhere
    world.platform.settings.update({"require_totp": True}, "test")
    world.add_user("bob", "data_owner")
    other = page.context.browser.new_context().new_page()
    log_in(other, served.url, "bob", PASSWORD)
    assert other.url.endswith("/console/totp")
    assert other.locator("#qr svg").count() == 1
    other.goto(f"{served.url}/console/datasets")
    assert other.url.endswith("/console/totp")
    secret = secret_of(other.locator("#secret").get_attribute("data-secret") or "")
    other.fill("#code", Totp.code(secret, world.clock.now()))
    other.click("#confirm")
    assert other.locator("#totp-message").is_visible()
    assert world.platform.auth.totp_secret(world.platform.users.by_name("bob")) == secret
    # the enrolling code is spent; the next step's code logs in
    world.clock.advance(30)
    fresh = page.context.browser.new_context().new_page()
    log_in(fresh, served.url, "bob", PASSWORD)
    assert "/console/login" in fresh.url
    log_in(fresh, served.url, "bob", PASSWORD, Totp.code(secret, world.clock.now()))
    assert fresh.locator("#me").inner_text() == "bob"
    enrolled = world.platform.audit.query(action="auth.totp.enrol", actor="bob", limit=10)
    assert [e.outcome for e in enrolled] == ["ok"]


def test_a_data_owner_approves_a_pending_use_signed_in_the_browser(
    live: tuple[World, Served], page: Any, tmp_path: Path
) -> None:
    world, served = live
    _dataset(world, "data_owner")
    ds = world.platform.datasets.find("bank", "credit_bank")
    assert ds is not None
    world.platform.grants.set(world.platform.auth.authenticate(world.tokens["data_owner"]),
                              world.ids["analyst"], "dataset", ds.id, "use")
    spec = {"name": "a1", "parties": {"bank": {"dataset": "credit_bank", "label": "y"}},
            "steps": [{"describe": {}}]}
    r = world.call("analyst", "POST", "/api/v1/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    log_in(page, served.url, "data_owner", PASSWORD)
    row = page.locator("#home-approvals tr", has_text=job_id)
    row.locator("input[name=comment]").fill("A.1 review, quarter 4")
    row.locator("button[value=approve]").click()  # no key chosen: nothing is posted
    assert row.locator(".sign-message").inner_text() == "Choose your approval key file."
    assert world.platform.approvals.for_job(job_id)[0].state == "pending"

    key, pub = approvals.keygen(tmp_path / "owner-side", "bank-owner")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))
    row.locator("input.approval-key").set_input_files(str(key))
    row.locator("button[value=approve]").click()
    page.wait_for_selector("#nothing")
    (approval,) = world.platform.approvals.for_job(job_id)
    assert (approval.state, approval.comment) == ("approved", "A.1 review, quarter 4")
    # the browser hashed the stored spec and signed the statement with the owner's key:
    # the signature verifies as a node would check it (approvals.check_order)
    assert approval.spec_sha256 == approvals.spec_sha256(spec)
    signed = approvals.SignedApproval(job_id=job_id, party="bank", dataset="credit_bank",
                                      spec_sha256=approval.spec_sha256, signer=approval.signer,
                                      signature=approval.signature)
    nodes_keys = approvals.ApproverKeys.from_files({"bank-owner": pub})
    assert approval.signer == "bank-owner" and nodes_keys.verify(signed)
    approvals.check_order(party="bank", dataset="credit_bank", job_id=job_id, step_id="describe",
                          spec=spec, approvals=[signed], keys=nodes_keys)
    entries = world.platform.audit.query(action="approval.approved", limit=10)
    assert [json.loads(e.detail)["comment"] for e in entries] == ["A.1 review, quarter 4"]
    # the key never left the browser: no request carried its bytes
    key_body = "".join(key.read_text().splitlines()[1:-1])
    assert any("signature=" in s for s in sent)
    assert not any(key_body[:24] in s or quote(key_body[:24], safe="") in s for s in sent)
    assert page.locator("#nothing").is_visible()  # nothing waits any more


def test_the_audit_chain_verifies_and_a_tampered_entry_shows_broken(
    live: tuple[World, Served], page: Any
) -> None:
    world, served = live
    log_in(page, served.url, "admin", PASSWORD)
    page.goto(f"{served.url}/console/audit")
    page.click("#verify-chain")
    page.wait_for_selector("#chain-ok")
    with world.platform.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    page.click("#verify-chain")
    page.wait_for_selector("#chain-broken")
    assert page.locator("#first-bad").inner_text() == "3"


def test_an_idle_session_of_31_minutes_goes_back_to_login(
    live: tuple[World, Served], page: Any
) -> None:
    world, served = live
    log_in(page, served.url, "analyst", PASSWORD)
    page.goto(f"{served.url}/console/jobs")
    assert page.locator("#jobs").count() == 1
    world.clock.advance(minutes=29)
    page.goto(f"{served.url}/console/jobs")
    assert page.locator("#jobs").count() == 1  # 29 minutes idle: still in
    world.clock.advance(minutes=31)
    page.goto(f"{served.url}/console/jobs?state=failed")
    assert "/console/login" in page.url
    assert page.locator("#login-message").is_visible()
    # logging in again (keyboard only) returns to the page that was asked for
    page.keyboard.type("analyst")  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/jobs?state=failed")
    assert page.locator("#jobs").count() == 1


def test_a_user_without_the_grant_gets_a_403_page_not_the_data(
    live: tuple[World, Served], page: Any
) -> None:
    world, served = live
    dataset_id = _dataset(world, "data_owner")
    log_in(page, served.url, "analyst", PASSWORD)
    response = page.goto(f"{served.url}/console/datasets/{dataset_id}")
    assert response.status == 403
    assert page.locator("#error-title").is_visible()
    assert "salary_secret" not in page.content()
    denied = world.platform.audit.query(action="access.denied", actor="analyst", limit=10)
    assert any(e.target == f"GET /console/datasets/{dataset_id}" for e in denied)
    # the owner sees the schema (column names and types, never rows)
    log_in(page, served.url, "data_owner", PASSWORD)
    page.goto(f"{served.url}/console/datasets/{dataset_id}")
    assert "salary_secret" in page.locator("#schema").inner_text()
    # and grants by user name: a name nobody has is named back, with what to do
    page.fill("#grant-user", "anlyst")
    page.click("#grant")
    page.wait_for_load_state()
    assert "there is no user 'anlyst'" in page.locator("#error-detail").inner_text()
    assert world.platform.grants.list("dataset", dataset_id) == []
    page.goto(f"{served.url}/console/datasets/{dataset_id}")
    page.fill("#grant-user", "analyst")
    page.select_option("#grant-permission", "read")
    page.click("#grant")
    page.wait_for_url(f"**/console/datasets/{dataset_id}")
    (granted,) = world.platform.grants.list("dataset", dataset_id)
    assert (granted.user_id, granted.permission) == (world.ids["analyst"], "read")
    log_in(page, served.url, "analyst", PASSWORD)
    assert page.goto(f"{served.url}/console/datasets/{dataset_id}").status == 200


def test_a_form_post_without_the_csrf_token_is_refused(
    live: tuple[World, Served], page: Any
) -> None:
    world, served = live
    log_in(page, served.url, "admin", PASSWORD)
    page.goto(f"{served.url}/console/settings")
    page.fill("#set-session_idle_minutes", "5")
    page.evaluate("document.querySelector('form.settings input[name=csrf]').remove()")
    page.click("#save-settings")
    page.wait_for_load_state()
    assert page.locator("#error-title").is_visible()
    assert world.platform.settings.current().session_idle_minutes == 30
    # a forged token fails too; the right one (the page's own) works
    r = page.request.post(f"{served.url}/console/settings",
                          form={"csrf": "0" * 64, "session_idle_minutes": "5"})
    assert r.status == 403
    page.goto(f"{served.url}/console/settings")
    page.fill("#set-session_idle_minutes", "5")
    page.click("#save-settings")
    page.wait_for_load_state()
    assert world.platform.settings.current().session_idle_minutes == 5
