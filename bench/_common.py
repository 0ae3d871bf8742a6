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
from typing import Any

from rich.console import Console
from rich.table import Table


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
