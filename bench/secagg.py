"""Secure aggregation against plain aggregation: seconds per round, same run, same machine.

Ten clients each hold one update of 1M float64 parameters (model deltas
drawn from N(0, 0.05²), within ±``--bound``, default 1: the job's
``update_bound``); the server sums them. A round starts when the server tells every client the round number
and ends when the server holds the sum (sending the model back afterwards
costs both the same and is not timed).

* **plain** (the baseline): every client sends its float64 vector; the
  server adds them up as they arrive.
* **secure**: :mod:`sharedml.fl.secagg` (the four stages of Bonawitz et al.,
  fresh keys, Shamir-shared seeds, AES-CTR masks) on the complete graph,
  threshold 7 (3 dropouts); the server learns only the sum. A bound of 1 for
  ten clients leaves 27 fractional bits on Z_2^32, so the masks and the
  message are 32-bit words (:meth:`Quantizer.for_sum`, error ≤ 10 · 2^-28 per
  parameter, as Flower's 2^32 modulus); ``--bound 1048576`` times Z_2^64.
* **secagg+**: the same on SecAgg+'s sparse graph (Bell et al.): each client
  masks with 4 neighbours, threshold 3 within each neighbourhood of 5.

All three run in the same cluster, one round of each per trial in an order
that rotates from trial to trial, so all see the same load:

1. **processes**: eleven OS processes (``sharedml.standalone.processes.run_in_processes``),
   gRPC with mutual TLS over loopback, certificates from the run's own CA;
2. **threads**: the same party functions over ``LocalChannel`` in one process;
3. **1 dropout** (processes): clusters whose last secure round loses one
   client after it shared its keys and before its masked input (it
   disconnects) — the costly case: the server recovers that client's mask
   key from the others' shares and removes the nine masks it shared. One
   sample per cluster; ``--dropout-clusters`` clusters.

Besides wall seconds per round (the server's, start to sum), each row gives
the CPU seconds the round cost all eleven processes together (each client's
from one round's start to the next, so sends finishing in the background
count): on a shared machine the wall ratio drifts toward the CPU ratio as the
load grows. ``server CPU s +`` and ``client CPU s +`` are what secure
aggregation adds to the server's and to the median client's own CPU per
round: here ten clients share two cores, in a deployment each computes its
masks on its own machine, in parallel.

Goal (issue 16): secure ≤ 2× plain per round at 10 × 1M (Flower's SecAgg+
measured 5.8× on this kind of machine: 3.80 s vs 0.66 s). Medians over
``--trials`` rounds of each after ``--warmup``. The machine is shared: quote
the load. Run: ``.venv/bin/python bench/secagg.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
from typing import Any

import numpy as np

from _common import report
from sharedml.errors import ChannelError
from sharedml.fl.secagg import SecAggClient, SecAggConfig, SecAggServer, Submission
from sharedml.fl.secagg.client import _RoundState
from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes
from sharedml.transport.base import Channel
from sharedml.transport.local import LocalHub

SERVER = "aggregator"
START, PLAIN = "bench/start", "bench/plain"


def _clients(n: int) -> list[str]:
    return [f"bank{i:02d}" for i in range(n)]


MODES = ("plain", "secure", "secagg+")
#: SecAgg+'s graph degree and the threshold within each neighbourhood of five
DEGREE, NEIGHBOURHOOD_THRESHOLD = 4, 3


def _configs(n: int, bound: float) -> dict[str, SecAggConfig]:
    """The complete graph tolerating 3 dropouts, and SecAgg+ of degree 4."""
    return {
        "secure": SecAggConfig.for_dropouts(
            SERVER, _clients(n), 3, bound=bound, stage_timeout=60.0, input_timeout=60.0
        ),
        "secagg+": SecAggConfig(
            SERVER, tuple(_clients(n)), NEIGHBOURHOOD_THRESHOLD, bound, stage_timeout=60.0,
            neighbours=DEGREE, input_timeout=60.0,
        ),
    }  # fmt: skip


def _update(party: str, length: int) -> np.ndarray:
    seed = int.from_bytes(party.encode(), "little") % 2**32
    return np.random.default_rng(seed).normal(0.0, 0.05, length)


class _Leaves(SecAggClient):
    """Disconnects after sharing its keys, before its masked input, in round ``at``."""

    def __init__(self, session: Session, cfg: SecAggConfig, at: int, leave: Any) -> None:
        super().__init__(session, cfg)
        self.at, self.leave = at, leave

    def _masked_input(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        if st.round == self.at:
            self.leave()
            return Submission(st.round, False, "left")
        return super()._masked_input(st, x)


def server(
    session: Session, n: int, length: int, rounds: list[str], bound: float
) -> dict[str, Any]:
    """Run ``rounds`` (each one of MODES); return seconds per round by mode."""
    aggs = {mode: SecAggServer(session, cfg) for mode, cfg in _configs(n, bound).items()}
    clients = _clients(n)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: list[float] = []
    errors: list[float] = []
    survivors: list[int] = []
    expected = {c: _update(c, length) for c in clients}
    for r, mode in enumerate(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for c in clients:
            with contextlib.suppress(ChannelError):  # a client that left: the round finds out
                session.channel.send(c, START, np.array([r, MODES.index(mode)], dtype=np.int64))
        if mode == "plain":
            total = np.zeros(length)
            for c in clients:
                total += session.channel.recv(c, PLAIN)
            members = clients
        else:
            res = aggs[mode].aggregate(r, clients, length)
            total, members = res.total, list(res.survivors)
        times[mode].append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        errors.append(float(np.max(np.abs(total - sum(expected[c] for c in members)))))
        survivors.append(len(members))
    for c in clients:
        with contextlib.suppress(ChannelError):
            session.channel.send(c, START, np.array([-1, 0], dtype=np.int64))
    return {"times": times, "cpu": cpu, "max_error": max(errors), "survivors": survivors}


def client(session: Session, n: int, length: int, drop_at: int, bound: float) -> list[float]:
    """Take part in the server's rounds; return this process's CPU seconds in each
    (from one round's start to the next one's, so sends that finish in the
    background count too)."""
    cpu: list[float] = []
    x = _update(session.party, length)
    me: dict[str, SecAggClient] = {}
    for mode, cfg in _configs(n, bound).items():
        leaving = drop_at >= 0 and mode == "secure"
        me[mode] = (
            _Leaves(session, cfg, drop_at, session.channel.close)
            if leaving
            else SecAggClient(session, cfg)
        )
    last = None
    while True:
        r, code = (int(v) for v in session.channel.recv(SERVER, START, timeout=600))
        now = time.process_time()
        if last is not None:
            cpu.append(now - last)
        last = now
        if r < 0:
            return cpu
        if MODES[code] == "plain":
            session.channel.send(SERVER, PLAIN, x)
        elif not me[MODES[code]].submit(r, x).included and r == drop_at:
            return cpu  # gone


def _schedule(warmup: int, trials: int, modes: tuple[str, ...] = MODES) -> list[str]:
    """Each trial runs every mode once, the order rotating from trial to trial."""
    out: list[str] = []
    for t in range(warmup + trials):
        k = t % len(modes)
        out += [*modes[k:], *modes[:k]]
    return out


class _Party:
    """Picklable per-party entry points for run_in_processes."""

    def __init__(
        self, role: str, n: int, length: int, rounds: list[str], drop_at: int, bound: float
    ) -> None:
        self.role, self.n, self.length, self.rounds, self.drop_at = role, n, length, rounds, drop_at
        self.bound = bound

    def __call__(self, session: Session) -> Any:
        if self.role == "server":
            return server(session, self.n, self.length, self.rounds, self.bound)
        return client(session, self.n, self.length, self.drop_at, self.bound)


def in_processes(
    n: int, length: int, rounds: list[str], bound: float, dropper: str | None = None
) -> Any:
    drop_at = len(rounds) - 1 if dropper else -1
    fns = {SERVER: _Party("server", n, length, rounds, -1, bound)}
    for c in _clients(n):
        fns[c] = _Party("client", n, length, rounds, drop_at if c == dropper else -1, bound)
    out = run_in_processes(fns, [SERVER, *_clients(n)], timeout=600)
    res = out[SERVER]
    res["server_cpu"] = list(res["cpu"])
    res["client_cpu"] = [
        statistics.median(out[c][r] for c in _clients(n) if r < len(out[c]))
        for r in range(len(res["cpu"]))
    ]  # the median client's CPU seconds, round by round
    for c in _clients(n):  # every process's CPU seconds, round by round
        for r, seconds in enumerate(out[c]):
            res["cpu"][r] += seconds
    return res


def in_threads(n: int, length: int, rounds: list[str], bound: float) -> Any:
    hub = LocalHub([SERVER, *_clients(n)])
    out: dict[str, Any] = {}

    def body(party: str) -> None:
        ch: Channel = hub.channel(party, timeout=600)
        s = Session(party, (SERVER, *_clients(n)), ch)
        out[party] = (
            server(s, n, length, rounds, bound)
            if party == SERVER
            else client(s, n, length, -1, bound)
        )

    threads = [threading.Thread(target=body, args=(p,)) for p in hub.mailboxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out[SERVER]


def _rows(setting: str, res: dict[str, Any], rounds: list[str], load: float) -> list[dict]:
    """One row per secure mode, beside the plain rounds of the same run."""
    plain = statistics.median(res["times"]["plain"])

    def per_mode(key: str) -> dict[str, float]:
        return {
            m: statistics.median(c for c, k in zip(res[key], rounds, strict=True) if k == m)
            for m in MODES
        }

    cpu = per_mode("cpu")
    parts = {k: per_mode(k) for k in ("server_cpu", "client_cpu") if k in res}
    return [
        {
            "setting": setting,
            "mode": mode,
            "plain s/round": plain,
            "secure s/round": statistics.median(res["times"][mode]),
            "secure/plain": statistics.median(res["times"][mode]) / plain,
            "CPU s/round plain": cpu["plain"],
            "CPU s/round secure": cpu[mode],
            **{
                f"{k.split('_')[0]} CPU s +": v[mode] - v["plain"]  # one process's extra
                for k, v in parts.items()
            },
            "rounds each": len(res["times"][mode]),
            "max |error|": res["max_error"],
            "load (1 min)": load,
        }
        for mode in MODES[1:]
    ]


def _dropout_row(n: int, length: int, clusters: int, bound: float) -> dict[str, Any]:
    """The last secure round of each of ``clusters`` clusters loses bank09."""
    drop_times, plain_times, drop_err = [], [], 0.0
    for _ in range(clusters):
        res = in_processes(n, length, [*_schedule(1, 1, MODES[:2]), "secure"], bound, "bank09")
        assert res["survivors"][-1] == n - 1, res["survivors"]
        drop_times.append(res["times"]["secure"][-1])
        plain_times.append(res["times"]["plain"][-1])
        drop_err = max(drop_err, res["max_error"])
    return {
        "setting": "processes, 1 dropout (after sharing keys)",
        "mode": "secure",
        "plain s/round": statistics.median(plain_times),
        "secure s/round": statistics.median(drop_times),
        "secure/plain": statistics.median(drop_times) / statistics.median(plain_times),
        "rounds each": len(drop_times),
        "max |error|": drop_err,
        "load (1 min)": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--length", type=int, default=1_000_000)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dropout-clusters", type=int, default=3)
    ap.add_argument("--skip-threads", action="store_true")
    ap.add_argument("--bound", type=float, default=1.0, help="the updates' bound (update_bound)")
    args = ap.parse_args()
    rounds = _schedule(args.warmup, args.trials)
    timed = rounds[len(MODES) * args.warmup :]
    procs = _trim(in_processes(args.clients, args.length, rounds, args.bound), args.warmup)
    rows = _rows("processes, gRPC+mTLS", procs, timed, os.getloadavg()[0])
    if not args.skip_threads:
        threads = _trim(in_threads(args.clients, args.length, rounds, args.bound), args.warmup)
        rows += _rows("threads, LocalChannel", threads, timed, os.getloadavg()[0])
    if args.dropout_clusters:
        rows.append(
            _dropout_row(args.clients, args.length, args.dropout_clusters, args.bound)
        )
    met = {
        "overhead (complete graph)": rows[0]["secure/plain"] <= 2.0,
        "overhead (SecAgg+)": rows[1]["secure/plain"] <= 2.0,
    }
    report(
        f"secagg: {args.clients} clients x {args.length:,} float64 parameters",
        rows,
        {"goal": "secure <= 2x plain (processes)", "goals_met": met,
         "ring_bits": _configs(args.clients, args.bound)["secure"].quantizer.ring_bits},
    )


def _trim(res: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Drop the warm-up rounds (one of each mode per warm-up trial)."""
    times = {m: t[warmup:] for m, t in res["times"].items()}
    skip = len(MODES) * warmup
    cpus = {k: res[k][skip:] for k in ("cpu", "server_cpu", "client_cpu") if k in res}
    return {**res, "times": times, **cpus}


if __name__ == "__main__":
    main()
