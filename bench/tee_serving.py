"""Online scoring of a TEE-trained model beside the MPC SS-LR model, in the same run.

One label holder's gateway and one partner's serving node (``sharedml serve``
on loopback, gRPC with mutual TLS) serve, one after the other, an SS-LR model
trained by a ``sharedml run`` MPC job and a logistic regression trained by a
``scheme: tee`` job on the same rows (split 0.3, seed 42); for the TEE model
both reach the operator's scoring enclave (simulator: its quoting process and
the enclave, two more processes) over RA-TLS, each after attesting it. The
load generator (bench/serving.py's raw keep-alive HTTP client) asks for the
test rows by id, one record per request, at concurrency 1 and 64.

Rows: p50/p99 latency and requests/s per model; ``server_cpu_ms`` is the CPU
the serving processes (gateway, node, and for TEE the enclave) spent per
request. The MPC row is the baseline of the same run: the ratio ``tee / mpc``
of p50 and of req/s is printed. The machine's cores are shared by the load
generator, the servers and everyone else: the load is printed beside them.

    .venv/bin/python bench/tee_serving.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA, report
from serving import BANK, PARTNER, Server, _load, cpu_seconds, train


def train_tee(models: Path) -> None:
    """Register ``credit-tee@1``: a TEE job's logistic regression on the same rows."""
    from sharedml.components import jobspec
    from sharedml.tee.job import run_tee_job

    spec = jobspec.load({"name": "credit-tee", "scheme": "tee", "parties": {
        BANK: {"dataset": str(DATA / "default_credit_hetero_guest.csv"), "label": "y"},
        PARTNER: {"dataset": str(DATA / "default_credit_hetero_host.csv")}},
        "steps": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 42}},
                  {"train": {"model": "logistic_regression", "epochs": 2}}]})
    run_tee_job(spec, models.parent / "train-tee", models=models)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per load level")
    args = ap.parse_args()
    from sharedml.crypto import pki
    from sharedml.tee.serving_host import POLICY_FILE, start_scoring_enclave

    work = Path(tempfile.mkdtemp(prefix="bench-tee-serving-"))
    models = work / "models"
    t0 = time.perf_counter()
    test = train(models, "ss-lr", {"model": "logistic_regression", "epochs": 2})
    train_tee(models)
    print(f"trained both models in {time.perf_counter() - t0:.1f} s", flush=True)
    pki.init_ca(work / "pki")
    for p in (BANK, PARTNER, "platform"):
        pki.issue(work / "pki", p)
    manager, enclave = start_scoring_enclave(models, work / "operator", work / "pki")
    tee = ["--enclave", enclave.address, "--enclave-policy", str(work / "operator" / POLICY_FILE)]
    node = gateway = None
    rows: list[dict[str, Any]] = []
    try:
        node = Server(["node", "--party", PARTNER, "--pki", str(work / "pki"), "--models", str(models),
                       "--state", str(work / "node"), "--caller", BANK, "--features",
                       str(DATA / "default_credit_hetero_host.csv"), *tee], work / "node.log")
        gateway = Server(["gateway", "--party", BANK, "--pki", str(work / "pki"), "--models", str(models),
                          "--state", str(work / "gateway"), "--port", "0", "--partner",
                          f"{PARTNER}={node.address}", "--features", str(DATA / "default_credit_hetero_guest.csv"),
                          "--exclude", "y", "--serve", "ss-lr@1", *tee], work / "gateway.log")
        singles = [json.dumps({"id": i}).encode() for i in test]
        for name, kind in (("ss-lr", "mpc"), ("credit-tee", "tee")):
            subprocess.run([sys.executable, "-m", "sharedml.cli", "serve", "version", "serve", f"{name}@1",
                            "--url", gateway.address], check=True, capture_output=True)
            pids = [gateway.popen.pid, node.popen.pid] + ([enclave.process.pid] if kind == "tee" else [])
            for c in (1, 64):
                cpu0 = cpu_seconds(*pids)
                got = asyncio.run(_load(gateway.address, singles, c, args.seconds))
                cpu_ms = (cpu_seconds(*pids) - cpu0) * 1e3 / (got["req_s"] * args.seconds)
                rows.append({"model": name, "scheme": kind, "c": c, **got, "server_cpu_ms": cpu_ms})
    finally:
        for server in (gateway, node):
            if server is not None:
                server.stop()
        manager.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    ratios = {f"tee/mpc c={c}": {
        "p50": next(r["p50_ms"] for r in rows if r["scheme"] == "tee" and r["c"] == c)
        / next(r["p50_ms"] for r in rows if r["scheme"] == "mpc" and r["c"] == c),
        "req_s": next(r["req_s"] for r in rows if r["scheme"] == "tee" and r["c"] == c)
        / next(r["req_s"] for r in rows if r["scheme"] == "mpc" and r["c"] == c)} for c in (1, 64)}
    report("online scoring, TEE model vs MPC SS-LR (gateway + partner node (+ enclave) on loopback, "
           "load generator on the same cores)", rows,
           {"ratios": ratios, "load": os.getloadavg()[0], "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
