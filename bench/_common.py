"""Benchmark conventions shared by every script under bench/.

Each script times sharedml *and* its baseline in the same run, prints a table
with the ratio, and ends with exactly one line of JSON holding its figures, so
runs can be collected and compared over time. Quote medians: this machine is
small and noisy.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: The reference data sets the benchmarks read: the copies vendored for the tests
#: (provenance and licences in tests/data/README.md).
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "datasets"


def median_seconds(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    """Print ``rows`` as a table, then one JSON line ``{"bench": name, "rows": rows, ...}``."""
    table = Table(title=name)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    Console().print(table)
    print(json.dumps({"bench": name, "rows": rows, **(extra or {})}, default=float))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def load_default_credit(folder: Path, side: str) -> pd.DataFrame:
    """One party's file of ``default_credit_hetero`` (``guest`` or ``host``), in id order."""
    import pandas as pd

    return pd.read_csv(folder / f"default_credit_hetero_{side}.csv").sort_values("id")


def default_credit_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (in id order) of the 70/30 split, stratified on y, seed 42."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    guest = load_default_credit(folder, "guest")
    idx = np.arange(len(guest))
    train, test = train_test_split(idx, test_size=0.3, random_state=42, stratify=guest["y"])
    return np.asarray(train), np.asarray(test)


# -- the vertical benchmarks' parties (bench/vertical.py, bench/nn.py) -------------------------


def party_columns(folder: Path, party: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``party``'s default_credit columns (id dropped) and, at the guest, the label."""
    import numpy as np

    frame = load_default_credit(folder, party)
    y = frame.pop("y").to_numpy(np.float64) if "y" in frame else None
    return frame.drop(columns=["id"]).to_numpy(np.float64), y


def joined_default_credit(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both parties' columns side by side and the label: the plaintext baselines' data."""
    import numpy as np

    (Xg, y), (Xh, _) = party_columns(folder, "guest"), party_columns(folder, "host")
    if y is None:
        raise SystemExit(f"{folder}: the guest's default_credit file holds no label y")
    return np.hstack([Xg, Xh]), y


def fit_and_score(
    model: Any, session: Any, opts: dict[str, Any], profile: str | None = None
) -> dict[str, Any]:
    """One data party's run: fit on ``opts["train"]`` rows of its own file
    (timed: wall and CPU, setup and each epoch as ``fit`` records them), then
    predict ``opts["test"]``; the AUC at the label holder. ``profile``: a
    folder for this party's cProfile of ``fit`` (CPU clock)."""
    from sharedml.learn.metrics import roc_auc

    X, y = party_columns(Path(opts["data"]), session.party)
    train, test = opts["train"], opts["test"]
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(session, X[train], None if y is None else y[train])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile}/{session.party}.prof")
    out: dict[str, Any] = {
        "fit_s": time.perf_counter() - t0,
        "fit_cpu_s": time.process_time() - c0,
        "setup_s": model.setup_seconds_,
        "epochs_s": list(model.epoch_seconds_),
    }
    scores = model.predict(session, X[test])
    if scores is not None and y is not None:
        out["auc"] = roc_auc(y[test], scores)
    return out


def serve_dealer_runs(session: Any, runs: int = 1) -> dict[str, Any]:
    """The dealer process: serve ``runs`` runtimes (fit, then prediction with
    shared weights), count what it sent and its CPU time."""
    from sharedml.mpc import serve_dealer

    c0 = time.process_time()
    requests = sent = 0
    for _ in range(runs):
        stats = serve_dealer(session, ["guest", "host"])
        requests += stats.requests
        sent += stats.bytes_sent
    return {"requests": requests, "bytes": sent, "cpu_s": time.process_time() - c0}


def epoch_row(out: dict[str, Any], base_s: float, goal: float | None) -> dict[str, Any]:
    """The figures of one shared run (``out``: each process's result) against
    the plaintext seconds per epoch ``base_s``: the median epoch at the guest."""
    per_epoch = statistics.median(out["guest"]["epochs_s"])
    return {
        "setup_s": out["guest"]["setup_s"],
        "fit_s": out["guest"]["fit_s"],
        "guest_cpu_s": out["guest"]["fit_cpu_s"],
        "host_cpu_s": out["host"]["fit_cpu_s"],
        "dealer_cpu_s": out["dealer"]["cpu_s"] if "dealer" in out else None,
        "s_per_epoch": per_epoch,
        "ratio": per_epoch / base_s,
        "auc": out["guest"]["auc"],
        "goal_s_per_epoch": goal,
        "meets_goal": None if goal is None else per_epoch <= goal,
    }
