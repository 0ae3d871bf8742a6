"""Scale-out inside a party on Ray (8.5-2): single process vs Ray with 1 and 2 workers per party.

Workloads (two parties, each a separate process over gRPC with mutual TLS):

* ``psi`` — KKRT PSI of n × n ids (50% overlap, as ``bench/psi.py``). The
  single-process run is :func:`sharedml.psi.psi_digests`; the Ray runs give
  each party a :class:`~sharedml.scale.runtime.RayCompute` with W lanes
  (bucketed PSI, ``bucket_rows`` per bucket), every lane a Ray actor that
  talks to the peer's lane over mTLS.
* ``he`` — SecureBoost ``he`` on a generated credit table
  (:func:`sharedml.scenarios.credit.credit_population`): the single-process
  run encrypts in the label holder's process (``n_jobs=1``); the Ray runs make
  the Paillier randomisers on W actors (:mod:`sharedml.scale.encrypt`).

Per party: wall time of the operation, CPU-seconds and peak RSS per process
(the node's and the largest actor's). What the CPU-seconds count:

* the party's node process during the job (the driver's ``ray.init`` — its
  connection to the cluster, a one-off per node process — is before it and
  not counted);
* every actor it used (PSI lanes, randomiser pools) over its whole life up to
  the end of the job, so a new actor's start-up is in: the Ray worker
  process (Python, ``import ray``), its imports of sharedml, the lane's gRPC
  server; ``*_start`` is that start-up alone, ``*_new_actors`` how many
  actors the job started;
* every Ray task of :meth:`RayCompute.map` (the task's own CPU time; the
  pooled task workers' start-up is not in it);
* not Ray's own daemons (GCS, raylet, log monitor: the cluster's, for its
  lifetime, whatever runs on it).

PSI runs two jobs one after the other in each party's process (``--psi-jobs
2``), as a node runs them: ``cold`` is the first, which starts the lanes;
``warm`` the second, on the lanes the first kept (:mod:`sharedml.scale.lanes`:
a node pays the start-up once per process, then every later PSI job is
warm). Each is compared with the single process's job of the same rank.
Goals (issue 19): CPU-seconds within 15% of the single-process run, and peak
RSS per worker at most 1/W of the single process plus a constant; wall time
cannot scale on this 2-core machine shared with others. The PSI rows end
with an extrapolation of 100M × 100M from the measured per-bucket rate.

Both parties' actors run on one local Ray cluster this script starts in its
own process (``num_cpus`` = 2 W logical CPUs) and stops at the end; in a
deployment each party has its own.

    .venv/bin/python bench/scale.py                                  # the issue's sizes
    .venv/bin/python bench/scale.py --psi-n 1000000 --he-rows 20000 --he-trees 3   # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _common import report
from sharedml.crypto import pki
from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes

PARTIES = ("A", "B")
#: The constant of the memory goal: a Ray worker process with numpy, sharedml and
#: ray imported (about 150-250 MB here) before it holds any data.
RSS_CONSTANT_MB = 300
#: A party's consecutive jobs in one node process: the first starts its actors
#: (cold), the second takes the warm lanes the first kept (PSI only).
JOBS = ("cold", "warm")


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _with_compute(session: Session, opts: dict[str, Any]) -> Session:
    if not opts["workers"]:
        return session
    from sharedml.scale.config import RayConfig
    from sharedml.scale.runtime import RayCompute

    cfg = RayConfig(address=opts["address"], workers=opts["workers"], cpus_per_worker=1.0,
                    bucket_rows=opts["bucket_rows"])
    identity = pki.load_identity(Path(opts["pki"]), session.party)
    return dataclasses.replace(session, compute=RayCompute(cfg, party=session.party,
                                                           identity=identity))


class Meter:
    """One party's CPU and memory over consecutive jobs in its process: each
    :meth:`take` counts what happened since the previous one. A warm actor (a lane
    kept from an earlier job) reports its whole life's CPU, so only the growth
    since it last reported is counted; a new actor's start-up is counted apart."""

    def __init__(self, session: Session) -> None:
        self.compute = session.compute
        self.seen: dict[float, float] = {}  # actor pid -> CPU-s at its last report
        self.reports = 0
        self.task_cpu_s = 0.0

    def start(self) -> None:
        self.t0, self.c0 = time.perf_counter(), _cpu()

    def take(self, extra: dict[str, Any]) -> dict[str, Any]:
        compute = self.compute
        usage = compute.usage[self.reports:] if compute is not None else []
        self.reports += len(usage)
        fresh = [u for u in usage if u["pid"] not in self.seen]
        actor_cpu = sum(u["cpu_s"] - self.seen.get(u["pid"], 0.0) for u in usage)
        self.seen.update({u["pid"]: u["cpu_s"] for u in usage})
        tasks = compute.task_cpu_s - self.task_cpu_s if compute is not None else 0.0
        self.task_cpu_s += tasks
        return {
            "seconds": time.perf_counter() - self.t0,
            "node_cpu_s": _cpu() - self.c0,
            # actors (lanes, randomiser pools) and the tasks of RayCompute.map
            "actor_cpu_s": actor_cpu + tasks,
            "node_rss_mb": _rss_mb(),
            "actor_rss_mb": max([u["peak_rss_mb"] for u in usage]
                                + [compute.task_rss_mb if compute else 0.0]),
            "actor_work_cpu_s": [u.get("work_cpu_s", 0.0) for u in usage],
            # the new actors' processes' CPU-s before their first work (Ray worker start-up)
            "actor_start_cpu_s": sum(u.get("start_cpu_s", 0.0) for u in fresh),
            "actors_started": len(fresh),
            **extra,
        }


def psi_party(opts: dict[str, Any], session: Session) -> list[dict[str, Any]]:
    """``opts["jobs"]`` PSI jobs one after the other in this process, as a node runs
    them: on Ray the second takes the first one's warm lanes."""
    from sharedml.psi import digest_keys, psi_digests

    n = int(opts["n"])
    start = 0 if session.party == "A" else n // 2
    digests = digest_keys(pd.Series(np.arange(start, start + n)).map("u{}".format))
    session = _with_compute(session, opts)
    meter, out = Meter(session), []
    for job in range(int(opts["jobs"])):
        job_session = dataclasses.replace(session, channel=session.channel.scope(f"job{job}"))
        meter.start()
        result = psi_digests(job_session, digests, protocol="kkrt")
        out.append(meter.take({"size": result.size}))
    return out


def he_party(opts: dict[str, Any], session: Session) -> list[dict[str, Any]]:
    from sharedml.learn.tree import SecureBoostClassifier
    from sharedml.scenarios.credit import credit_population

    pair = credit_population(rows=int(opts["rows"]), keep=1.0, seed=7)
    bank, partner = pair.bank.sort_values("id"), pair.partner.sort_values("id")
    common = np.intersect1d(bank["id"], partner["id"])
    mine = (bank if session.party == "A" else partner).set_index("id").loc[common]
    y = mine.pop("y").to_numpy(np.float64) if "y" in mine else None
    X = mine.to_numpy(np.float64)
    session = _with_compute(session, opts)
    model = SecureBoostClassifier(protocol="he", n_estimators=int(opts["trees"]), max_depth=3,
                                  n_bins=32, key_bits=int(opts["key_bits"]), n_jobs=1)
    meter = Meter(session)
    meter.start()
    model.fit(session, X, y) if y is not None else model.fit(session, X)
    return [meter.take({"size": len(X)})]


def _row(work: str, size: int, workers: int, job: str, out: dict[str, dict[str, Any]],
         base: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """One table row: wall time; per party CPU-s (x: ratio to the single process's same
    job), the new actors' start-up CPU-s, node and worker peak RSS (MB) and the memory
    goal (single / W + constant)."""
    row: dict[str, Any] = {"work": work, "n": size, "W": workers or "single", "job": job,
                           "wall_s": max(o["seconds"] for o in out.values())}
    for p in PARTIES:
        o = out[p]
        row[f"{p}_cpu"] = o["node_cpu_s"] + o["actor_cpu_s"]
        if base is not None:
            row[f"{p}_cpu_x"] = row[f"{p}_cpu"] / base[p]["node_cpu_s"]
            row[f"{p}_start"] = o["actor_start_cpu_s"]
            row[f"{p}_new_actors"] = o["actors_started"]
        row[f"{p}_rss"] = o["node_rss_mb"]
        if base is not None:
            row[f"{p}_wrss"] = o["actor_rss_mb"]
            row[f"{p}_goal"] = base[p]["node_rss_mb"] / workers + RSS_CONSTANT_MB
    return row


def _run(fn: Any, opts: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return run_in_processes(partial(fn, opts), list(PARTIES), timeout=3600.0)


def _job(out: dict[str, list[dict[str, Any]]], i: int) -> dict[str, dict[str, Any]]:
    return {p: out[p][i] for p in PARTIES}


def _extrapolate(n: int, bucket_rows: int, out: dict[str, dict[str, Any]], workers: int) -> str:
    work = [c for p in PARTIES for c in out[p]["actor_work_cpu_s"]]
    buckets = -(-n // bucket_rows)
    per_bucket = sum(work) / len(PARTIES) / buckets  # lane CPU-s per bucket, per party
    big = -(-100_000_000 // bucket_rows)
    return (f"100M x 100M: {big} buckets x {per_bucket:.1f} lane CPU-s per bucket (measured at "
            f"{n:,} with {workers} lane(s), bucket_rows {bucket_rows:,}) = {big * per_bucket:,.0f} "
            f"CPU-s per party: {big * per_bucket / workers / 60:.1f} min on {workers} idle "
            f"core(s) per party, {big * per_bucket / 16 / 60:.1f} min with 16 lanes on 16 cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", nargs="+", default=["psi", "he"], choices=["psi", "he"])
    ap.add_argument("--psi-n", type=int, default=10_000_000)
    ap.add_argument("--bucket-rows", type=int, default=1 << 20)
    ap.add_argument("--psi-jobs", type=int, default=2, choices=[1, 2],
                    help="PSI jobs per node process: 2 adds the warm job (lanes kept)")
    ap.add_argument("--he-rows", type=int, default=1_000_000)
    ap.add_argument("--he-trees", type=int, default=10)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    from sharedml.scale.runtime import keep_token_auth

    keep_token_auth()  # before ray is imported
    import ray

    ray.init(num_cpus=2 * max(args.workers), include_dashboard=False, log_to_driver=False,
             namespace="sharedml-bench")
    address = ray.get_runtime_context().gcs_address
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        pki.init_ca(tmp)
        for p in PARTIES:
            pki.issue(tmp, p)
        common = {"address": address, "pki": tmp, "bucket_rows": args.bucket_rows}
        jobs = {"psi": (psi_party, args.psi_n, {"n": args.psi_n, "jobs": args.psi_jobs}),
                "he": (he_party, args.he_rows, {"rows": args.he_rows, "trees": args.he_trees,
                                                "key_bits": args.key_bits})}
        for work in args.work:
            fn, size, extra = jobs[work]
            base = _run(fn, {**common, **extra, "workers": 0})
            names = JOBS[: len(base["A"])]
            for i, job in enumerate(names):
                rows.append(_row(work, size, 0, job, _job(base, i), None))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # a stopped run keeps its rows
            for w in args.workers:
                out = _run(fn, {**common, **extra, "workers": w})
                for i, job in enumerate(names):
                    assert out["A"][i]["size"] == base["A"][i]["size"], (out, base)
                    rows.append(_row(work, size, w, job, _job(out, i), _job(base, i)))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if work == "psi":
                    notes.append(_extrapolate(size, args.bucket_rows, _job(out, 0), w))
    ray.shutdown()
    goals = {
        f"cpu_within_15pct_{job}": all(r[f"{p}_cpu_x"] <= 1.15 for r in rows
                                       if r["W"] != "single" and r["job"] == job for p in PARTIES)
        for job in JOBS if any(r["job"] == job for r in rows)
    }
    goals |= {
        f"worker_rss_within_1_over_W_plus_{RSS_CONSTANT_MB}MB": all(
            r[f"{p}_wrss"] <= r[f"{p}_goal"] for r in rows
            if r["W"] != "single" for p in PARTIES),
    }
    report("scale", rows, {"extrapolation": notes, "goals_met": goals, "cpus": os.cpu_count(),
                           "load_avg": os.getloadavg()})
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
