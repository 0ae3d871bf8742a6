"""Regenerate the console screenshots in this folder (README, "A deployment on one machine").

Real pages of a real run: a local cluster (platform, two data nodes, the dealer;
``sharedml up``'s code) runs the A.1 credit job (examples/credit_ss_lr_cluster.yaml)
and the same job with SecureBoost, both approved by both owners with their keys;
headless chromium (Debian's, as the browser tests drive it) then saves the home
page of a data owner with a pending approval, the job builder on the A.1
template, the finished job's page, the SecureBoost job's feature importances,
the model versions and one version's page, the nodes with their statistics and
the audit log. About four minutes on an idle machine::

    .venv/bin/python docs/console/screenshots.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "tests" / "platform" / "console")]

from console_browser import chromium, log_in, missing  # noqa: E402

from sharedml.platform.local_deployment import (  # noqa: E402
    DeploymentSpec,
    LocalDeployment,
    prepare,
)
from sharedml.scenarios.credit import credit_population  # noqa: E402

SPEC = ROOT / "examples" / "credit_ss_lr_cluster.yaml"
VIEW = {"width": 1280, "height": 860}
NAMES = ("home", "builder", "job", "trees", "models", "model", "nodes", "audit")


def trees_spec() -> dict[str, Any]:
    """The A.1 job with SecureBoost in place of SS-LR (its page shows importances)."""
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    spec["name"] = "credit-secureboost"
    spec["steps"] = [{"train": {"model": "secureboost", "protocol": "ss", "n_estimators": 5,
                                "max_depth": 3}} if "train" in step else step
                     for step in spec["steps"] if "scale" not in step]
    return spec


def run_jobs(cluster: LocalDeployment) -> tuple[str, str]:
    """A.1 and its SecureBoost twin approved by both owners and run to their end (the
    first version tagged ``production``); a third one left pending."""
    done = []
    with cluster.client("analyst") as analyst:
        for spec in (SPEC, trees_spec()):
            job_id = analyst.submit(spec)["id"]
            cluster.approve_all(job_id)
            job = analyst.wait(job_id, timeout=900)
            if job["state"] != "succeeded":
                raise SystemExit(f"job {job_id} ended {job['state']}: {job.get('reason')}")
            done.append(job_id)
        analyst.submit(SPEC)
    with cluster.client("admin") as admin:
        admin.tag_model("credit-ss-lr@1", "production")
    return done[0], done[1]


def shoot(url: str, passwords: dict[str, str], job_id: str, trees_id: str) -> None:
    with chromium() as browser:
        def page_as(user: str) -> object:
            context = browser.new_context(ignore_https_errors=True, viewport=VIEW)
            page = context.new_page()
            log_in(page, url, user, passwords[user])
            return page

        owner = page_as("bank-owner")
        owner.screenshot(path=str(OUT / "home.png"), full_page=True)
        analyst = page_as("analyst")
        analyst.goto(f"{url}/console/jobs/new?template=a1")
        analyst.screenshot(path=str(OUT / "builder.png"), full_page=True)
        analyst.goto(f"{url}/console/jobs/{job_id}")
        analyst.wait_for_selector("#roc-evaluate[data-drawn='1']")
        analyst.screenshot(path=str(OUT / "job.png"), full_page=True)
        analyst.goto(f"{url}/console/jobs/{trees_id}")
        analyst.wait_for_selector("#importances")
        analyst.locator("#importances").screenshot(path=str(OUT / "trees.png"))
        analyst.goto(f"{url}/console/models")
        analyst.screenshot(path=str(OUT / "models.png"), full_page=True)
        analyst.goto(f"{url}/console/models/credit-ss-lr@production")
        analyst.wait_for_selector("#parts")
        analyst.screenshot(path=str(OUT / "model.png"), full_page=True)
        admin = page_as("admin")
        admin.goto(f"{url}/console/nodes")
        admin.screenshot(path=str(OUT / "nodes.png"), full_page=True)
        admin.goto(f"{url}/console/audit")
        admin.click("#verify-chain")
        admin.wait_for_selector("#chain-ok")
        admin.screenshot(path=str(OUT / "audit.png"), full_page=False)


def main() -> None:
    reason = missing()
    if reason:
        raise SystemExit(f"cannot take screenshots: {reason}")
    work = Path(tempfile.mkdtemp(prefix="console-shots-"))
    bank, partner = credit_population(rows=3000).write(work / "data")
    prepare(work / "cluster", DeploymentSpec({"bank": {"credit_bank": bank},
                                              "partner": {"credit_partner": partner}},
                                             task_timeout_s=120))
    with LocalDeployment(work / "cluster") as cluster:
        cluster.start(wait=120)
        done, trees = run_jobs(cluster)
        passwords = json.loads((cluster.root / "passwords.json").read_text())
        shoot(cluster.info["url"], passwords, done, trees)
    for name in NAMES:
        print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()
