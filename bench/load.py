"""Load: many clients submit, approve and run a small job at once (issue 14 item 3).

Against a real local cluster (``sharedml up``'s processes: the platform serving
HTTPS, one node agent per party over mutual TLS), on SQLite and, given
``--pg-url``, on PostgreSQL. Each of ``--jobs`` client threads, all started
together, does what an analyst and the two owners would: submit a ``describe``
job, list each owner's pending approvals, sign and send each approval, and
poll the job until it ends. Calls the platform answers "busy" (503 +
Retry-After) are sent again by the SDK and counted.

Baseline, in the same run: ``--alone`` jobs one after the other before the
load; the table gives p50/p99 of each API call alone and under load, and the
ratio of the medians. The run passes when there are 0 errors (a call that
failed after the SDK's retries, or a job that did not succeed), 0 orphan jobs
(stored without an approval row per dataset, or not ended), and 0 false
heartbeat failures (every node is healthy, so any "no heartbeat" in a job's or
task's reason or in the audit log is false).

    .venv/bin/python bench/load.py --jobs 200
    .venv/bin/python bench/load.py --jobs 200 --pg-url postgresql+psycopg://u:p@127.0.0.1/db

The PostgreSQL database is emptied first: give one used for nothing else.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text

from _common import DATA, report
from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import Approval, AuditEntry, Job, Task
from sharedml.sdk import Client

SPEC: dict[str, Any] = {
    "name": "load-describe",
    "parties": {"bank": {"dataset": "customers", "label": "y"}, "shop": {"dataset": "features"}},
    "steps": [{"describe": {}}],
}
OWNERS = ("bank", "shop")
#: A job's whole life (submit to end) under load may take this long before it counts
#: as an error.
JOB_DEADLINE_S = 1800.0
_IDS = re.compile(r"/[0-9a-f]{8,}|/\d+")


class Calls:
    """Latency of every API call by name (method and path with ids folded), and 503s."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.busy = 0
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, status: int) -> None:
        with self._lock:
            self.seconds[name].append(seconds)
            self.busy += status == 503


class TimedClient(Client):
    """The SDK client, timing each HTTP request it sends (retries each count)."""

    def __init__(self, calls: Calls, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = calls

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        start = time.perf_counter()
        r = super()._send(method, path, **kwargs)
        self.calls.add(f"{method} {_IDS.sub('/{id}', path)}", time.perf_counter() - start,
                       r.status_code)
        return r


def one_job(cluster: LocalDeployment, calls: Calls, start: threading.Event | None) -> str:
    """Submit, approve (each owner signs) and wait for one job; its final state."""
    info, tokens = cluster.info, cluster.tokens()

    def client(user: str) -> TimedClient:
        return TimedClient(calls, info["url"], tokens[user], verify=info["ca"], timeout=120)

    if start is not None:
        start.wait()
    with client("analyst") as analyst:
        job_id = analyst.submit(SPEC)["id"]
        for party in OWNERS:
            with client(f"{party}-owner") as owner:
                for a in owner.approvals(job_id, state="pending"):
                    owner.approve(a["id"], key=info["approval_keys"][party])
        deadline = time.monotonic() + JOB_DEADLINE_S
        while True:
            job = analyst.job(job_id)
            if job["state"] in ("succeeded", "failed", "canceled"):
                return f"{job['state']}: {job.get('reason') or ''}".rstrip(": ")
            if time.monotonic() > deadline:
                return f"still {job['state']} after {JOB_DEADLINE_S:g} s"
            time.sleep(1.0)


def run_load(cluster: LocalDeployment, jobs: int, calls: Calls) -> list[str]:
    """``jobs`` threads released together; each job's outcome (or the error it met)."""
    start = threading.Event()

    def guarded() -> str:
        try:
            return one_job(cluster, calls, start)
        except Exception as exc:  # counted and printed: the bench's finding
            return f"error: {type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(guarded) for _ in range(jobs)]
        time.sleep(1.0)  # let every thread reach the start line
        start.set()
        return [f.result() for f in futures]


def store_findings(store: Store) -> dict[str, int]:
    """Orphans (no approval row per named dataset, or not ended) and heartbeat blames."""
    with store.session() as s:
        jobs = s.scalars(select(Job)).all()
        rows = dict(s.execute(select(Approval.job_id, func.count()).group_by(Approval.job_id)).all())
        beats = s.scalar(select(func.count()).select_from(Task).where(
            Task.reason.ilike("%no heartbeat%"))) or 0
        logged = s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.detail.ilike("%no heartbeat%"))) or 0
    unapproved = sum(rows.get(j.id, 0) != len(OWNERS) for j in jobs)
    unended = sum(j.state not in ("succeeded", "failed", "canceled") for j in jobs)
    blamed = sum("no heartbeat" in (j.reason or "") for j in jobs)
    return {"jobs_stored": len(jobs), "orphans": unapproved + unended,
            "false_heartbeat_failures": max(blamed, int(beats), int(logged))}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def empty_postgres(url: str) -> None:
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    store.dispose()


def one_backend(name: str, db_url: str | None, jobs: int, alone: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"sharedml-load-{name}-"))
    if db_url:
        empty_postgres(db_url)
    prepare(root, DeploymentSpec(
        {"bank": {"customers": DATA / "breast_hetero_guest.csv"},
         "shop": {"features": DATA / "breast_hetero_host.csv"}},
        dealer=False, db_url=db_url,  # sharedml up's timings: 30 s of node silence fails a task
    ))  # fmt: skip
    baseline, loaded = Calls(), Calls()
    with LocalDeployment(root) as cluster:
        cluster.start(wait=180)
        alone_outcomes = [one_job(cluster, baseline, None) for _ in range(alone)]
        began = time.perf_counter()
        outcomes = run_load(cluster, jobs, loaded)
        wall = time.perf_counter() - began
        cluster.check_alive()
    store = Store(db_url or sqlite_url(root / "platform"))
    findings = store_findings(store)
    store.dispose()
    bad = [o for o in alone_outcomes + outcomes if o != "succeeded"]
    for o in sorted(set(bad))[:10]:
        print(f"[{name}] {bad.count(o)} x {o}", file=sys.stderr)
    rows = []
    for call in sorted(loaded.seconds):
        under, solo = loaded.seconds[call], baseline.seconds.get(call, [])
        p50 = statistics.median(under)
        rows.append({"backend": name, "call": call, "n": len(under),
                     "p50_ms": 1000 * p50, "p99_ms": 1000 * percentile(under, 0.99),
                     "alone_p50_ms": 1000 * statistics.median(solo) if solo else None,
                     "ratio_p50": p50 / statistics.median(solo) if solo else None})
    summary = {"backend": name, "jobs": jobs, "wall_s": wall, "errors": len(bad),
               "busy_503_retried": loaded.busy + baseline.busy, **findings}
    return {"rows": rows, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="concurrent clients (one job each)")
    parser.add_argument("--alone", type=int, default=5, help="baseline jobs, one at a time")
    parser.add_argument("--pg-url", help="PostgreSQL URL (its database is emptied first)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one backend only")
    args = parser.parse_args()
    backends = [("sqlite", None), *([("postgresql", args.pg_url)] if args.pg_url else [])]
    results = [one_backend(n, url, args.jobs, args.alone)
               for n, url in backends if args.only in (None, n)]
    rows = [r for res in results for r in res["rows"]]
    summaries = [res["summary"] for res in results]
    report("load: concurrent submit + approve + run (p50/p99 per API call)", rows,
           {"summary": summaries})
    report("load: outcome", summaries)
    failed = any(s["errors"] or s["orphans"] or s["false_heartbeat_failures"] for s in summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
