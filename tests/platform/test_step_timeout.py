"""The platform's per-step timeout (issue 14 item 5): a task order carries it (the node
ends the step's receives there) and a task that still runs a heartbeat timeout
after it fails naming the party and the step, even while its node keeps beating;
a failure the node says a retry cannot help fails the job at once."""

from __future__ import annotations

from pathlib import Path

from test_scheduler import SPEC, job_of, make, open_store

from sharedml.platform.clock import ManualClock


def test_a_step_that_overruns_its_step_timeout_fails(tmp_path: Path) -> None:
    store, clock = open_store(tmp_path), ManualClock()
    sched = make(store, clock, task_timeout_s=5, max_attempts=1, step_timeout_s=20)
    job_id = sched.submit(SPEC)
    sched.tick()
    orders = {p: sched.node_beat(p, {})[0][0] for p in ("bank", "shop")}
    assert orders["bank"]["step_timeout_s"] == 20
    for _ in range(13):  # both nodes beat, reporting progress, but never finish
        clock.advance(2)
        for party, order in orders.items():
            sched.node_beat(party, {order["task_id"]: 0.5})
        sched.tick()
    job = job_of(store, job_id)
    assert job.state == "failed", job.reason
    assert "step 'describe' did not finish at party" in (job.reason or "")
    assert "step timeout of 20 s" in (job.reason or "")


def test_a_failure_a_retry_cannot_help_is_not_retried(tmp_path: Path) -> None:
    store, clock = open_store(tmp_path), ManualClock()
    sched = make(store, clock, max_attempts=3)
    job_id = sched.submit(SPEC)
    sched.tick()
    orders = {p: sched.node_beat(p, {})[0][0] for p in ("bank", "shop")}
    sched.task_report("shop", orders["shop"]["task_id"], False, {},
                      "[config] party 'shop' step 'describe': node 'shop' holds no working state",
                      0.1, retry=False)
    job = job_of(store, job_id)
    assert job.state == "failed" and job.attempts == 0, job.reason
    assert job.reason is not None and "(not retried)" in job.reason
    assert "holds no working state" in job.reason
