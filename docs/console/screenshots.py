"""Regenerate the console screenshots in this folder (README, "A deployment on one machine").

Real pages of a real run: a local cluster (platform, two data nodes, the dealer;
``sharedml up``'s code) runs the A.1 credit job (examples/credit_ss_lr_cluster.yaml)
approved by both owners with their keys; headless chromium (Debian's, as the
browser tests drive it) then saves the home page of a data owner with a pending
approval, the job builder on the A.1 template, the finished job's page and the
audit log. About three minutes on an idle machine::

    .venv/bin/python docs/console/screenshots.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

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


def run_a1(cluster: LocalDeployment) -> tuple[str, str]:
    """A.1 approved by both owners and run to its end; a second one left pending."""
    with cluster.client("analyst") as analyst:
        done = analyst.submit(SPEC)["id"]
        cluster.approve_all(done)
        job = analyst.wait(done, timeout=900)
        if job["state"] != "succeeded":
            raise SystemExit(f"the A.1 job ended {job['state']}: {job.get('reason')}")
        pending = analyst.submit(SPEC)["id"]
    return done, pending


def shoot(url: str, passwords: dict[str, str], job_id: str) -> None:
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
        admin = page_as("admin")
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
        done, _ = run_a1(cluster)
        passwords = json.loads((cluster.root / "passwords.json").read_text())
        shoot(cluster.info["url"], passwords, done)
    for name in ("home", "builder", "job", "audit"):
        print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()
