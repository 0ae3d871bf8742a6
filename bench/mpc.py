"""MPC engine throughput: two providers (and a dealer) as processes over gRPC + mTLS.

Run: ``.venv/bin/python bench/mpc.py [--n 1000000] [--dim 1000] [--repeat 3]``

Every party is its own OS process (``sharedml.standalone.processes.run_in_processes``) talking
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
  local Z_2^64 product and float64. The goal's baseline is the issue's "local
  ring product": three 22-bit float64 limbs done as six BLAS products
  (:func:`_six_product_ring_matmul`, a private copy of the algorithm
  ``ring.matmul`` had before its five-product split), run here with this
  process's BLAS threads. Also printed: the ratio to today's five-product
  ``ring.matmul`` (here, and in the party processes with one BLAS thread under
  the same load) and to numpy's uint64 matmul. "online" rows deal the triple
  and truncation pair before the clock starts (the offline/online split), the
  others include the dealer's work;
* the local ring product itself: five products against six, with this
  process's BLAS threads and with one;
* material generation rate of each provider: DealerProvider (Beaver triples,
  as received by the party that gets corrections) and HEProvider (Paillier
  2048-bit; triples, and AND triples of 64-bit words, on small batches).

Goals (issue 3) with DealerProvider: mul ≥ 10M/s, comparison ≥ 1M/s,
sigmoid ≥ 1M/s, matmul within 3× of the local ring product (six products,
this process's BLAS threads; ``goals_met["matmul"]``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

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
from sharedml.standalone.processes import run_in_processes

# -- the baseline: the six-product limb split ring.matmul used before ---------------
_H22, _M22 = np.uint64(1 << 21), np.uint64((1 << 22) - 1)
_H20, _M20 = np.uint64(1 << 19), np.uint64((1 << 20) - 1)
_S22 = np.uint64(22)


def _split22(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed 22-bit limbs: a = l0 + l1·2^22 + l2·2^44 (mod 2^64), |l2| ≤ 2^19."""
    l0 = ((a + _H22) & _M22).view(np.int64) - np.int64(1 << 21)
    a1 = (a - l0.view(np.uint64)) >> _S22
    l1 = ((a1 + _H22) & _M22).view(np.int64) - np.int64(1 << 21)
    a2 = (a1 - l1.view(np.uint64)) >> _S22
    l2 = ((a2 + _H20) & _M20).view(np.int64) - np.int64(1 << 19)
    return l0.astype(np.float64), l1.astype(np.float64), l2.astype(np.float64)


def _ring6(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64).view(np.uint64)


def _six_product_ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The issue's "local ring product": ``a @ b`` in Z_2^64 from three 22-bit
    float64 limbs and the six limb products of weight < 2^64 (three BLAS calls,
    the narrower operand's limbs stacked), exact for inner dimensions ≤ 2048,
    chunked beyond. A private copy of ``ring.matmul`` before it used five."""
    a0, a1, a2 = _split22(a)
    b0, b1, b2 = _split22(b)
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    w0, w1, w2 = (np.zeros((m, n), dtype=np.uint64) for _ in range(3))
    for lo in range(0, k, 2048):
        c = slice(lo, min(k, lo + 2048))
        x0, x1, x2, y0, y1, y2 = a0[:, c], a1[:, c], a2[:, c], b0[c], b1[c], b2[c]
        if m <= n:
            s0, s1, s2 = np.vstack((x0, x1, x2)) @ y0, np.vstack((x0, x1)) @ y1, x0 @ y2
            parts = [(w0, s0[:m]), (w1, s0[m : 2 * m]), (w1, s1[:m]),
                     (w2, s0[2 * m :]), (w2, s1[m:]), (w2, s2)]
        else:
            ys = np.hstack((y0, y1, y2))
            p0, p1, p2 = x0 @ ys, x1 @ ys[:, : 2 * n], x2 @ y0
            parts = [(w0, p0[:, :n]), (w1, p0[:, n : 2 * n]), (w1, p1[:, :n]),
                     (w2, p0[:, 2 * n :]), (w2, p1[:, n:]), (w2, p2)]
        for total, part in parts:
            total += _ring6(part)
    w1 <<= _S22
    w2 <<= np.uint64(44)
    w0 += w1
    w0 += w2
    return w0


RING6 = "ring matmul, 6 BLAS products (issue's baseline)"
RING5 = "ring.matmul, 5 BLAS products"


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


def _alternate(first: Any, second: Any, repeat: int, before: Any = None) -> tuple[float, float]:
    """Median wall times of two functions run in turn (order swapped each
    round), so both see the same machine load; one warm-up round."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeat + 1):
        order = ((0, first), (1, second)) if i % 2 == 0 else ((1, second), (0, first))
        for slot, fn in order:
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            if i:
                times[slot].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


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


def dealer_party(cfg: dict[str, Any], session: Session) -> dict[str, float]:
    keep_freed_memory()
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
            **dict(
                zip(
                    ("local_ring_in_party", "local_ring6_in_party"),
                    _alternate(
                        lambda: ring.matmul(a.share, b.share),
                        lambda: _six_product_ring_matmul(a.share, b.share),
                        repeat,
                        before=lambda: _barrier(mpc),
                    ),
                    strict=True,
                )
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


def he_party(cfg: dict[str, Any], session: Session) -> dict[str, float]:
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

    def five_vs_six(suffix: str) -> dict[str, float]:
        """Medians of the five- and six-product ring products, run alternately."""
        five, six = (lambda: ring.matmul(ra, rb)), (lambda: _six_product_ring_matmul(ra, rb))
        times = _alternate(five, six, repeat)
        return {f"matmul_ring{suffix}": times[0], f"matmul_ring6{suffix}": times[1]}

    assert np.array_equal(ring.matmul(ra, rb), _six_product_ring_matmul(ra, rb))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # as in each party process
        one_thread = five_vs_six("_1t")
    return {
        "mul": med(lambda: x * y),
        "lt": med(lambda: x < y),
        "sigmoid": med(lambda: 1 / (1 + np.exp(-x))),
        "matmul_f64": med(lambda: a @ b),
        **five_vs_six(""),
        **one_thread,
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
    results = run_in_processes(
        {"alice": partial(dealer_party, cfg), "bob": partial(dealer_party, cfg),
         "dealer": _serve_dealer},
        ["alice", "bob", "dealer"],
        timeout=600,
    )
    dealer = results["alice"]
    # material costs nothing at alice (PRG only); bob receives the corrections
    dealer["triples"] = results["bob"]["triples"]
    dealer["matmul_triple"] = results["bob"]["matmul_triple"]
    he_cfg = {"he_mul": args.he_mul, "he_and": args.he_and}
    he_results = run_in_processes(
        partial(he_party, he_cfg), ["alice", "bob"], timeout=600
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
        # the goal: within 3× of the local ring product (six BLAS products, this process)
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_ring6"], RING6, "≤ 3×", "matmul"),
        row(
            f"matmul {dim}² online (dealer)",
            dealer["matmul_online"],
            dim * dim,
            plain["matmul_ring6"],
            RING6,
            "",
            "matmul_online",
        ),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_ring"], RING5),
        row(f"matmul {dim}² online (dealer)", dealer["matmul_online"], dim * dim, plain["matmul_ring"], RING5),
        row(
            f"matmul {dim}² (dealer)",
            dealer["matmul"],
            dim * dim,
            dealer["local_ring_in_party"],
            RING5 + " in party processes (1 BLAS thread)",
        ),
        row(
            f"matmul {dim}² online (dealer)",
            dealer["matmul_online"],
            dim * dim,
            dealer["local_ring_in_party"],
            RING5 + " in party processes (1 BLAS thread)",
        ),
        row(
            f"matmul {dim}² (dealer)",
            dealer["matmul"],
            dim * dim,
            dealer["local_ring6_in_party"],
            RING6 + " in party processes (1 BLAS thread)",
        ),
        row(f"ring.matmul {dim}³ (5 products)", plain["matmul_ring"], dim * dim, plain["matmul_ring6"], RING6),
        row(
            f"ring.matmul {dim}³ (5 products), 1 BLAS thread",
            plain["matmul_ring_1t"],
            dim * dim,
            plain["matmul_ring6_1t"],
            RING6 + ", 1 BLAS thread",
        ),
        row(
            f"ring.matmul {dim}³ (5 products) in party processes",
            dealer["local_ring_in_party"],
            dim * dim,
            dealer["local_ring6_in_party"],
            RING6 + " in party processes (1 BLAS thread)",
        ),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_u64"], "numpy uint64 matmul"),
        row(f"matmul {dim}² (dealer)", dealer["matmul"], dim * dim, plain["matmul_f64"], "numpy f64 matmul"),
        row("triples (dealer)", dealer["triples"], n, plain["prg"], "AES-CTR PRG, n words"),
        row(f"matmul triple {dim}³ (dealer)", dealer["matmul_triple"], dim * dim, plain["matmul_ring"], RING5),
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
                # the baseline: six BLAS products with this process's threads
                "matmul": dealer["matmul"] / plain["matmul_ring6"] <= 3,
                "matmul_online": dealer["matmul_online"] / plain["matmul_ring6"] <= 3,
                # stricter readings: today's ring.matmul, here and in the party processes
                "matmul_vs_ring5": dealer["matmul"] / plain["matmul_ring"] <= 3,
                "matmul_vs_party_local": dealer["matmul"] / dealer["local_ring_in_party"] <= 3,
                "mul_online": n / dealer["mul_online"] >= 10e6,
            },
        },
    )


if __name__ == "__main__":
    main()
