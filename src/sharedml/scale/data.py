"""Sharded preprocessing on a party's Ray cluster: rows stay in their shards.

A *partitioned dataset* is a folder of Parquet or CSV files (or one file):
one shard per file, read by pandas inside a Ray task
(:meth:`RayCompute.map <sharedml.scale.runtime.RayCompute.map>`, at most
``workers`` shards in flight). Fitting sends back per-shard statistics only
(:class:`~sharedml.scale.moments.Moments`, category sets); transforming
writes each shard's result next to it, so no process ever holds the whole
table. The fitted objects are the single-process ones
(:class:`~sharedml.learn.preprocessing.scaling.Scaler`,
:class:`~sharedml.learn.preprocessing.impute.Filler`), so what follows a
sharded fit is the same code.

Everything here runs inside one party: its shards, its workers, its
statistics. Nothing crosses to another party.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sharedml.errors import DataError
from sharedml.learn.preprocessing.impute import Filler
from sharedml.learn.preprocessing.scaling import Method, Scaler
from sharedml.scale.moments import Moments, combine
from sharedml.scale.runtime import Progress, RayCompute, _no_progress

STEP = "preprocess/sharded"
SUFFIXES = (".parquet", ".csv")


def shard_paths(path: str | Path) -> list[Path]:
    """The shards of a partitioned dataset: the Parquet/CSV files of a folder, sorted."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES) if path.is_dir() else [path]
    if not files or any(not f.is_file() for f in files):
        raise DataError(f"no Parquet or CSV shards at {path}", step=STEP,
                        remedy="point the dataset at a folder of .parquet or .csv files")
    return files


def read_shard(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One shard as a frame (``columns`` only, if given)."""
    cols = None if columns is None else list(columns)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path, columns=cols)
        return pd.read_csv(path, usecols=cols)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read shard {path.name}: {exc}", step=STEP,
                        remedy="check that every shard has the dataset's columns") from None


def shard_moments(path: Path, columns: Sequence[str]) -> Moments:
    """A Ray task: one shard's column statistics."""
    return Moments.of(read_shard(path, columns).to_numpy(np.float64))


def shard_categories(path: Path, columns: Sequence[str]) -> list[list[str]]:
    """A Ray task: one shard's distinct values per column, as text."""
    frame = read_shard(path, columns)
    return [sorted(set(frame[c].dropna().astype(str))) for c in columns]


def moments(
    compute: RayCompute, paths: Sequence[Path], columns: Sequence[str],
    progress: Progress = _no_progress,
) -> Moments:
    """Column statistics of the whole dataset, combined from its shards'."""
    parts = compute.map(shard_moments, paths, args=(list(columns),), step=STEP,
                        total=len(paths), progress=progress)
    return combine(parts)


def scaler_from(stats: Moments, method: Method = "standard") -> Scaler:
    """The :class:`Scaler` that ``Scaler(method).fit`` would give on the rows of ``stats``.

    A column counts as constant (scale 1) by scikit-learn's own test
    (``var <= n·eps·var + (n·mean·eps)^2``), so rounding in the combined
    variance of a constant column cannot blow its scaled values up."""
    scaler = Scaler(method)
    if method == "standard":
        eps, n = np.finfo(np.float64).eps, stats.count
        var = np.nan_to_num(stats.variance)
        constant = var <= n * eps * var + (n * stats.mean * eps) ** 2
        scaler.center_, scaler.scale_ = stats.mean, np.where(constant, 1.0, np.sqrt(var))
    else:
        span = stats.maximum - stats.minimum
        scaler.center_, scaler.scale_ = stats.minimum, np.where(span == 0, 1.0, span)
    return scaler


def filler_from(stats: Moments, value: float = 0.0) -> Filler:
    """The mean :class:`Filler` of the rows of ``stats`` (``value`` where a column has none)."""
    filler = Filler("mean", value)
    filler.fill_ = np.where(stats.count > 0, stats.mean, value)
    return filler


def fit_scaler(compute: RayCompute, paths: Sequence[Path], columns: Sequence[str],
               method: Method = "standard") -> Scaler:
    """A :class:`Scaler` fitted on every shard, as ``Scaler(method).fit(whole table)``."""
    return scaler_from(moments(compute, paths, columns), method)


def fit_filler(compute: RayCompute, paths: Sequence[Path], columns: Sequence[str],
               value: float = 0.0) -> Filler:
    """A mean :class:`Filler` fitted on every shard (the median needs every row: not sharded)."""
    return filler_from(moments(compute, paths, columns), value)


def row_moments(compute: RayCompute, x: np.ndarray, progress: Progress = _no_progress) -> Moments:
    """Column statistics of an in-memory table, ``shard_rows`` rows per Ray task."""
    rows = compute.config.shard_rows
    shards = (x[i : i + rows] for i in range(0, len(x), rows))
    parts = compute.map(Moments.of, shards, step=STEP, total=-(-len(x) // rows),
                        progress=progress)
    return combine(parts)


def fit_on_shards(compute: RayCompute, model: Scaler | Filler, x: np.ndarray) -> bool:
    """Fit a job step's ``model`` from per-shard statistics of its rows ``x``; ``False``
    (not fitted) when it needs every row at once (a median), nothing (a constant) or
    there are no rows (the local fit says what is wrong)."""
    if (isinstance(model, Filler) and model.strategy != "mean") or not len(x):
        return False
    stats = row_moments(compute, np.asarray(x, np.float64))
    if isinstance(model, Scaler):
        fitted = scaler_from(stats, model.method)
        model.center_, model.scale_ = fitted.center_, fitted.scale_
    else:
        model.fill_ = filler_from(stats, model.value).fill_
    return True


def categories(compute: RayCompute, paths: Sequence[Path], columns: Sequence[str]) -> dict[str, list[str]]:
    """Every column's categories over all shards (what one-hot encoding declares)."""
    parts = compute.map(shard_categories, paths, args=(list(columns),), step=STEP)
    return {c: sorted(set().union(*(p[i] for p in parts))) for i, c in enumerate(columns)}


def transform_shard(path: Path, out_dir: Path, columns: Sequence[str],
                    fitted: Sequence[Scaler | Filler]) -> tuple[str, int]:
    """A Ray task: apply ``fitted`` in order to a shard's ``columns``; write it as Parquet."""
    frame = read_shard(path)
    x = frame[list(columns)].to_numpy(np.float64)
    for step in fitted:
        x = step.transform(x)
    frame[list(columns)] = x
    out = out_dir / f"{path.stem}.parquet"
    frame.to_parquet(out, index=False)
    return str(out), len(frame)


def transform(compute: RayCompute, paths: Sequence[Path], out_dir: Path, columns: Sequence[str],
              fitted: Sequence[Scaler | Filler], progress: Progress = _no_progress) -> list[Path]:
    """Every shard transformed on the workers and written to ``out_dir`` (shard by shard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = compute.map(transform_shard, paths, args=(out_dir, list(columns), list(fitted)),
                       step=STEP, total=len(paths), progress=progress)
    return [Path(p) for p, _ in done]
