"""Sharded statistics, histograms and Paillier randomisers on a local Ray cluster give
the single-process results (statistics within 1e-12, histograms exactly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.crypto.paillier import generate_keypair
from sharedml.errors import ComputeError
from sharedml.learn.preprocessing.impute import Filler
from sharedml.learn.preprocessing.scaling import Scaler
from sharedml.learn.tree.core import bin_offsets, histogram
from sharedml.scale import data
from sharedml.scale.config import RayConfig
from sharedml.scale.histograms import sharded_histogram
from sharedml.scale.moments import ring_histogram
from sharedml.scale.runtime import RayCompute

#: make test-parallel: every Ray test on one xdist worker, beside the one cluster
pytestmark = pytest.mark.xdist_group("ray")

NUMERIC = ["income", "age", "debt", "flat"]


@pytest.fixture(scope="module")
def compute(ray_cluster: Any) -> RayCompute:
    return RayCompute(RayConfig(address="auto", workers=2, cpus_per_worker=0.5), party="alice")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[Path]]:
    rng = np.random.default_rng(11)
    n = 5000
    frame = pd.DataFrame({
        "income": rng.lognormal(10, 1, n),
        "age": rng.integers(18, 90, n).astype(float),
        "debt": rng.normal(1e6, 3e5, n),
        "flat": np.full(n, 3.5),
        "region": rng.choice(["north", "south", "east", "west", "centre"], n),
    })
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    frame.loc[rng.random(n) < 0.05, "debt"] = np.nan
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for i, start in enumerate(range(0, n, 1100)):  # uneven last shard
        path = folder / f"part-{i:03d}.{'csv' if i == 2 else 'parquet'}"
        piece = frame.iloc[start : start + 1100]
        if path.suffix == ".csv":
            piece.to_csv(path, index=False)
        else:
            piece.to_parquet(path, index=False)
        paths.append(path)
    return frame, data.shard_paths(folder)


def test_scalers_and_filler_match_the_whole_table(compute: RayCompute, table: Any) -> None:
    frame, paths = table
    whole = frame[NUMERIC].to_numpy(np.float64)
    for method in ("standard", "minmax"):
        sharded = data.fit_scaler(compute, paths, NUMERIC, method)
        single = Scaler(method).fit(whole)
        np.testing.assert_allclose(sharded.center_, single.center_, rtol=1e-12, atol=0)
        np.testing.assert_allclose(sharded.scale_, single.scale_, rtol=1e-12, atol=0)
    filler = data.fit_filler(compute, paths, NUMERIC)
    np.testing.assert_allclose(filler.fill_, Filler("mean").fit(whole).fill_, rtol=1e-12, atol=0)


def test_categories_and_transform_keep_rows_in_shards(compute: RayCompute, table: Any,
                                                      tmp_path: Path) -> None:
    frame, paths = table
    assert data.categories(compute, paths, ["region"]) == {"region": sorted(frame["region"].unique())}
    filler = data.fit_filler(compute, paths, NUMERIC)
    scaler = data.fit_scaler(compute, paths, NUMERIC)
    seen: list[str] = []
    out = data.transform(compute, paths, tmp_path, NUMERIC, [filler, scaler],
                         progress=lambda f, m: seen.append(m))
    assert len(out) == len(paths) and len(seen) == len(paths)  # progress per shard
    got = pd.concat([pd.read_parquet(p) for p in out], ignore_index=True)
    whole = frame[NUMERIC].to_numpy(np.float64)
    # both fitted on the raw columns (the scaler ignores missing values), then applied in turn
    want = Scaler().fit(whole).transform(Filler("mean").fit(whole).transform(whole))
    np.testing.assert_allclose(got[NUMERIC].to_numpy(), want, rtol=1e-12, atol=1e-12)
    assert list(got["region"]) == list(frame["region"])


def test_ring_histograms_are_exact(compute: RayCompute) -> None:
    rng = np.random.default_rng(5)
    n, n_bins = 20_000, np.array([8, 32, 2, 17])
    bins = np.stack([rng.integers(0, k, n) for k in n_bins], axis=1).astype(np.int32)
    offsets, total = bin_offsets(n_bins), int(n_bins.sum())
    g, h = rng.normal(size=n), rng.random(n)
    fp = FixedPoint(24)
    values = np.stack([fp.encode(g), fp.encode(h)], axis=1).astype(np.uint64)
    want = ring_histogram(bins, offsets, total, values)
    got = sharded_histogram(compute, bins, offsets, total, values, shard_rows=3000)
    assert got.dtype == np.uint64 and np.array_equal(got, want)
    # and they are the float histogram, to fixed-point precision
    decoded = fp.decode(got)
    np.testing.assert_allclose(decoded, histogram(bins, offsets, total, g, h), atol=n * 2.0**-24)
    # shares of the values add up to shares of the histogram (the ss backend's case)
    mask = rng.integers(0, 2**63, values.shape, dtype=np.uint64) * np.uint64(2)
    s0 = sharded_histogram(compute, bins, offsets, total, values - mask, shard_rows=7000)
    s1 = sharded_histogram(compute, bins, offsets, total, mask, shard_rows=5000)
    assert np.array_equal(s0 + s1, want)


def test_ray_encryptor_decrypts_to_the_plaintexts(compute: RayCompute) -> None:
    pk, sk = generate_keypair(1024)
    plain = [[int(v) for v in range(i, i + 300)] for i in (0, 10**12, 2**200)]
    with compute.encryptor(pk) as enc:
        enc.reserve(600)
        packed = list(enc.encrypt_chunks(plain))
    for chunk, data_ in zip(plain, packed, strict=True):
        cts = pk.unpack(np.frombuffer(data_, np.uint8))
        assert [int(sk.decrypt(c)) for c in cts] == chunk


def _crash_once(marker: str) -> int:
    """A task whose first attempt loses its worker process (as a killed worker would)."""
    import os

    path = Path(marker)
    if not path.exists():
        path.write_text("crashed")
        os._exit(1)
    return 42


def test_a_lost_worker_is_retried_or_fails_the_step_clearly(ray_cluster: Any, tmp_path: Path) -> None:
    import sys

    # this test module is not importable on the workers: ship _crash_once by value
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    retried = RayCompute(RayConfig(address="auto", workers=1, cpus_per_worker=0.5, max_retries=2),
                         party="alice")
    assert retried.map(_crash_once, [str(tmp_path / "a")], step="t") == [42]
    strict = RayCompute(RayConfig(address="auto", workers=1, cpus_per_worker=0.5, max_retries=0),
                        party="alice")
    with pytest.raises(ComputeError) as err:
        strict.map(_crash_once, [str(tmp_path / "b")], step="scale")
    message = str(err.value)
    assert "shard 0" in message and "lost" in message and "'alice'" in message and "'scale'" in message


def test_local_scores_over_shards_equal_the_whole_table(compute: RayCompute) -> None:
    from functools import partial

    from sharedml.scale.scoring import score_shards

    rng = np.random.default_rng(9)
    X, w = rng.normal(size=(10_000, 6)), rng.normal(size=6)
    shards = [X[i : i + 1500] for i in range(0, len(X), 1500)]
    got = score_shards(compute, shards, partial(np.dot, b=w), total=len(shards))
    np.testing.assert_allclose(got, X @ w, rtol=0, atol=1e-9)
