"""WAN: PSI, SS-LR and SecureBoost between processes over emulated links, against their floor.

Every workload runs its parties as separate processes over gRPC with mutual
TLS (:func:`sharedml.standalone.processes.run_in_processes`), first on loopback, then with
every party-to-party connection through a shaping proxy
(:class:`sharedml.transport.wan.ShapedNetwork`, running in this process)
for each profile: ``wan10`` (10 ms RTT, 1 Gbit/s) and ``wan50`` (50 ms RTT,
100 Mbit/s); ``--profiles`` adds ``proxy`` (the proxy with no delay: its own
cost). Workloads (``--workloads``):

* ``link`` — the emulation itself: 50 round trips of 16 bytes (median RTT
  against the profile's) and one 16 MB array (MB/s against its bandwidth)
  between two parties, so the other rows can be trusted;
* ``psi`` — KKRT PSI, 100k × 100k ids, 50% overlap (``bench/psi.py``'s parties);
* ``sslr`` — SS-LR on default_credit, 5 epochs, batch 1024, ``pwl`` sigmoid,
  with a dealer process, then scoring the 30% hold-out (``bench/vertical.py``'s),
  its mini-batches in groups of three (the default); ``sslr_g1``: the same in
  groups of one (plain SGD, the protocol before groups), for before/after;
* ``sslr_wan`` — the WAN profile of SS-LR: batch 4096, groups of three,
  learning rate 4 with ``invscaling``, still 5 epochs (10 groups instead of 35;
  picked by a plaintext sweep on this split). Goal: the ``sslr`` loopback
  AUC within 0.005 in at most 3× the ``sslr`` loopback time, at 50 ms RTT;
* ``secureboost`` — SecureBoost ``ss``, 10 trees of depth 3, with a dealer,
  then scoring the hold-out (``bench/vertical_secureboost.py``'s);
* ``scoring`` — batch scoring of a released model: a seam, listed as pending
  until the model-release work lands (add its parties to :data:`WORKLOADS`).

Each party's channel is wrapped in a
:class:`~sharedml.transport.traffic.TrafficMeter`, so a row gives beside the
seconds (from the moment the last party's process starts its part — spawn
and imports are not the network's — to the end of the last data party's,
connection set-up included)
the **rounds** (the run's critical path in one-way hops,
:func:`sharedml.transport.traffic.rounds`), the payload **bytes each party
sent**, and the bytes the proxies carried (TLS and HTTP/2 included). The
**floor** of a shaped run is ``rounds × RTT/2 + busiest link's payload ÷
bandwidth + the loopback median``: a hop costs one one-way delay (an
exchange where both parties send, then wait, is one hop; a request and its
reply are two). The goal (issue 13) is ``seconds ≤ 1.2 × floor`` at 50 ms
RTT, and for SS-LR at most 4 rounds per mini-batch, from
``(rounds(5 epochs) − rounds(1 epoch)) / (batches in 4 epochs)`` at loopback.

Medians over ``--repeat`` runs; this machine is small and shared, so the
loopback median (the floor's last term) moves with the load too.

    .venv/bin/python bench/wan.py
    .venv/bin/python bench/wan.py --workloads psi --profiles wan50 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA, default_credit_split, report
from sharedml.session import Session
from sharedml.transport.shaping import PROFILES, LinkProfile
from sharedml.transport.traffic import Event, TrafficMeter, link_bytes, rounds

GOAL_FLOOR_RATIO = 1.2
GOAL_ROUNDS_PER_BATCH = 4
GOAL_WAN_PROFILE = (0.005, 3.0)  # AUC within, times the loopback time
WAN_PROFILE = {"batch": 4096, "params": {"learning_rate": 4.0, "lr_schedule": "invscaling"}}
TRAIN_ROWS = 21_000  # default_credit's 70% split
LINK_PINGS = 50
LINK_BULK = 16 << 20
SSLR_BATCH = 1024


# -- in the party processes -------------------------------------------------------------------
def run_party(call: str, opts: dict[str, Any], session: Session) -> dict[str, Any]:
    """Run the workload's own party function ``call`` ("module:function", taking
    ``(opts, session)`` or ``(session)``), timed, with its meter log."""
    module, name = call.split(":")
    fn = getattr(importlib.import_module(module), name)
    takes_opts = len(inspect.signature(fn).parameters) == 2
    start = time.monotonic()  # one clock for every process on this host
    out = dict(fn(opts, session) if takes_opts else fn(session))
    out["start"], out["end"] = start, time.monotonic()
    meter = session.channel
    out["events"] = meter.events if isinstance(meter, TrafficMeter) else []
    return out


def link_party(opts: dict[str, Any], session: Session) -> dict[str, Any]:
    """The ``link`` workload: ``A`` measures round trips and a bulk transfer to ``B``."""
    import numpy as np

    ch = session.channel
    ping, bulk = np.zeros(2), np.zeros(LINK_BULK // 8)
    if session.party == "B":
        for _ in range(LINK_PINGS):
            ch.send("A", "pong", ch.recv("A", "ping"))
        ch.recv("A", "bulk")
        ch.send("A", "ack", b"k")
        return {}
    ch.send("B", "ping", ping)  # the first one pays for the connections
    ch.recv("B", "pong")
    rtts = []
    for _ in range(LINK_PINGS - 1):
        start = time.perf_counter()
        ch.send("B", "ping", ping)
        ch.recv("B", "pong")
        rtts.append(time.perf_counter() - start)
    start = time.perf_counter()
    ch.send("B", "bulk", bulk)
    ch.recv("B", "ack")
    seconds = time.perf_counter() - start
    return {"measured": f"rtt {statistics.median(rtts) * 1e3:.1f} ms, "
                        f"{LINK_BULK / seconds / 1e6:.0f} MB/s"}


# -- workloads ----------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    #: party -> "module:function" run in that party's process
    calls: dict[str, str]
    extras: dict[str, Any]
    #: the parties whose run time is the workload's (not the dealer's serving loop)
    timed: tuple[str, ...]
    quality: str | None = None
    #: why the workload cannot run yet (a seam for future work)
    pending: str | None = None
    #: the party that deals correlated randomness, if any
    dealer: str | None = None
    batches: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _default_credit(data: Path) -> dict[str, Any]:
    train, test = default_credit_split(data)
    return {"data": str(data), "train": train, "test": test, "profile": None}


def workloads(data: Path, epochs: int) -> dict[str, Workload]:
    lr = {**_default_credit(data), "model": "ss", "epochs": epochs, "sigmoid": "pwl"}
    sb = {**_default_credit(data), "protocol": "ss", "trees": 10}
    per_epoch = -(-TRAIN_ROWS // SSLR_BATCH)
    sslr = {"guest": "vertical:party", "host": "vertical:party", "dealer": "vertical:dealer"}
    return {
        "link": Workload("link", {p: "wan:link_party" for p in "AB"}, {}, ("A",), "measured"),
        "psi": Workload(
            "psi", {p: "psi:party" for p in "AB"},
            {"n": 100_000, "processes": False, "protocol": "kkrt"}, ("A", "B"), "size",
        ),
        "sslr": Workload(
            "sslr", sslr, lr, ("guest", "host"), "auc", batches=epochs * per_epoch,
            dealer="dealer",
        ),
        "sslr_g1": Workload(
            "sslr_g1", sslr, {**lr, "params": {"group_batches": 1}}, ("guest", "host"), "auc",
            batches=epochs * per_epoch, dealer="dealer",
        ),
        "sslr_wan": Workload(
            "sslr_wan", sslr, {**lr, **WAN_PROFILE}, ("guest", "host"), "auc", dealer="dealer",
        ),
        "secureboost": Workload(
            "secureboost", {"guest": "vertical_secureboost:party",
                            "host": "vertical_secureboost:party",
                            "dealer": "vertical_secureboost:dealer"},
            sb, ("guest", "host"), "auc", dealer="dealer",
        ),
        "scoring": Workload(
            "scoring", {}, {}, (), pending="needs «Model release» (issue 12): add its parties "
            "to WORKLOADS when it lands",
        ),
    }


def run_once(work: Workload, profile: LinkProfile | None) -> dict[str, Any]:
    """One run; ``profile=None`` is plain loopback (no proxy)."""
    from sharedml.standalone.processes import run_in_processes
    from sharedml.transport.wan import ShapedNetwork

    parties = list(work.calls)
    fns = {p: partial(run_party, call, work.extras) for p, call in work.calls.items()}
    wire: dict[str, dict[str, int]] = {}
    if profile is None:
        out = run_in_processes(fns, parties, wrap=TrafficMeter, timeout=1800, dealer=work.dealer)
    else:
        with ShapedNetwork(profile, seed=0) as net:
            wrap = net.joiner(then=TrafficMeter)
            out = run_in_processes(fns, parties, wrap=wrap, timeout=1800, dealer=work.dealer)
            wire = net.stats()
    logs: dict[str, list[Event]] = {p: out[p]["events"] for p in parties}
    links = link_bytes(logs)
    sent = {p: sum(n for (a, _), n in links.items() if a == p) for p in parties}
    return {
        # from the last party's start (nothing moves before) to the last timed party's end
        "seconds": max(out[p]["end"] for p in work.timed) - max(o["start"] for o in out.values()),
        "rounds": rounds(logs),
        "sent": sent,
        "busiest_link": max(links.values(), default=0),
        "wire": sum(s["bytes"] for s in wire.values()),
        "quality": out[work.timed[0]].get(work.quality) if work.quality else None,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def measure(
    work: Workload, profiles: list[str], repeat: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for one workload, loopback first (the floor needs its median).

    Trials alternate (loopback, then each profile, ``repeat`` times) so
    every link sees the same machine load.
    """
    links: dict[str, LinkProfile | None] = {"loopback": None}
    for name in profiles:
        links[name] = LinkProfile(name="no delay") if name == "proxy" else PROFILES[name]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in links}
    for _ in range(repeat):
        for name, profile in links.items():
            runs[name].append(run_once(work, profile))
    base_s = _median(runs["loopback"], "seconds")
    rows = [_row(work, name, links[name], runs[name], base_s) for name in links]
    return rows, runs["loopback"][0]


def _row(
    work: Workload, name: str, profile: LinkProfile | None, runs: list[dict[str, Any]],
    base_s: float,
) -> dict[str, Any]:
    seconds, hops = _median(runs, "seconds"), int(_median(runs, "rounds"))
    row: dict[str, Any] = {
        "workload": work.name,
        "link": name,
        "seconds": seconds,
        "rounds": hops,
        "sent_MB": " ".join(f"{p}:{b / 1e6:.1f}" for p, b in runs[0]["sent"].items() if b),
        "wire_MB": _median(runs, "wire") / 1e6 if profile is not None else None,
        "quality": runs[0]["quality"],
    }
    if profile is not None and name != "proxy":
        floor = hops * profile.one_way_s + _median(runs, "busiest_link") / profile.bytes_per_s
        floor += base_s
        row.update({"floor_s": floor, "x_floor": seconds / floor})
        if name == "wan50":
            row["meets_goal"] = seconds <= GOAL_FLOOR_RATIO * floor
    return row


def rounds_per_batch(work: Workload, total_rounds: int) -> dict[str, Any]:
    """SS-LR's rounds per mini-batch: a one-epoch run's rounds taken from the full run's."""
    one = Workload(**{**vars(work), "extras": {**work.extras, "epochs": 1}})
    single = run_once(one, None)
    per_epoch = -(-TRAIN_ROWS // SSLR_BATCH)
    epochs = work.extras["epochs"]
    per_batch = (total_rounds - single["rounds"]) / ((epochs - 1) * per_epoch)
    return {
        "rounds_per_batch": per_batch,
        "setup_and_scoring_rounds": single["rounds"] - per_batch * per_epoch,
        "goal": GOAL_ROUNDS_PER_BATCH,
        "meets_goal": per_batch <= GOAL_ROUNDS_PER_BATCH,
    }


def wan_profile_goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The WAN profile at 50 ms RTT against the default SS-LR job at loopback."""
    find = {(r["workload"], r["link"]): r for r in rows}
    base, wan = find.get(("sslr", "loopback")), find.get(("sslr_wan", "wan50"))
    if base is None or wan is None:
        return {}
    auc_gap, ratio = abs(wan["quality"] - base["quality"]), wan["seconds"] / base["seconds"]
    return {
        "auc_gap": auc_gap,
        "x_loopback_time": ratio,
        "meets_goal": auc_gap <= GOAL_WAN_PROFILE[0] and ratio <= GOAL_WAN_PROFILE[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads", nargs="+",
        default=["link", "psi", "sslr", "sslr_g1", "sslr_wan", "secureboost", "scoring"],
    )
    parser.add_argument("--profiles", nargs="+", default=["wan10", "wan50"],
                        choices=["proxy", *PROFILES])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    table = workloads(args.data, args.epochs)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {
        "load_before": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "links": {name: vars(p) for name, p in PROFILES.items()},
    }
    for name in args.workloads:
        work = table[name]
        if work.pending:
            rows.append({"workload": name, "link": "pending", "note": work.pending})
            continue
        got, first = measure(work, args.profiles, args.repeat)
        rows += got
        if name in ("sslr", "sslr_g1") and args.epochs > 1:
            extra[f"{name}_rounds"] = rounds_per_batch(work, first["rounds"])
    goals = [r["meets_goal"] for r in rows if "meets_goal" in r]
    extra["wan_profile"] = wan_profile_goal(rows)
    extra["goals_met"] = {
        "x_floor_at_wan50": all(goals) if goals else None,
        "sslr_rounds_per_batch": extra.get("sslr_rounds", {}).get("meets_goal"),
        "sslr_wan_profile": extra["wan_profile"].get("meets_goal"),
    }
    extra["load_after"] = os.getloadavg()[0]
    report("wan", rows, extra)


if __name__ == "__main__":
    main()
