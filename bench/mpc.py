"""MPC engine throughput: two providers (and a dealer) as processes over gRPC + mTLS.

Run: ``.venv/bin/python bench/mpc.py [--n 1000000] [--dim 1000] [--repeat 3]``

Every party is its own OS process (``sharedml.cluster.run_cluster``) talking
over ``GrpcChannel`` on loopback with mutual TLS. Each figure is the median
wall time at one provider (the parties start each repetition together after a
barrier), beside the plaintext numpy time of the same operation measured in
this run:

Party processes run with one BLAS thread each (three processes, two cores)
and keep freed memory for reuse (``sharedml.mpc.memory.keep_freed_memory``;
a deployment choice, as the thread count);
the plaintext baselines run in the parent with the default threads.

* 1M-element fixed-point multiplication (Beaver + truncation), comparison
  (``x < y``; also with the 32-bit range promise), sigmoid ("poly",
  "clipped" — also with 32-bit comparisons — and "accurate" on a tenth);
* a 1000×1000 @ 1000×1000 product (Beaver matmul + truncation), against the
  local Z_2^64 product (BLAS limbs, and numpy's uint64 matmul) and float64;
  "online" rows deal the triple and truncation pair before the clock starts
  (the offline/online split), the others include the dealer's work;
* material generation rate of each provider: DealerProvider (Beaver triples,
  as received by the party that gets corrections) and HEProvider (Paillier
  2048-bit; triples, and AND triples of 64-bit words, on small batches).

Goals (issue 3) with DealerProvider: mul ≥ 10M/s, comparison ≥ 1M/s,
sigmoid ≥ 1M/s, matmul within 3× of the local ring product.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from sharedml.cluster import run_cluster
from sharedml.crypto import ring
from sharedml.crypto.prg import Prg
from sharedml.mpc import MPC, DealerProvider, beaver, serve_dealer
from sharedml.mpc import functions as F
from sharedml.mpc import nonlinear as N
from sharedml.mpc.he import HEProvider
from sharedml.mpc.material import Kind
from sharedml.mpc.memory import keep_freed_memory
from sharedml.mpc.truncation import prefetch, rescale
from sharedml.session import Session


def _barrier(mpc: MPC) -> None:
    mpc.exchange("barrier", np.zeros(1, dtype=np.uint64))


_CPU: dict[str, float] = {}


def _timed(mpc: MPC, fn: Any, repeat: int, name: str = "") -> float:
    """Median wall time; the median CPU time of this process goes to ``_CPU[name]``."""
    times, cpu = [], []
    for _ in range(repeat + 1):  # first run warms up
        _barrier(mpc)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if name:
        _CPU[name] = statistics.median(cpu[1:])
    return statistics.median(times[1:])


def _online(mpc: MPC, x: Any, y: Any, repeat: int, name: str) -> float:
    """The online phase only: the triple and truncation pair are dealt (and
    received) before the clock starts, as in an offline/online split."""
    matrix = x.ndim == 2
    times, cpu = [], []
    for _ in range(repeat + 1):
        if matrix:
            mat = mpc.provider.request(Kind.MATMUL, (x.shape[0], x.shape[1], y.shape[1]))
            shape: tuple[int, ...] = (x.shape[0], y.shape[1])
        else:
            mat = mpc.provider.request(Kind.MUL, x.shape)
            shape = x.shape
        pair = prefetch(mpc, shape, x.scale + y.scale)
        mat["c"]
        if pair is not None:
            pair["r_hi"]
        _barrier(mpc)
        start, start_cpu = time.perf_counter(), time.process_time()
        prod = beaver.matmul(x, y, mat) if matrix else beaver.mul(x, y, mat)
        rescale(prod, pair)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    _CPU[name] = statistics.median(cpu[1:])
    return statistics.median(times[1:])


def _inputs(mpc: MPC, shape: tuple[int, ...], owner: str, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    value = rng.normal(size=shape) if mpc.party == owner else None
    return mpc.share(value, owner=owner)


def dealer_party(session: Session) -> dict[str, float]:
    keep_freed_memory()
    cfg = session.extras
    n, dim, repeat = cfg["n"], cfg["dim"], cfg["repeat"]
    with MPC(session, DealerProvider(session, dealer="dealer")) as mpc:
        x = _inputs(mpc, (n,), "alice", 1)
        y = _inputs(mpc, (n,), "bob", 2)
        a = _inputs(mpc, (dim, dim), "alice", 3)
        b = _inputs(mpc, (dim, dim), "bob", 4)
        small = x[: n // 10]
        out = {
            "mul": _timed(mpc, lambda: x * y, repeat, "mul"),
            "lt": _timed(mpc, lambda: x < y, repeat, "lt"),
            "sigmoid_poly": _timed(mpc, lambda: N.sigmoid(x, "poly"), repeat, "sigmoid_poly"),
            "sigmoid_clipped": _timed(mpc, lambda: N.sigmoid(x, "clipped"), repeat, "sigmoid_clipped"),
            "lt32": _timed(mpc, lambda: F.lt(x, y, bits=32), repeat, "lt32"),
            "sigmoid_clipped32": _timed(
                mpc, lambda: N.sigmoid(x, "clipped", bits=32), repeat, "sigmoid_clipped32"
            ),
            "sigmoid_accurate_tenth": _timed(mpc, lambda: N.sigmoid(small, "accurate"), repeat, "sigmoid_accurate_tenth"),
            "matmul": _timed(mpc, lambda: a @ b, repeat, "matmul"),
            "mul_online": _online(mpc, x, y, repeat, "mul_online"),
            # the same local ring product at both parties at once, under the
            # same conditions (one BLAS thread each, the same machine load)
            "local_ring_in_party": _timed(
                mpc, lambda: ring.matmul(a.share, b.share), repeat, "local_ring_in_party"
            ),
            "matmul_online": _online(mpc, a, b, repeat, "matmul_online"),
            "triples": _timed(
                mpc, lambda: mpc.provider.request(Kind.MUL, (n,))["c"], repeat
            ),
            "matmul_triple": _timed(
                mpc, lambda: mpc.provider.request(Kind.MATMUL, (dim, dim, dim))["c"], repeat
            ),
        }
        # rounds: one probe of the round trip cost
        probe = np.zeros(1, dtype=np.uint64)
        out["round"] = _timed(mpc, lambda: mpc.exchange("probe", probe), 20)
        out.update({f"cpu_{k}": v for k, v in _CPU.items()})
        return out


def _serve_dealer(session: Session) -> Any:
    keep_freed_memory()
    return serve_dealer(session)


def he_party(session: Session) -> dict[str, float]:
    cfg = session.extras
    with MPC(session, HEProvider(session, key_bits=2048)) as mpc:
        n_mul, n_and = cfg["he_mul"], cfg["he_and"]
        return {
            "triples": _timed(mpc, lambda: mpc.provider.request(Kind.MUL, (n_mul,))["c"], 1),
            "and_words": _timed(mpc, lambda: mpc.provider.request(Kind.AND, (n_and,))["c"], 1),
        }


def _plain(n: int, dim: int, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=n), rng.normal(size=n)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    ra, rb = Prg.fresh().uint64(0, (dim, dim)), Prg.fresh().uint64(1, (dim, dim))

    def med(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {
        "mul": med(lambda: x * y),
        "lt": med(lambda: x < y),
        "sigmoid": med(lambda: 1 / (1 + np.exp(-x))),
        "matmul_f64": med(lambda: a @ b),
        "matmul_ring": med(lambda: ring.matmul(ra, rb)),
        "matmul_u64": med(lambda: ra @ rb),
        "prg": med(lambda: Prg.fresh().uint64(0, n)),
    }


def main() -> None:
    from _common import report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--he-mul", type=int, default=256)
    parser.add_argument("--he-and", type=int, default=4)
    args = parser.parse_args()
    n, dim = args.n, args.dim

    plain = _plain(n, dim, args.repeat)
    cfg = {"n": n, "dim": dim, "repeat": args.repeat}
    # Each party process gets one BLAS thread: three processes share two cores,
    # and OpenBLAS threads that spin while descheduled ruin small products.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    results = run_cluster(
        {"alice": dealer_party, "bob": dealer_party, "dealer": _serve_dealer},
        ["alice", "bob", "dealer"],
        extras={p: cfg for p in ("alice", "bob", "dealer")},
        timeout=600,
    )
    dealer = results["alice"]
    # material costs nothing at alice (PRG only); bob receives the corrections
    dealer["triples"] = results["bob"]["triples"]
    dealer["matmul_triple"] = results["bob"]["matmul_triple"]
    he_cfg = {"he_mul": args.he_mul, "he_and": args.he_and}
    he_results = run_cluster(
        he_party, ["alice", "bob"], extras={p: he_cfg for p in ("alice", "bob")}, timeout=600
    )
    he = {k: max(v, he_results["bob"][k]) for k, v in he_results["alice"].items()}

    def row(
        name: str, secs: float, count: int, base: float, base_name: str, goal: str = "", cpu: str = ""
    ) -> dict[str, Any]:
        party_cpu = max(results["alice"].get(f"cpu_{cpu}", 0), results["bob"].get(f"cpu_{cpu}", 0))
        return {
            "operation": name,
            "elements": count,
            "seconds": secs,
            "party cpu s": party_cpu if cpu else None,
            "elements/s": count / secs,
            "baseline": base_name,
            "baseline s": base,
            "ratio": secs / base,
            "goal": goal,
        }

    rows = [
        row("mul (dealer)", dealer["mul"], n, plain["mul"], "numpy f64 x*y", "≥ 10M/s", "mul"),
        row("mul online (dealer)", dealer["mul_online"], n, plain["mul"], "numpy f64 x*y", "", "mul_online"),
        row("lt (dealer)", dealer["lt"], n, plain["lt"], "numpy x<y", "≥ 1M/s", "lt"),
        row("lt, 32-bit range (dealer)", dealer["lt32"], n, plain["lt"], "numpy x<y", "≥ 1M/s", "lt32"),
        row("sigmoid poly (dealer)", dealer["sigmoid_poly"], n, plain["sigmoid"], "numpy 1/(1+e^-x)", "≥ 1M/s", "sigmoid_poly"),
        row("sigmoid clipped (dealer)", dealer["sigmoid_clipped"], n, plain["sigmoid"], "numpy 1/(1+e^-x)", "≥ 1M/s", "sigmoid_clipped"),
        row(
            "sigmoid clipped, 32-bit range (dealer)",
            dealer["sigmoid_clipped32"],
            n,
            plain["sigmoid"],
            "numpy 1/(1+e^-x)",
            "≥ 1M/s",
            "sigmoid_clipped32",
        ),
        row(
            "sigmoid accurate (dealer)",
            dealer["sigmoid_accurate_tenth"],
            n // 10,
            plain["sigmoid"] / 10,
            "numpy 1/(1+e^-x)",
            cpu="sigmoid_accurate_tenth",
        ),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_ring"], "ring limb matmul", "≤ 3×", "matmul"),
        row(
            f"matmul {dim}² online (dealer)",
            dealer["matmul_online"],
            dim * dim,
            plain["matmul_ring"],
            "ring limb matmul",
            "",
            "matmul_online",
        ),
        row(
            f"matmul {dim}² (dealer)",
            dealer["matmul"],
            dim * dim,
            dealer["local_ring_in_party"],
            "ring limb matmul in party processes",
            "≤ 3×",
        ),
        row(
            f"matmul {dim}² online (dealer)",
            dealer["matmul_online"],
            dim * dim,
            dealer["local_ring_in_party"],
            "ring limb matmul in party processes",
        ),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_u64"], "numpy uint64 matmul"),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_f64"], "numpy f64 matmul"),
        row("triples (dealer)", dealer["triples"], n, plain["prg"], "AES-CTR PRG, n words"),
        row(f"matmul triple {dim}³ (dealer)", dealer["matmul_triple"], dim * dim, plain["matmul_ring"], "ring limb matmul"),
        row("triples (HE, 2048-bit)", he["triples"], args.he_mul, plain["mul"] * args.he_mul / n, "numpy f64 x*y"),
        row("AND words (HE, 2048-bit)", he["and_words"], args.he_and, plain["mul"] * args.he_and / n, "numpy f64 x*y"),
    ]
    report(
        "mpc",
        rows,
        {
            "round_trip_s": dealer["round"],
            "goals_met": {
                "mul": n / dealer["mul"] >= 10e6,
                "lt": n / dealer["lt"] >= 1e6,
                "sigmoid_poly": n / dealer["sigmoid_poly"] >= 1e6,
                "sigmoid_clipped": n / dealer["sigmoid_clipped"] >= 1e6,
                "sigmoid_clipped32": n / dealer["sigmoid_clipped32"] >= 1e6,
                "matmul": dealer["matmul"] / plain["matmul_ring"] <= 3,
                "matmul_online": dealer["matmul_online"] / plain["matmul_ring"] <= 3,
                "matmul_vs_party_local": dealer["matmul"] / dealer["local_ring_in_party"] <= 3,
                "mul_online": n / dealer["mul_online"] >= 10e6,
            },
        },
    )


if __name__ == "__main__":
    main()
