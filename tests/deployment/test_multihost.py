"""The A.1 job across three hosts, each installed from the bundle ``sharedml deploy`` wrote.

Three network namespaces with their own addresses and names, joined by veth
links to a switch (:mod:`netns`): ``operator`` (the platform and the dealer),
``bank`` and ``partner``. The deployment is made as its operators would make
it: the plan goes through ``sharedml deploy``; each host makes its key and a
certificate request in its bundle, the CA signs the requests and sends back
only certificates; each owner makes an approval key on their own machine and
hands the node only its public half; every process runs the command line of
its bundle's systemd unit, inside its namespace. Nodes listen on every
interface and advertise their host's name. The analyst submits the A.1 job
over HTTPS (verified against the deployment CA) from outside the three hosts;
the owners sign their approvals; parties talk over mutual TLS straight to
each other. Then the same job with the partner's node killed (SIGKILL) and
started again mid-training: the job resumes and succeeds. Both runs' models
match the plaintext ones on the joined data (tolerances of tests/test_demo.py).
Needs root; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from sharedml import approvals
from sharedml.cli import _load_plugins, app
from sharedml.crypto import crl, pki
from sharedml.errors import SharedMLError
from sharedml.scenarios import a1
from sharedml.sdk import Client

from . import netns

pytestmark = pytest.mark.slow

ROWS = 6000  # as tests/test_demo.py, whose tolerances these are
SETTINGS = a1.Settings(epochs=5, batch_size=512, trees=10)
HOSTS = ("operator", "bank", "partner")
#: Who runs where: the platform and the dealer on the operator's host.
PLACES = {"platform": "operator", "dealer": "operator", "bank": "bank", "partner": "partner"}


def _cli(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, f"sharedml {' '.join(args)}:\n{result.output}"
    return result.output


@dataclass
class Site:
    lab: netns.Lab
    root: Path
    bundles: Path
    pair: Any
    tokens: dict[str, str]
    owner_keys: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"https://{self.lab.address('operator')}:8600"

    def client(self, user: str) -> Client:
        return Client(self.url, self.tokens[user], verify=str(self.root / "ca" / "ca.pem"))

    def start(self, who: str) -> None:
        """Run the ExecStart of ``who``'s systemd unit on its host, as systemd would."""
        unit = (self.bundles / who / "systemd" / f"sharedml-{who}.service").read_text()
        fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line)
        self.procs[who] = self.lab.spawn(PLACES[who], shlex.split(fields["ExecStart"]),
                                         Path(fields["WorkingDirectory"]),
                                         self.root / f"{who}.log")

    def log(self, who: str) -> str:
        return (self.root / f"{who}.log").read_text(errors="replace")[-3000:]


def _wait(predicate: Any, within: float, what: str, site: Site | None = None) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, SharedMLError):  # not up yet
            value = None
        if value:
            return value
        time.sleep(0.5)
    logs = "" if site is None else "\n".join(f"--- {w}\n{site.log(w)}" for w in PLACES)
    raise AssertionError(f"not within {within:g} s: {what}\n{logs}")


def _install(root: Path, bundles: Path, lab: netns.Lab) -> None:
    """Each host: key and request in its bundle; the CA: signs; each host: installs."""
    ca = root / "ca"
    for who, host in PLACES.items():
        names = [lab.name(host)] + ([lab.address(host)] if who == "platform" else [])
        _cli("pki", "request", str(bundles / who / "pki"), who,
             *(a for n in names for a in ("--host", n)))
        cert = root / "to-send-back" / f"{who}.pem"
        cert.parent.mkdir(exist_ok=True)
        _cli("pki", "sign", str(ca), str(bundles / who / "pki" / f"{who}.csr"), "--name", who,
             "--out", str(cert))
        _cli("pki", "install", str(bundles / who / "pki"), str(cert))
    # keys never travelled: each is in its own bundle only, the CA holds only its own
    assert sorted(p.name for p in ca.rglob("*.key")) == ["ca.key"]
    for who in PLACES:
        assert sorted(p.name for p in bundles.rglob(f"{who}.key")) == [f"{who}.key"]


def _accounts(bundles: Path) -> dict[str, str]:
    data = str(bundles / "platform" / "data")
    users = {"admin": ("admin", None), "analyst": ("analyst", None),
             "bank-owner": ("data_owner", "bank"), "partner-owner": ("data_owner", "partner")}
    tokens = {}
    for user, (role, party) in users.items():
        _cli("user", "add", user, "--role", role, "--no-totp", "--data-dir", data,
             *(("--party", party) if party else ()), stdin="a long password 123\n")
        tokens[user] = _cli("user", "token", user, "--data-dir", data).strip().splitlines()[-1]
    return tokens


def _send_audit_key(root: Path, bundles: Path) -> None:
    """The platform's operator sends its audit-checkpoint key; every node.yaml pins it."""
    sent = root / "to-send-back" / "platform-audit.pem"
    _cli("platform", "audit-key", "--data-dir", str(bundles / "platform" / "data"),
         "--out", str(sent))
    for who in PLACES:
        if who != "platform":
            shutil.copyfile(sent, bundles / who / "pki" / "platform-audit.pem")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("sites")
    lab = netns.Lab(HOSTS).open()
    try:
        _load_plugins()
        pki.init_ca(root / "ca")
        crl.refresh(root / "ca")
        pair = a1.scenario("credit", ROWS)
        datasets = {}
        for party, frame in (("bank", pair.bank), ("partner", pair.partner)):
            path = root / "hosts" / party / f"credit_{party}.csv"
            path.parent.mkdir(parents=True)
            frame.to_csv(path, index=False)
            datasets[party] = {f"credit_{party}": str(path)}
        bundles = root / "bundles"
        plan = {
            "name": "a1-credit",
            "platform": {"host": lab.name("operator")},
            "dealer": {"host": lab.name("operator")},
            "organisations": {p: {"host": lab.name(p), "datasets": datasets[p]}
                              for p in ("bank", "partner")},
            "prefix": str(bundles), "user": "root", "heartbeat_s": 0.5,
            "sharedml": str(Path(sys.executable).with_name("sharedml")),
        }
        (root / "plan.yaml").write_text(yaml.safe_dump(plan))
        subprocess.run([sys.executable, "-m", "sharedml.cli", "deploy", str(root / "plan.yaml"),
                        "--out", str(bundles), "--ca", str(root / "ca")], check=True, timeout=120)
        _install(root, bundles, lab)
        owner_keys = {}
        for party in ("bank", "partner"):  # on each owner's own machine; only .pub travels
            key, pub = approvals.keygen(root / "owners" / party, f"{party}-owner")
            shutil.copyfile(pub, bundles / party / "owners" / pub.name)
            owner_keys[party] = key
        site = Site(lab, root, bundles, pair, _accounts(bundles), owner_keys, {})
        _send_audit_key(root, bundles)
        for who in PLACES:
            site.start(who)
        admin = site.client("admin")
        _wait(lambda: {n["id"] for n in admin.nodes() if n["status"] == "online"} >= set(
            PLACES) - {"platform"}, 120, "every node online", site)
        admin.update_settings(task_timeout_s=120.0, task_max_attempts=3)
        analyst_id = next(u["id"] for u in admin.users() if u["username"] == "analyst")
        for party in ("bank", "partner"):
            with site.client(f"{party}-owner") as owner:
                ds = owner.register_dataset(party, f"credit_{party}", [])
                owner.grant("dataset", ds["id"], analyst_id, "use")
        yield site
    finally:
        lab.close()


def _run_a1(site: Site, during: Any = None) -> tuple[str, dict[str, Any]]:
    spec = a1.job_spec(site.pair, "credit_bank", "credit_partner", SETTINGS)
    with site.client("analyst") as analyst:
        job_id = analyst.submit(spec)["id"]
        for party in ("bank", "partner"):
            with site.client(f"{party}-owner") as owner:
                for approval in owner.approvals(job_id, state="pending"):
                    owner.approve(approval["id"], key=site.owner_keys[party])
        if during is not None:
            during(analyst, job_id)
        job = _wait(lambda: (j := analyst.job(job_id))["state"] in ("succeeded", "failed") and j,
                    900, f"job {job_id} ended", site)
        assert job["state"] == "succeeded", (job, site.log("partner"))
        return job_id, {"result": analyst.result(job_id), "tasks": analyst.tasks(job_id)}


def _check_parity(site: Site, job_id: str, result: dict[str, Any]) -> None:
    steps = result["steps"]
    joined = site.pair.bank.merge(site.pair.partner, on=site.pair.id_column)
    assert steps["psi"]["bank"]["metrics"]["intersection"] == len(joined)
    # the bank's operator reads its own prediction file on its own host
    predictions = site.bundles / "bank" / "work" / "jobs" / job_id / "predictions-predict_lr.csv"
    reference = a1.reference_metrics(site.pair, a1.holdout_ids(str(predictions), "id"), SETTINGS)
    lr = steps["evaluate_lr"]["bank"]["metrics"]["auc"]
    sb = steps["evaluate_sb"]["bank"]["metrics"]["auc"]
    assert lr == pytest.approx(reference["lr"]["joined"]["auc"], abs=0.01)
    assert sb == pytest.approx(reference["sb"]["joined"]["auc"], abs=0.02)
    assert lr > reference["lr"]["bank"]["auc"]  # and the partner's columns helped
    assert steps["evaluate_lr"]["partner"]["metrics"] == {}  # scores at the label holder only


def test_a1_runs_across_three_hosts_installed_from_their_bundles(site: Site) -> None:
    nodes = {n["id"]: n for n in site.client("admin").nodes()}
    # listening on 0.0.0.0, advertising the host's name
    assert nodes["bank"]["address"] == "bank.a1.test:7000"
    assert nodes["partner"]["address"] == "partner.a1.test:7000"
    assert nodes["dealer"]["address"] == "operator.a1.test:7100"
    with pytest.raises(httpx.HTTPError):  # the API speaks HTTPS only
        httpx.get(site.url.replace("https", "http") + "/api/v1/nodes", timeout=10)
    job_id, out = _run_a1(site)
    _check_parity(site, job_id, out["result"])
    assert {t["attempt"] for t in out["tasks"]} == {0}
    _check_monitoring(site, job_id)


def _check_monitoring(site: Site, job_id: str) -> None:
    """The platform's and the bank node's metrics and probes; the bank's task log."""
    ca = str(site.root / "ca" / "ca.pem")
    platform = _samples(httpx.get(site.url + "/metrics", verify=ca, timeout=30).text)
    assert platform[("sharedml_jobs", (("state", "succeeded"),))] >= 1
    assert ("sharedml_node_heartbeat_age_seconds", (("node", "partner"),)) in platform
    assert httpx.get(site.url + "/readyz", verify=ca, timeout=30).status_code == 200
    bank = f"http://{site.lab.address('bank')}:9464"
    assert httpx.get(bank + "/readyz", timeout=30).status_code == 200
    node = _samples(httpx.get(bank + "/metrics", timeout=30).text)
    assert node[("sharedml_node_bytes_sent_total", (("peer", "partner"),))] > 0
    assert node[("sharedml_node_bytes_received_total", (("peer", "dealer"),))] > 0
    assert node[("sharedml_node_tasks_total", (("component", "train"), ("result", "ok")))] >= 2
    assert node[("sharedml_node_heartbeats_total", ())] > 0
    lines = (site.bundles / "bank" / "work" / "tasks.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if r["job"] == job_id]
    assert {r["step"] for r in mine} >= {"psi", "split", "scale", "train_lr", "evaluate_sb"}
    assert all(set(r) == {"time", "job", "step", "attempt", "party", "component", "result",
                          "seconds", "bytes_sent", "bytes_received"} for r in mine)
    text = "\n".join(lines)
    ids = site.pair.bank[site.pair.id_column].astype(str)
    assert not any(f'"{i}"' in text for i in ids[:500])  # sizes and times, never a value


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a1_survives_the_partner_node_killed_and_restarted_mid_training(site: Site) -> None:
    """Killed while training SecureBoost, after the SS-LR model was trained: the node
    resumes from its saved state, the SS-LR model part included (as its model file)."""
    def kill_and_restart(analyst: Client, job_id: str) -> None:
        def training() -> bool:
            return any(t["step_id"] == "train_sb" and t["party"] == "partner"
                       and t["state"] == "running" for t in analyst.tasks(job_id))

        _wait(training, 600, "partner training SecureBoost", site)
        time.sleep(0.5)  # into the step (SecureBoost trains for seconds on an idle machine)
        site.procs["partner"].send_signal(signal.SIGKILL)  # a crash: no goodbye, no flush
        site.procs["partner"].wait(10)
        time.sleep(1.0)
        site.start("partner")  # what Restart=on-failure does

    job_id, out = _run_a1(site, during=kill_and_restart)
    _check_parity(site, job_id, out["result"])
    attempts: dict[str, set[int]] = {}
    for t in out["tasks"]:
        attempts.setdefault(t["step_id"], set()).add(t["attempt"])
    for step in ("psi", "split", "scale", "train_lr", "predict_lr", "evaluate_lr"):
        assert attempts[step] == {0}, f"{step} ran again: the node did not resume"
    assert max(attempts["train_sb"]) >= 1  # the step it died in was retried
    assert "resumes from its saved state" in site.log("partner")
