"""SecureBoost ``he`` on Ray — the label holder's randomisers made by actors, the feature
holder's root sums made per chunk on its workers: the same trees and scores as the
single-process run (8.5-2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sharedml.learn.tree import SecureBoostClassifier
from sharedml.scale.config import RayConfig
from sharedml.scale.runtime import RayCompute
from sharedml.session import Session
from sharedml.standalone import run_in_threads


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
