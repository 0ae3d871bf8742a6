"""Vertical data sets and a runner for the vertical learners' tests (linear, nn).

``vertical(name)`` loads a ``*_hetero`` pair from the shared reference data,
joins it on its id only to split rows the same way for both parties (70/30,
seed 42, stratified on the label for classification), and gives each party
its own columns back. ``run_vertical`` runs one estimator per party as threads
(plus the dealer when asked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from sharedml.mpc import serve_dealer
from sharedml.standalone import run_in_threads
from sharedml.transport.base import Channel


@dataclass
class Vertical:
    train: dict[str, pd.DataFrame]
    test: dict[str, pd.DataFrame]
    y_train: np.ndarray
    y_test: np.ndarray

    def joined(self, part: str) -> pd.DataFrame:
        frames = self.train if part == "train" else self.test
        return pd.concat([frames["guest"], frames["host"]], axis=1)


def load_vertical(
    folder: Path, name: str, id_col: str = "id", label: str = "y", classify: bool = True
) -> Vertical:
    guest = pd.read_csv(folder / f"{name}_hetero_guest.csv")
    host = pd.read_csv(folder / f"{name}_hetero_host.csv")
    host = host.rename(columns={c: f"host_{c}" for c in host.columns if c != id_col})
    joined = guest.merge(host, on=id_col)
    train, test = train_test_split(
        joined, test_size=0.3, random_state=42, stratify=joined[label] if classify else None
    )
    gcols = [c for c in guest.columns if c not in (id_col, label)]
    hcols = [c for c in host.columns if c != id_col]
    return Vertical(
        train={
            "guest": train[gcols].reset_index(drop=True),
            "host": train[hcols].reset_index(drop=True),
        },
        test={
            "guest": test[gcols].reset_index(drop=True),
            "host": test[hcols].reset_index(drop=True),
        },
        y_train=train[label].to_numpy(),
        y_test=test[label].to_numpy(),
    )


@pytest.fixture(scope="session")
def vertical(shared_data: Path) -> Callable[..., Vertical]:
    cache: dict[tuple[Any, ...], Vertical] = {}

    def get(name: str, **kw: Any) -> Vertical:
        key = (name, *sorted(kw.items()))
        if key not in cache:
            cache[key] = load_vertical(shared_data, name, **kw)
        return cache[key]

    return get


def run_vertical(
    make: Callable[[], Any],
    data: Vertical,
    *,
    dealer: bool = True,
    dealer_runs: int = 1,
    wrap: Callable[[Channel], Channel] | None = None,
    keep: dict[str, Any] | None = None,
    validation: bool = False,
    seed: bytes | None = None,
) -> dict[str, Any]:
    """Fit one model part per party, then predict the test rows; returns the
    label holder's scores (``keep`` receives each party's fitted model;
    ``seed`` makes the parties' secret randomness reproducible). One
    BLAS thread per party, as in a party's own process: threads of several
    parties' BLAS pools fighting over the cores made products 20 times slower."""

    def party(session: Any) -> Any:
        model = make()
        me = session.party
        y = data.y_train if me == "guest" else None
        extra: dict[str, Any] = {}
        if validation:
            extra = {"X_val": data.test[me], "y_val": data.y_test if me == "guest" else None}
        model.fit(session, data.train[me], y, **extra)
        if keep is not None:
            keep[me] = model
        return model.predict(session, data.test[me])

    def deal(session: Any) -> None:
        for _ in range(dealer_runs):
            serve_dealer(session)

    fns: dict[str, Any] = {"guest": party, "host": party}
    names = ["guest", "host"]
    if dealer:
        fns["dealer"] = deal
        names.append("dealer")
    with threadpool_limits(limits=1, user_api="blas"):
        return run_in_threads(
            fns, names, wrap=wrap, timeout=300, seed=seed, dealer="dealer" if dealer else None
        )


@pytest.fixture
def run() -> Callable[..., dict[str, Any]]:
    return run_vertical


@pytest.fixture
def breast_job(shared_data: Path) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """A job spec on the breast pair (guest: label y) whose ``steps`` follow psi
    and a 70/30 stratified split."""

    def spec(steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": "breast-job",
            "parties": {
                "guest": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
                "host": {"dataset": str(shared_data / "breast_hetero_host.csv")},
            },
            "steps": [
                {"psi": {"key": "id"}},
                {"split": {"test_size": 0.3, "stratify": "y", "seed": 42}},
                *steps,
            ],
        }

    return spec
