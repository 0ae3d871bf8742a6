"""SecureBoost on Ray — ``he``: the label holder's randomisers made by actors, the feature
holder's root sums made per chunk on its workers; ``ss``: each party's local part of every
histogram product over row shards on its workers. The same histograms, trees and scores
as the single-process run (8.5-2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from sharedml.crypto import ring
from sharedml.learn.tree import SecureBoostClassifier
from sharedml.learn.tree.ss_histograms import SSHistogramClient
from sharedml.scale.config import RayConfig
from sharedml.scale.runtime import RayCompute
from sharedml.session import Session
from sharedml.standalone import run_in_threads

#: make test-parallel: every Ray test on one xdist worker, beside the one cluster
pytestmark = pytest.mark.xdist_group("ray")


def _fit(Xg: np.ndarray, Xh: np.ndarray, y: np.ndarray, on_ray: bool) -> dict[str, Any]:
    params = {"protocol": "he", "n_estimators": 3, "max_depth": 3, "n_bins": 16,
              "key_bits": 1024, "n_jobs": 1, "random_state": 0}

    def on(s: Session) -> Session:
        if not on_ray:
            return s
        cfg = RayConfig(address="auto", workers=2, cpus_per_worker=0.5)
        return dataclasses.replace(s, compute=RayCompute(cfg, party=s.party))

    def guest(s: Session) -> Any:
        s = on(s)
        m = SecureBoostClassifier(**params).fit(s, Xg, y)
        return m, m.predict(s, Xg), (s.compute.usage if s.compute else [])

    def host(s: Session) -> Any:  # its root sums per chunk on its workers
        s = on(s)
        m = SecureBoostClassifier(**params).fit(s, Xh)
        return m, m.predict(s, Xh), []

    return run_in_threads({"guest": guest, "host": host}, ["guest", "host"], timeout=600)


def test_trees_and_scores_equal_the_single_process_run(ray_cluster: Any) -> None:
    rng = np.random.default_rng(3)
    n = 2500  # two chunks of 2048 ciphertexts per tree
    Xg, Xh = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    y = ((Xg[:, 0] + Xh[:, 1] + 0.3 * rng.normal(size=n)) > 0).astype(float)
    single = _fit(Xg, Xh, y, on_ray=False)
    scaled = _fit(Xg, Xh, y, on_ray=True)
    assert len(scaled["guest"][2]) == 2  # both randomiser actors worked and were stopped
    np.testing.assert_allclose(scaled["guest"][1], single["guest"][1], rtol=0, atol=1e-9)
    for a, b in zip(scaled["guest"][0].trees_, single["guest"][0].trees_, strict=True):
        assert a == b
    assert scaled["host"][0].table_ == single["host"][0].table_


def test_ss_products_over_row_shards_equal_one_ring_product(ray_cluster: Any) -> None:
    """Eᵀ b + Xᵀ f over uneven row shards on the workers, summed mod 2^64, is the
    single-process ring product bit for bit (values over the whole of Z_2^64)."""
    rng = np.random.default_rng(5)
    n, cols, k = 1000, 7, 4
    e, xs = (rng.integers(0, 2**64, (n, cols), dtype=np.uint64) for _ in range(2))
    b, f = (rng.integers(0, 2**64, (n, k), dtype=np.uint64) for _ in range(2))
    compute = RayCompute(RayConfig(address="auto", workers=2, cpus_per_worker=0.5,
                                   shard_rows=300), party="alice")
    products = compute.fixed_products(e, xs)
    assert len(products.bounds) == 4  # 300, 300, 300, 100 rows
    want = ring.matmul(e.T, b) + ring.matmul(xs.T, f)
    np.testing.assert_array_equal(products(b, f), want)
    assert compute.tasks_run == 4


def test_ss_histograms_equal_the_single_process_ones(
    ray_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SecureBoost ``ss`` with both data parties on Ray (their local parts of every
    Beaver product over 3 row shards): the label holder receives exactly the
    single-process histograms, so the same trees and scores."""
    rng = np.random.default_rng(8)
    n = 600
    Xg, Xh = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    y = ((Xg[:, 0] + Xh[:, 1] + 0.3 * rng.normal(size=n)) > 0).astype(float)
    seen: dict[bool, list[dict[str, np.ndarray]]] = {False: [], True: []}
    real = SSHistogramClient.histograms
    on_ray = False

    def recorded(self: SSHistogramClient, node_of_row: np.ndarray, k: int) -> Any:
        out = real(self, node_of_row, k)
        seen[on_ray].append(out)
        return out

    monkeypatch.setattr(SSHistogramClient, "histograms", recorded)
    runs = {}
    for on_ray in (False, True):
        runs[on_ray] = _fit_ss(Xg, Xh, y, on_ray)
    assert len(seen[True]) == len(seen[False]) >= 2 * 2  # root and levels of 2 trees
    for got, want in zip(seen[True], seen[False], strict=True):
        assert got.keys() == want.keys() == {"host"}
        np.testing.assert_array_equal(got["host"], want["host"])
    assert runs[True]["guest"][0].trees_ == runs[False]["guest"][0].trees_
    np.testing.assert_array_equal(runs[True]["guest"][1], runs[False]["guest"][1])
    assert runs[True]["host"][0].table_ == runs[False]["host"][0].table_
    assert runs[True]["guest"][2] > 0 and runs[True]["host"][2] > 0  # both used their workers


def _fit_ss(Xg: np.ndarray, Xh: np.ndarray, y: np.ndarray, on_ray: bool) -> dict[str, Any]:
    from sharedml.mpc import serve_dealer

    params = {"protocol": "ss", "n_estimators": 2, "max_depth": 2, "n_bins": 8,
              "random_state": 0}

    def on(s: Session) -> Session:
        if not on_ray:
            return s
        cfg = RayConfig(address="auto", workers=2, cpus_per_worker=0.5, shard_rows=256)
        return dataclasses.replace(s, compute=RayCompute(cfg, party=s.party))

    def tasks(s: Session) -> int:
        return s.compute.tasks_run if s.compute else 0

    def guest(s: Session) -> Any:
        s = on(s)
        m = SecureBoostClassifier(**params).fit(s, Xg, y)
        return m, m.predict(s, Xg), tasks(s)

    def host(s: Session) -> Any:
        s = on(s)
        m = SecureBoostClassifier(**params).fit(s, Xh)
        return m, m.predict(s, Xh), tasks(s)

    return run_in_threads({"guest": guest, "host": host, "dealer": serve_dealer},
                          ["guest", "host", "dealer"], seed=b"ss-on-ray", dealer="dealer",
                          timeout=600)


def test_ciphertext_chunks_join_into_tasks_in_row_order() -> None:
    """The feature holder's chunks are joined, in order, until a task has its rows."""
    from sharedml.scale.histograms import _batches

    sizes = [3, 3, 3, 2]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    chunks = [(s, bytes([i]) * n, [0] * n) for i, (s, n) in enumerate(zip(starts, sizes,
                                                                          strict=True))]
    got = list(_batches(iter(chunks), 5))
    assert got == [(0, b"\x00" * 3 + b"\x01" * 3, 6), (6, b"\x02" * 3 + b"\x03" * 2, 5)]
    assert list(_batches(iter(chunks), 100)) == [(0, b"".join(c[1] for c in chunks), 11)]
