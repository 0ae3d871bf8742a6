"""The scheduler's state machine, retries, timeouts, cancel and restart recovery,
on a real SQLite store; nodes are driven through the scheduler's own node calls
(the gRPC service in front of them is tested in test_cluster_jobs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError, PolicyDenied
from sharedml.platform.clock import ManualClock
from sharedml.platform.job_lifecycle import IllegalTransition, move
from sharedml.platform.job_plan import decompose
from sharedml.platform.scheduler import Scheduler, SchedulerConfig
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import Job, Task

SPEC: dict[str, Any] = {
    "name": "two-steps",
    "parties": {"bank": {"dataset": "bank_customers", "label": "y"}, "shop": {"dataset": "shop"}},
    "steps": [{"describe": {}}, {"id": "again", "describe": {"sleep_s": 0.1}}],
}


def open_store(folder: Path) -> Store:
    store = Store(sqlite_url(folder))
    store.upgrade()
    return store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path)


def make(store: Store, clock: ManualClock, **kw: Any) -> Scheduler:
    approvals = kw.pop("approvals", None)
    sched = Scheduler(store, SchedulerConfig(**kw), clock=clock, approvals=approvals)
    for party in ("bank", "shop"):
        sched.node_hello(party, f"127.0.0.1:{5000 + len(party)}")
    return sched


def job_of(store: Store, job_id: str) -> Job:
    with store.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def tasks_of(store: Store, job_id: str) -> list[Task]:
    with store.session() as s:
        return list(s.query(Task).filter_by(job_id=job_id).order_by(Task.attempt, Task.step_id))


def run_step(sched: Scheduler, step: str, ok: dict[str, bool] | None = None) -> None:
    """Both nodes pick up their task of ``step`` and report."""
    picked = {}
    for party in ("bank", "shop"):
        orders, _ = sched.node_beat(party, {})
        (picked[party],) = [o for o in orders if o["step_id"] == step]
    for party, order in picked.items():
        good = (ok or {}).get(party, True)
        sched.task_report(party, order["task_id"], good, {"rows": 10} if good else {},
                          "" if good else f"boom at {party}", 0.5)


def test_moves_follow_the_table() -> None:
    job = Job(id="j", state="pending")
    clock = ManualClock()
    move(job, "running", clock.now())
    move(job, "succeeded", clock.now())
    assert job.finished_at == clock.now() and job.progress == 1.0
    with pytest.raises(IllegalTransition, match="succeeded; it cannot become running"):
        move(job, "running", clock.now())
    task = Task(id="t", state="pending", step_id="psi", party="bank")
    with pytest.raises(IllegalTransition):
        move(task, "succeeded", clock.now())


def test_decompose_resolves_transitive_needs() -> None:
    spec = jobspec.load({
        "parties": {"a": {}, "b": {}},
        "steps": [
            {"id": "x", "describe": {}},
            {"id": "y", "describe": {}, "needs": []},
            {"id": "z", "describe": {}, "needs": ["x"]},
            {"id": "w", "describe": {}, "needs": ["z", "y"]},
        ],
    })
    plans = {p.id: p for p in decompose(spec)}
    assert plans["y"].needs == ()
    assert plans["w"].ancestors == ("x", "y", "z")
    assert plans["w"].parties == ("a", "b")


def test_submit_rejects_bad_spec_naming_the_field(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock)
    bad = {**SPEC, "steps": [{"describe": {"sleep_s": -1}}]}
    with pytest.raises(ConfigError, match=r"steps\[0\]\.describe\.sleep_s"):
        sched.submit(bad)
    with pytest.raises(ConfigError, match="unknown step 'nope'"):
        sched.submit({**SPEC, "steps": [{"nope": {}}]})


def test_job_runs_step_by_step_to_success(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock)
    job_id = sched.submit(SPEC)
    assert job_of(store, job_id).state == "pending"
    assert len(tasks_of(store, job_id)) == 4  # 2 steps x 2 parties
    sched.tick()
    assert job_of(store, job_id).state == "running"
    # the second step waits for the first
    orders, _ = sched.node_beat("bank", {})
    assert [o["step_id"] for o in orders] == ["describe"]
    assert orders[0]["peers"] == {"bank": "127.0.0.1:5004", "shop": "127.0.0.1:5004"}
    sched.node_beat("bank", {orders[0]["task_id"]: 0.5})
    sched.tick()
    assert 0.1 < job_of(store, job_id).progress < 0.5
    run_step(sched, "describe")
    sched.tick()
    orders, _ = sched.node_beat("shop", {})
    assert [o["step_id"] for o in orders] == ["again"]
    assert orders[0]["ancestors"] == ["describe"]
    run_step(sched, "again")
    job = job_of(store, job_id)
    assert job.state == "succeeded" and job.progress == 1.0 and job.reason is None
    assert job.result is not None
    assert job.result["steps"]["again"]["shop"]["metrics"] == {"rows": 10}
    assert {t.state for t in tasks_of(store, job_id)} == {"succeeded"}


def test_failed_step_is_retried_on_all_parties_then_fails(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock, max_attempts=2)
    job_id = sched.submit(SPEC)
    sched.tick()
    bank_orders, _ = sched.node_beat("bank", {})
    shop_orders, _ = sched.node_beat("shop", {})
    sched.task_report("shop", shop_orders[0]["task_id"], False, {}, "disk full at shop", 0.1)
    # the bank's task of the failed attempt is canceled; it learns so on its next beat
    _, cancels = sched.node_beat("bank", {bank_orders[0]["task_id"]: 0.3})
    assert cancels == [bank_orders[0]["task_id"]]
    job = job_of(store, job_id)
    assert job.state == "running" and "retrying step 'describe' (attempt 2 of 2)" in (job.reason or "")
    retry = [t for t in tasks_of(store, job_id) if t.attempt == 1]
    assert sorted(t.party for t in retry) == ["bank", "shop"]
    sched.tick()
    run_step(sched, "describe", ok={"bank": False})
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert job.reason == (
        "step 'describe' failed at party 'bank' (attempt 2 of 2): boom at bank"
    )
    assert all(t.state in ("failed", "canceled") for t in tasks_of(store, job_id))


def test_silent_node_times_out_naming_party_and_step(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock, task_timeout_s=5, max_attempts=1)
    job_id = sched.submit(SPEC)
    sched.tick()
    sched.node_beat("bank", {})
    sched.node_beat("shop", {})
    for _ in range(3):  # the bank keeps beating, the shop went silent
        clock.advance(2)
        (tid,) = [t.id for t in tasks_of(store, job_id) if (t.party, t.step_id) == ("bank", "describe")]
        sched.node_beat("bank", {tid: 0.2})
        sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert "no heartbeat from party 'shop' (node 'shop') for 5 s during step 'describe'" in (
        job.reason or ""
    )


def test_offline_node_fails_a_step_that_cannot_start(store: Store, clock: ManualClock) -> None:
    sched = Scheduler(store, SchedulerConfig(task_timeout_s=5, max_attempts=1), clock=clock)
    sched.node_hello("bank", "127.0.0.1:1")
    job_id = sched.submit(SPEC)
    sched.tick()
    assert "waiting for the node of party 'shop'" in (job_of(store, job_id).reason or "")
    assert job_of(store, job_id).state == "pending"
    clock.advance(6)
    sched.node_beat("bank", {})
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed" and "party 'shop' is offline" in (job.reason or "")


def test_cancel_stops_tasks_and_cannot_repeat(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock)
    job_id = sched.submit(SPEC)
    sched.tick()
    orders, _ = sched.node_beat("bank", {})
    sched.cancel(job_id, by="alice")
    _, cancels = sched.node_beat("bank", {orders[0]["task_id"]: 0.1})
    assert cancels == [orders[0]["task_id"]]
    job = job_of(store, job_id)
    assert job.state == "canceled" and job.reason == "canceled by alice"
    assert {t.state for t in tasks_of(store, job_id)} == {"canceled"}
    with pytest.raises(IllegalTransition):
        sched.cancel(job_id)
    # a late report of a canceled task changes nothing
    sched.task_report("bank", orders[0]["task_id"], True, {"rows": 1}, "", 1.0)
    assert job_of(store, job_id).state == "canceled"


def test_approval_gate_holds_then_refuses(store: Store, clock: ManualClock) -> None:
    decision: dict[str, Any] = {"wait": "waiting for the owner of 'shop' to approve"}

    def gate(session: Any, job: Job) -> str | None:
        if decision.get("deny"):
            raise PolicyDenied("the owner of 'shop' rejected this use")
        return decision.get("wait")

    sched = make(store, clock, approvals=gate)
    job_id = sched.submit(SPEC)
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "pending" and job.reason == decision["wait"]
    assert sched.node_beat("bank", {}) == ([], [])
    decision["deny"] = True
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed" and "rejected this use" in (job.reason or "")


@pytest.mark.parametrize("policy", ["resume", "fail"])
def test_restart_loses_no_job_state(tmp_path: Path, clock: ManualClock, policy: str) -> None:
    store = open_store(tmp_path)
    sched = make(store, clock, task_timeout_s=5)
    job_id = sched.submit(SPEC)
    sched.tick()
    run_step(sched, "describe")
    sched.tick()
    first, _ = sched.node_beat("bank", {})  # the bank got step 'again'; the shop not yet
    store.dispose()
    clock.advance(60)  # the platform was down for a minute

    store = open_store(tmp_path)
    sched = Scheduler(store, SchedulerConfig(task_timeout_s=5, on_restart=policy),  # type: ignore[arg-type]
                      clock=clock)
    assert sched.recover() == [job_id]
    sched.tick()
    job = job_of(store, job_id)
    if policy == "fail":
        assert job.state == "failed"
        assert job.reason == "the platform restarted while the job was running"
        return
    assert job.state == "running" and "resumed after a platform restart" in (job.reason or "")
    assert job.result is not None and set(job.result["steps"]["describe"]) == {"bank", "shop"}
    # the bank still runs its task; the shop never got it and gets it now
    orders, cancels = sched.node_beat("bank", {first[0]["task_id"]: 0.4})
    assert orders == [] and cancels == []
    orders, _ = sched.node_beat("shop", {})
    assert [o["step_id"] for o in orders] == ["again"]
    sched.task_report("bank", first[0]["task_id"], True, {"rows": 3}, "", 1.0)
    sched.task_report("shop", orders[0]["task_id"], True, {"rows": 4}, "", 1.0)
    assert job_of(store, job_id).state == "succeeded"


def test_a_node_acts_only_on_its_own_party_tasks(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock)
    job_id = sched.submit(SPEC)
    sched.tick()
    (shop_order,) = sched.node_beat("shop", {})[0]
    # the bank reports the shop's task and lists it as its own: neither counts
    sched.task_report("bank", shop_order["task_id"], True, {"rows": 1}, "", 0.1)
    _, cancels = sched.node_beat("bank", {shop_order["task_id"]: 0.9})
    assert cancels == [shop_order["task_id"]]
    shop_task = next(t for t in tasks_of(store, job_id) if t.id == shop_order["task_id"])
    assert (shop_task.state, shop_task.progress) == ("running", 0.0)
    assert sched.finished([job_id, "f" * 32]) == ["f" * 32]


def test_a_restarted_node_fails_its_running_step_which_is_retried(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock, max_attempts=2)
    sched.node_hello("shop", "127.0.0.1:7", boot="first")
    job_id = sched.submit(SPEC)
    sched.tick()
    sched.node_beat("shop", {})
    sched.node_hello("shop", "127.0.0.1:7", boot="first")  # reconnected, same process
    assert job_of(store, job_id).attempts == 0
    sched.node_hello("shop", "127.0.0.1:8", boot="second")  # a new process
    job = job_of(store, job_id)
    assert job.attempts == 1
    assert "the node of party 'shop' restarted during step 'describe'" in (job.reason or "")
    sched.tick()
    orders, _ = sched.node_beat("shop", {})
    assert [(o["step_id"], o["attempt"]) for o in orders] == [("describe", 1)]


def test_a_retry_waits_one_timeout_for_a_node_to_return(store: Store, clock: ManualClock) -> None:
    sched = make(store, clock, task_timeout_s=5, max_attempts=2)
    job_id = sched.submit(SPEC)
    sched.tick()
    sched.node_beat("bank", {})
    clock.advance(6)  # both went silent: the step fails and is retried
    sched.tick()
    assert job_of(store, job_id).attempts == 1
    clock.advance(3)
    sched.node_beat("bank", {})
    sched.tick()
    assert "waiting for the node of party 'shop'" in (job_of(store, job_id).reason or "")
    sched.node_beat("shop", {})  # back within the timeout
    sched.tick()
    orders, _ = sched.node_beat("shop", {})
    assert [(o["step_id"], o["attempt"]) for o in orders] == [("describe", 1)]
