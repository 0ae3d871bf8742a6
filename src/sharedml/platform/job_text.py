"""A job as text: its summary, its task events and its public metrics.

Shared by the command line (``sharedml job show|logs|result``) and the
console's job page, so both tell a job's story the same way. Inputs are the
REST API's JSON shapes (``TaskOut``, ``JobOut``, ``ResultOut.steps``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def task_events(tasks: list[Mapping[str, Any]]) -> list[tuple[Any, str, str]]:
    """(time, "step/party #attempt", event) for every task, oldest first."""
    events = []
    for t in tasks:
        name = f"{t['step_id']}/{t['party']} #{t['attempt']}"
        events.append((t["created_at"], name, "created"))
        if t.get("started_at"):
            events.append((t["started_at"], name, f"started on {t.get('node_id') or '?'}"))
        if t.get("finished_at"):
            reason = f": {t['reason']}" if t.get("reason") else ""
            events.append((t["finished_at"], name, f"{t['state']}{reason}"))
    return sorted(events, key=lambda e: str(e[0]))


def plain_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scalar figures of a step's metrics (charts and lists are left to the console)."""
    return {k: v for k, v in (metrics or {}).items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)}


def metric_lines(steps: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """``step  party  name=value ...`` per reported step and party with figures."""
    for step_id, parties in steps.items():
        for party, res in sorted(parties.items()):
            plain = plain_metrics(res.get("metrics"))
            if plain:
                figures = "  ".join(f"{k}={v}" for k, v in plain.items())
                yield f"{step_id}  {party}  {figures}"


def job_summary(job: Mapping[str, Any], approvals: Mapping[str, Any],
                tasks: list[Mapping[str, Any]]) -> Iterator[str]:
    """The job, its approval status and each step's latest state, one line each."""
    yield f"job {job['id']}  {job['name']}  {job['state']}  {job['progress']:.0%}"
    if job.get("reason"):
        yield f"reason: {job['reason']}"
    yield f"approvals: {approvals['status']}"
    latest: dict[str, dict[str, str]] = {}
    attempt: dict[str, int] = {}
    for t in tasks:
        if t["attempt"] >= attempt.get(t["step_id"], -1):
            if t["attempt"] > attempt.get(t["step_id"], -1):
                latest[t["step_id"]] = {}
            attempt[t["step_id"]] = t["attempt"]
            latest[t["step_id"]][t["party"]] = t["state"]
    for step_id, parties in latest.items():
        states = ", ".join(f"{p}={s}" for p, s in sorted(parties.items()))
        yield f"step {step_id} (attempt {attempt[step_id]}): {states}"
