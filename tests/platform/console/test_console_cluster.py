"""The console on a real local cluster (platform, two data nodes and the dealer as
processes over mutual TLS): an analyst builds the A.1 job in the builder from its
template, submits it; each dataset owner approves it on their home page; the
analyst's job page follows it live to the end and shows its ROC chart, drawn from
the same public figures the API returns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from console_browser import log_in

from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.scenarios.credit import credit_population

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # processes; slower under load


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    bank, partner = credit_population(rows=3000).write(tmp_path_factory.mktemp("credit"))
    root = tmp_path_factory.mktemp("cluster")
    prepare(root, DeploymentSpec({"bank": {"credit_bank": bank},
                                  "partner": {"credit_partner": partner}}, task_timeout_s=60))
    with LocalDeployment(root) as c:
        c.start(wait=120)
        yield c


def _passwords(cluster: LocalDeployment) -> dict[str, str]:
    found: dict[str, str] = json.loads((cluster.root / "passwords.json").read_text())
    return found


def test_an_analyst_builds_a1_owners_approve_and_the_roc_chart_shows(
    cluster: LocalDeployment, browser: Any
) -> None:
    url, passwords = cluster.info["url"], _passwords(cluster)
    # the cluster's console is HTTPS under the CA 'sharedml up' made; chromium does not know
    # it, so these contexts skip the certificate check (the SDK below verifies it)
    analyst = browser.new_context(ignore_https_errors=True).new_page()
    log_in(analyst, url, "analyst", passwords["analyst"])
    analyst.goto(f"{url}/console/jobs/new")
    analyst.check("#party-bank")
    analyst.check("#party-partner")
    analyst.click("#template-a1")
    analyst.wait_for_load_state()
    assert analyst.locator("li.step").count() == 6
    assert analyst.locator("#label-bank").input_value() == "y"
    # a bad value is named at once, as the API would name it
    analyst.fill("#p-1-test_size", "1.5")
    analyst.locator("#p-1-test_size").blur()
    analyst.wait_for_selector("#spec-error")
    assert "steps[1].split.test_size" in analyst.locator("#spec-error").inner_text()
    analyst.fill("#p-1-test_size", "0.3")
    analyst.locator("#p-1-test_size").blur()
    analyst.wait_for_selector("#spec-ok")
    assert "credit_partner" in analyst.locator("#spec-yaml").inner_text()
    analyst.click("#submit-job")
    analyst.wait_for_url("**/console/jobs/*")
    job_id = analyst.url.rsplit("/", 1)[1]
    assert analyst.locator("#approval-status").inner_text() == "pending"

    for owner in ("bank-owner", "partner-owner"):
        page = browser.new_context(ignore_https_errors=True).new_page()
        log_in(page, url, owner, passwords[owner])
        row = page.locator("#home-approvals tr", has_text=job_id)
        row.locator("input[name=comment]").fill("approved for the A.1 test")
        # the owner's key file, from the owner's side of the cluster; signed in the page
        row.locator("input.approval-key").set_input_files(
            cluster.info["approval_keys"][owner.removesuffix("-owner")])
        row.locator("button[value=approve]").click()
        page.wait_for_selector("#nothing")
        page.context.close()

    # the job page polls (htmx) until the job ends; nothing reloads it by hand
    # (a selector, not wait_for_function: the page's CSP forbids the eval that needs)
    analyst.wait_for_selector("#job-live[data-state=succeeded], #job-live[data-state=failed]",
                              timeout=600_000)
    assert analyst.locator("#job-state").inner_text() == "succeeded"
    analyst.wait_for_selector("#roc-evaluate[data-drawn='1']")
    assert analyst.locator("#lift-evaluate tbody tr").count() == 10

    api = httpx.get(f"{url}/api/v1/jobs/{job_id}/result", timeout=30, verify=cluster.info["ca"],
                    headers={"Authorization": f"Bearer {cluster.tokens()['analyst']}"}).json()
    shown = json.loads(analyst.locator("#roc-evaluate").get_attribute("data-chart") or "{}")
    assert shown == api["steps"]["evaluate"]["bank"]["metrics"]["charts"]
    auc = api["steps"]["evaluate"]["bank"]["metrics"]["auc"]
    cell = analyst.locator("#metrics-evaluate-bank tr", has_text="auc").locator("td")
    assert float(cell.inner_text()) == auc
    # every DAG node ends green
    assert analyst.locator("svg.dag g.succeeded").count() == 6
