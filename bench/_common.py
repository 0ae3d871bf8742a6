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
