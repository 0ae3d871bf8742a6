"""Reference data for the SecureBoost tests: joined on the id, split 70/30."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split


@dataclass
class Vertical:
    """Guest (label holder) and host blocks, aligned, with a train/test split."""

    Xg: np.ndarray
    Xh: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def joined(self) -> np.ndarray:
        return np.hstack([self.Xg, self.Xh])

    def head(self, n_train: int, n_test: int) -> Vertical:
        return Vertical(self.Xg, self.Xh, self.y, self.train[:n_train], self.test[:n_test])


def load_vertical(folder: Path, name: str, id_col: str, label: str, stratify: bool) -> Vertical:
    guest = pd.read_csv(folder / f"{name}_guest.csv")
    host = pd.read_csv(folder / f"{name}_host.csv")
    df = guest.merge(host, on=id_col, suffixes=("_guest", "_host"))
    gcols = [c for c in guest.columns if c not in (id_col, label)]
    hcols = [c for c in host.columns if c != id_col]
    pick = lambda cols, side: [f"{c}_{side}" if f"{c}_{side}" in df else c for c in cols]  # noqa: E731
    y = df[label].to_numpy(dtype=np.float64)
    idx = np.arange(len(df))
    train, test = train_test_split(
        idx, test_size=0.3, random_state=42, stratify=y if stratify else None
    )
    return Vertical(
        df[pick(gcols, "guest")].to_numpy(np.float64),
        df[pick(hcols, "host")].to_numpy(np.float64),
        y,
        np.asarray(train),
        np.asarray(test),
    )


@pytest.fixture(scope="session")
def credit(shared_data: Path) -> Vertical:
    return load_vertical(shared_data, "default_credit_hetero", "id", "y", stratify=True)


@pytest.fixture(scope="session")
def motor(shared_data: Path) -> Vertical:
    return load_vertical(shared_data, "motor_hetero", "idx", "motor_speed", stratify=False)
