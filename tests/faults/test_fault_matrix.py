"""The fault matrix (issue 14): each role killed at each step of the A.1 job on a
``sharedml up`` cluster.

Roles: the two data parties' node agents (``bank``, ``partner``: a party's
process *is* its node agent there), the dealer node, and the platform. A role
is killed (SIGKILL: nothing flushed, no goodbye) as soon as the platform has
dispatched the step — the step boundary, seen through the API — and started
again at once, as an operator's supervisor would (a node then holds none of
the job's state). The outcome must be, within the task timeout and its slack:

* a **resume**: the killed step succeeds on its retry (the dealer, which
  keeps nothing between steps; a party killed before it held any state) —
  the job is then canceled, the rest of it being the platform case's — or
  the job succeeds (the platform restarted), or
* a **clear failure naming the killed role**, at once when a restarted node
  lost the job's state (no retry can help: issue 14 item 8);

and no job is left pending or running. The results table is printed. (The
platform's test is the baseline too: its job must succeed, so the A.1 job
does run on this cluster.)

CI (``make test``) runs one case per failure mode (4 jobs; :data:`MODES`),
the first steps with the roles in turn — the dealer's at the first step it has
a task in (``train_lr``: it takes no part in psi, split or scale) — and kills
the platform at every third step (one job). The later steps' cases repeat
those modes — a party killed holding state fails at once naming it, the
dealer's step resumes — after a longer run up to them: ``make test-full``
(``SHAREDML_FULL_MATRIX=1``, or ``SHAREDML_FAULT_MATRIX=full`` as before) runs
every role at every step it takes part in (24 jobs) and kills the platform at
every step.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.scenarios.a1 import Settings, job_spec
from sharedml.scenarios.credit import credit_population

pytestmark = pytest.mark.slow

#: A running task whose node is silent this long fails (the cluster's task timeout);
#: long enough for a killed node, started again at once, to say hello within it (a
#: Python start on a loaded machine), so the retry meets a node without the job's state.
TIMEOUT = 10.0
#: What a case may take from the kill to a final job state: the timeout, a retry's
#: timeout, a node's restart (Python start-up on a loaded machine) and polling.
WITHIN = 3 * TIMEOUT + 75.0
NODES = ("bank", "partner", "dealer")
SMALL = Settings(epochs=1, batch_size=256, trees=1, depth=2, bins=8)


class Api:
    def __init__(self, cluster: LocalDeployment) -> None:
        self.cluster = cluster
        self.url = cluster.info["url"] + "/api/v1"
        self.token = cluster.tokens()["analyst"]
        self.tls = ssl.create_default_context(cafile=cluster.info["ca"])

    def get(self, path: str) -> Any:
        for _ in range(100):  # the platform may be down for a moment: it is killed too
            try:
                r = httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"},
                              timeout=30, verify=self.tls)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"GET {path} kept failing")

    def submit(self, spec: dict[str, Any]) -> str:
        r = httpx.post(self.url + "/jobs", json={"spec": spec, "max_attempts": 2},
                       headers={"Authorization": f"Bearer {self.token}"}, timeout=60,
                       verify=self.tls)
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        self.cluster.approve_all(job_id)
        return job_id

    def wait_step(self, job_id: str, step: str, within: float = 600.0) -> None:
        """Until ``step`` is dispatched (its tasks running), polling every 50 ms."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            tasks = self.get(f"/jobs/{job_id}/tasks")
            if any(t["step_id"] == step and t["state"] == "running" for t in tasks):
                return
            job = self.get(f"/jobs/{job_id}")
            if job["state"] == "succeeded" and any(
                t["step_id"] == step and t["state"] == "succeeded" for t in tasks):
                return  # the step ran between two looks (while the platform was down)
            if job["state"] not in ("pending", "running"):
                raise AssertionError(f"job ended before step {step}: {job}")
            time.sleep(0.05)
        raise AssertionError(f"step {step} of job {job_id} was not dispatched in {within:g} s")

    def wait_final(self, job_id: str, within: float, past: str | None = None) -> dict[str, Any]:
        """Until the job ends or, with ``past``, step ``past`` succeeds on a later attempt
        (the job resumed: it is then canceled, the rest of it being the baseline's)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.get(f"/jobs/{job_id}")
            if job["state"] not in ("pending", "running"):
                return job
            if past is not None and self._resumed(job_id, past):
                self.post(f"/jobs/{job_id}/cancel")
                return {**self.get(f"/jobs/{job_id}"), "resumed": True}
            time.sleep(0.2)
        return self.get(f"/jobs/{job_id}")

    def _resumed(self, job_id: str, step: str) -> bool:
        tasks = [t for t in self.get(f"/jobs/{job_id}/tasks") if t["step_id"] == step]
        last = max((t["attempt"] for t in tasks), default=0)
        return last > 0 and all(t["state"] == "succeeded" for t in tasks if t["attempt"] == last)

    def post(self, path: str) -> None:
        r = httpx.post(self.url + path, headers={"Authorization": f"Bearer {self.token}"},
                       timeout=60, verify=self.tls)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("faults")
    bank, partner = credit_population(rows=800).write(root / "data")
    prepare(root / "cluster", DeploymentSpec(
        {"bank": {"bank_customers": bank}, "partner": {"partner_spend": partner}},
        heartbeat_s=0.3, task_timeout_s=TIMEOUT, max_attempts=2,
    ))
    with LocalDeployment(root / "cluster") as running:
        running.start(wait=120)
        yield running


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    pair = credit_population(rows=10)  # names and columns only: the nodes hold the data
    return job_spec(pair, "bank_customers", "partner_spend", SMALL)


@pytest.fixture(scope="module")
def table() -> list[tuple[str, str, str, float, str]]:
    return []


def _print(rows: list[tuple[str, str, str, float, str]]) -> None:
    print("\nfault matrix (A.1 job, sharedml up, SIGKILL at the step's dispatch, "
          f"task timeout {TIMEOUT:g} s):")
    print(f"{'role':9} {'step':12} {'outcome':9} {'s':>6}  reason")
    for role, step, outcome, seconds, reason in rows:
        print(f"{role:9} {step:12} {outcome:9} {seconds:6.1f}  {reason[:150]}")


def _steps(spec: dict[str, Any]) -> list[str]:
    return [s.get("id", next(k for k in s if k not in ("id", "needs"))) for s in spec["steps"]]


#: The A.1 job's steps: psi, split, scale, then train/predict/evaluate twice.
STEPS = 9
#: One case per failure mode (role, step index), what CI runs (see the module docstring).
MODES = (
    ("bank", 0),  # a party killed before it holds any of the job's state: the step resumes
    ("partner", 1),  # a party killed holding earlier steps' state: fails at once, naming it
    ("dealer", 3),  # the dealer inside a step it deals for (train_lr; it has no task in
    #                 psi, split or scale), keeping nothing between steps: the step resumes
    ("bank", 3),  # a party killed inside an MPC training step: fails, naming it
)


def _roles(index: int) -> tuple[str, ...]:
    """The node roles with a task at step ``index`` of the A.1 job: the dealer node only
    at the steps it deals for (train, predict, evaluate; not psi, split, scale)."""
    return NODES if index >= 3 else NODES[:2]


def _full() -> bool:
    return (os.environ.get("SHAREDML_FULL_MATRIX") == "1"
            or os.environ.get("SHAREDML_FAULT_MATRIX") == "full")


def _cases() -> list[tuple[str, int]]:
    if _full():
        return [(role, i) for i in range(STEPS) for role in _roles(i)]
    return list(MODES)


def _platform_kills(steps: list[str]) -> list[str]:
    """The steps at which the platform is killed: every step in the full matrix, every
    third in CI (a restart is the same at any step: the job's state is in its database)."""
    return steps if _full() else steps[::3]


def _names(role: str, reason: str) -> bool:
    """Whether the job's reason puts the failure down to ``role``, first."""
    cause = reason.split("\n")[0].split(": ", 1)[0]  # "step 's' failed at party 'p' (...)"
    return f"party {role!r}" in cause or f"the dealer {role!r}" in cause


def test_the_matrix_covers_the_a1_job(spec: dict[str, Any]) -> None:
    assert _steps(spec) == ["psi", "split", "scale", "train_lr", "predict_lr", "evaluate_lr",
                            "train_sb", "predict_sb", "evaluate_sb"]
    covered = {(r, i) for r, i in _cases()}
    assert {r for r, _ in covered} == set(NODES)
    assert all(r in _roles(i) for r, i in covered), covered  # a role killed where it works
    from sharedml.components import jobspec
    from sharedml.platform.job_plan import decompose

    plans = decompose(jobspec.load(spec))
    assert [i for i, p in enumerate(plans) if p.dealer] == [i for i in range(STEPS) if "dealer" in
                                                           _roles(i)]
    if _full():
        assert covered == {(r, i) for i in range(STEPS) for r in _roles(i)}


@pytest.mark.parametrize("role, index", _cases(), ids=[f"{r}-{i}" for r, i in _cases()])
def test_killing_a_node_at_a_step(
    cluster: LocalDeployment, spec: dict[str, Any], table: list[Any], role: str, index: int
) -> None:
    api = Api(cluster)
    step = _steps(spec)[index]
    job_id = api.submit(spec)
    api.wait_step(job_id, step)
    cluster.kill(role)
    killed = time.monotonic()
    cluster.start_node(role)  # restarted at once: it lost every job's working state
    job = api.wait_final(job_id, WITHIN, past=step)
    took = time.monotonic() - killed
    outcome = "resumed" if job.get("resumed") or job["state"] == "succeeded" else job["state"]
    table.append((role, step, outcome, took, (job.get("reason") or "").replace("\n", " | ")))
    cluster.wait_ready(120)
    assert job["state"] in ("succeeded", "failed", "canceled"), f"job left {job['state']}: {job}"
    assert job["state"] != "canceled" or job.get("resumed"), job
    if job["state"] == "failed":
        assert _names(role, job["reason"]), job["reason"]
    tasks = api.get(f"/jobs/{job_id}/tasks")
    assert not [t for t in tasks if t["state"] in ("pending", "running")], tasks


def test_killing_the_platform_during_the_job_resumes(
    cluster: LocalDeployment, spec: dict[str, Any], table: list[Any]
) -> None:
    api = Api(cluster)
    job_id = api.submit(spec)
    for step in _platform_kills(_steps(spec)):
        if api.get(f"/jobs/{job_id}")["state"] == "succeeded":  # the last steps ran while
            table.append(("platform", step, "done", 0.0, "the job finished first"))  # it was down
            continue
        api.wait_step(job_id, step)
        cluster.kill("platform")
        killed = time.monotonic()
        cluster.start_platform()
        cluster.wait_ready(120)
        table.append(("platform", step, "restarted", time.monotonic() - killed, ""))
    job = api.wait_final(job_id, WITHIN)
    assert job["state"] == "succeeded", job
    tasks = api.get(f"/jobs/{job_id}/tasks")
    assert not [t for t in tasks if t["state"] in ("pending", "running")], tasks


def test_no_job_is_left_pending(
    cluster: LocalDeployment, table: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():  # the results table, in every run's output
        _print(table)
    jobs = Api(cluster).get("/jobs")
    assert not [j for j in jobs if j["state"] in ("pending", "running")], jobs
