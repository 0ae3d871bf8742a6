"""The scheduler's dealer tasks: one per step the dealer takes part in (the step's
roles name it: a secret-shared fit, not psi or split), none for a job that
computes on no secret shares; only a node registered as a dealer gets them; the
dealer's silence fails the step naming the dealer. On a real SQLite store, nodes
driven through the scheduler's own node calls (the gRPC path is in
test_cluster_jobs_dealer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedml.components import jobspec
from sharedml.components.dealer import needs_dealer
from sharedml.errors import ConfigError, PolicyDenied
from sharedml.platform.clock import ManualClock
from sharedml.platform.job_plan import decompose
from sharedml.platform.scheduler import Scheduler, SchedulerConfig
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import Job, Task

PARTIES = {"bank": {"dataset": "bank_customers", "label": "y"}, "shop": {"dataset": "shop"}}


def job_spec(train: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "lr",
        "parties": PARTIES,
        "steps": [{"psi": {}}, {"split": {}}, {"train": {"model": "logistic_regression", **train}}],
    }


SS = job_spec({})  # protocol: ss is the default
HE = job_spec({"protocol": "he"})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(sqlite_url(tmp_path))
    store.upgrade()
    return store


def make(store: Store, clock: ManualClock, dealer_role: str | None = "dealer") -> Scheduler:
    sched = Scheduler(store, SchedulerConfig(task_timeout_s=10, max_attempts=1), clock=clock)
    sched.node_hello("bank", "127.0.0.1:5001")
    sched.node_hello("shop", "127.0.0.1:5002")
    if dealer_role is not None:
        sched.node_hello("dealer", "127.0.0.1:5003", role=dealer_role)
    return sched


def tasks_of(store: Store, job_id: str) -> list[Task]:
    with store.session() as s:
        return list(s.query(Task).filter_by(job_id=job_id).order_by(Task.step_id, Task.party))


def job_of(store: Store, job_id: str) -> Job:
    with store.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def orders(sched: Scheduler, node: str) -> list[dict[str, Any]]:
    got, _ = sched.node_beat(node, {})
    return got


def to_train(sched: Scheduler, job_id: str) -> None:
    """Run psi and split (the dealer's part of neither) to success at both data nodes."""
    sched.tick()
    for step in ("psi", "split"):
        for node in ("bank", "shop"):
            (order,) = [o for o in orders(sched, node) if o["job_id"] == job_id]
            assert order["step_id"] == step and order["dealer"] is None
            sched.task_report(node, order["task_id"], True, {}, "", 0.1)


def test_the_dealer_decision_is_the_runners() -> None:
    assert needs_dealer(jobspec.load(SS))
    assert not needs_dealer(jobspec.load(HE))
    assert not needs_dealer(jobspec.load(job_spec({"provider": "he"})))  # Paillier-made randomness
    plans = decompose(jobspec.load(SS))
    assert [(p.id, p.dealer, p.peers) for p in plans] == [
        ("psi", None, ("bank", "shop")),  # the dealer takes no part: no task, not a peer
        ("split", None, ("bank", "shop")),
        ("train", "dealer", ("bank", "shop", "dealer")),
    ]
    assert all(p.dealer is None for p in decompose(jobspec.load(HE)))


def test_an_ss_job_gets_a_dealer_task_for_its_dealt_steps_and_an_he_job_none(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock)
    ss_id, he_id = sched.submit(SS), sched.submit(HE)
    assert [(t.step_id, t.party) for t in tasks_of(store, ss_id)] == [
        ("psi", "bank"), ("psi", "shop"), ("split", "bank"), ("split", "shop"),
        ("train", "bank"), ("train", "dealer"), ("train", "shop"),
    ]
    assert [(t.step_id, t.party) for t in tasks_of(store, he_id)] == [
        ("psi", "bank"), ("psi", "shop"), ("split", "bank"), ("split", "shop"),
        ("train", "bank"), ("train", "shop"),
    ]
    sched.tick()
    assert orders(sched, "dealer") == []  # psi: the dealer's part of no job
    bank = {o["job_id"]: o for o in orders(sched, "bank")}
    assert set(bank[ss_id]["peers"]) == {"bank", "shop"} and bank[ss_id]["dealer"] is None
    assert set(bank[he_id]["peers"]) == {"bank", "shop"} and bank[he_id]["dealer"] is None
    sched.task_report("bank", bank[ss_id]["task_id"], True, {"rows": 10}, "", 0.1)
    (shop,) = [o for o in orders(sched, "shop") if o["job_id"] == ss_id]
    sched.task_report("shop", shop["task_id"], True, {"rows": 10}, "", 0.1)
    for node in ("bank", "shop"):  # split
        (order,) = [o for o in orders(sched, node) if o["job_id"] == ss_id]
        assert order["step_id"] == "split" and order["dealer"] is None
        sched.task_report(node, order["task_id"], True, {}, "", 0.1)

    # train deals (it starts as split ends): the dealer's task, its channels reach it
    (dealt,) = orders(sched, "dealer")
    assert (dealt["job_id"], dealt["step_id"], dealt["dealer"]) == (ss_id, "train", "dealer")
    assert dealt["parties"] == PARTIES  # public metadata only; the dealer has no dataset
    got = {n: next(o for o in orders(sched, n) if o["job_id"] == ss_id) for n in ("bank", "shop")}
    assert got["bank"]["peers"] == {
        "bank": "127.0.0.1:5001", "shop": "127.0.0.1:5002", "dealer": "127.0.0.1:5003",
    }
    assert got["bank"]["dealer"] == "dealer" and dealt["peers"] == got["bank"]["peers"]
    # the step succeeds only when the dealer's task has too; its counts are in the result
    for node in ("bank", "shop"):
        sched.task_report(node, got[node]["task_id"], True, {}, "", 0.1)
    assert job_of(store, ss_id).state == "running"
    sched.task_report("dealer", dealt["task_id"], True, {"runtimes": 1, "requests": 40}, "", 0.1)
    job = job_of(store, ss_id)
    assert job.state == "succeeded", job.reason
    assert job.result["steps"]["train"]["dealer"]["metrics"] == {"runtimes": 1, "requests": 40}
    assert "dealer" not in job.result["steps"]["psi"]


def test_only_a_node_registered_as_dealer_gets_dealer_tasks(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock, dealer_role="party")  # a node named dealer, but a party's node
    job_id = sched.submit(SS)
    to_train(sched, job_id)
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert "dealer node 'dealer'" in job.reason and "registered as a party node" in job.reason
    assert orders(sched, "dealer") == []
    # the role is the one registered: a node cannot turn itself into a dealer later
    with pytest.raises(PolicyDenied, match="registered as a party node"):
        sched.node_hello("dealer", "127.0.0.1:5003", role="dealer")
    with pytest.raises(ConfigError, match="unknown role"):
        sched.node_hello("x", "127.0.0.1:5004", role="admin")


def test_a_dealer_node_runs_no_partys_task_and_is_no_party(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock)
    # a data party's name that is the dealer node's: refused for an ss job ...
    with pytest.raises(ConfigError, match="dealer node, which must not be a data party"):
        sched.submit({**SS, "parties": {"bank": PARTIES["bank"], "dealer": {"dataset": "x"}}})
    # ... and an he job naming it as a party is not given to the dealer node either
    job_id = sched.submit({**HE, "parties": {"bank": PARTIES["bank"], "dealer": {"dataset": "x"}}})
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed" and "is a dealer node: it holds no data" in job.reason


def test_a_silent_dealer_fails_the_step_naming_the_dealer(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock)
    job_id = sched.submit(SS)
    to_train(sched, job_id)
    for node in ("bank", "shop", "dealer"):
        assert len(orders(sched, node)) == 1
    clock.advance(6)
    for node in ("bank", "shop"):  # the data nodes keep beating; the dealer is gone
        (task,) = [t for t in tasks_of(store, job_id) if t.party == node and t.step_id == "train"]
        sched.node_beat(node, {task.id: 0.5})
    sched.tick()  # job progress counts the data parties' tasks (a dealer task has none)
    assert job_of(store, job_id).progress == pytest.approx((4 + 0.5 + 0.5) / 6)
    clock.advance(6)
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert "step 'train' failed at the dealer 'dealer'" in job.reason, job.reason
    assert "no heartbeat from the dealer 'dealer'" in job.reason
    states = {t.party: t.state for t in tasks_of(store, job_id) if t.step_id == "train"}
    assert states == {"bank": "canceled", "shop": "canceled", "dealer": "failed"}


def test_an_ss_job_waits_for_the_dealer_node_then_fails_naming_it(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock, dealer_role=None)  # no dealer node has said hello
    job_id = sched.submit(SS)
    to_train(sched, job_id)
    assert job_of(store, job_id).reason == "waiting for the node of the dealer 'dealer' to come online"
    for node in ("bank", "shop"):
        sched.node_beat(node, {})
    clock.advance(11)
    for node in ("bank", "shop"):
        sched.node_beat(node, {})
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert "the node of the dealer 'dealer' is offline; step 'train' could not start" in job.reason


def test_a_step_failure_waits_for_the_dealer_and_blames_a_lost_one(
    store: Store, clock: ManualClock
) -> None:
    """The data parties fail first when the dealer dies (their channel to it breaks);
    the step's failure waits for the dealer's silence and names the dealer."""
    sched = make(store, clock)
    job_id = sched.submit(SS)
    to_train(sched, job_id)
    got = {node: orders(sched, node)[0] for node in ("bank", "shop", "dealer")}
    clock.advance(1)
    sched.task_report("shop", got["shop"]["task_id"], False, {}, "party 'dealer' went away", 1)
    sched.task_report("bank", got["bank"]["task_id"], False, {}, "party 'shop' closed", 1)
    assert job_of(store, job_id).state == "running"  # the dealer's task still runs
    clock.advance(10)
    sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert job.reason.startswith("step 'train' failed at the dealer 'dealer'"), job.reason


def test_a_live_dealer_reacting_to_a_party_is_not_blamed(
    store: Store, clock: ManualClock
) -> None:
    sched = make(store, clock)
    job_id = sched.submit(SS)
    to_train(sched, job_id)
    got = {node: orders(sched, node)[0] for node in ("bank", "shop", "dealer")}
    sched.task_report("bank", got["bank"]["task_id"], False, {}, "bad column at bank", 1)
    sched.task_report("dealer", got["dealer"]["task_id"], False, {}, "party 'shop' closed", 1)
    job = job_of(store, job_id)
    assert job.state == "failed"
    assert "failed at party 'bank'" in job.reason and "bad column at bank" in job.reason


def test_a_job_stored_with_a_dealer_task_for_every_step_runs_without_the_strays(
    store: Store, clock: ManualClock
) -> None:
    """A job submitted before steps declared their roles (a dealer task per step) and
    resumed by this platform: psi and split run at the data nodes only; the stray dealer
    tasks are canceled, and the dealer's task for train runs as before."""
    sched = make(store, clock)
    job_id = sched.submit(SS)
    with store.session() as s:  # what the old planner stored
        for step in ("psi", "split"):
            s.add(Task(job_id=job_id, party="dealer", step_id=step, component=step,
                       attempt=0, created_at=clock.now()))
    to_train(sched, job_id)
    (dealt,) = orders(sched, "dealer")
    assert dealt["step_id"] == "train"
    states = {(t.step_id, t.party): t.state for t in tasks_of(store, job_id)}
    assert states[("psi", "dealer")] == states[("split", "dealer")] == "canceled"
    assert job_of(store, job_id).state == "running"
