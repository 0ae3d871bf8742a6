"""Models trained on the first 70% of default_credit's ids, with the training
job's own predictions on the other 30% (the rows online scoring must match).

The training runs once per test session with every party in a thread
(:func:`~sharedml.standalone.run_in_threads`); each party's part is written
to its own folder as a version file ``<version>.json``, the way a serving
node installs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sharedml.mpc import serve_dealer
from sharedml.session import Session
from sharedml.standalone import run_in_threads

BANK, PARTNER, DEALER = "bank", "partner", "dealer"


@dataclass
class Trained:
    """One trained model: each party's models folder and the job's test scores."""

    version: str
    folders: dict[str, Path]
    test_ids: np.ndarray
    scores: np.ndarray


@dataclass
class Credit:
    guest: pd.DataFrame
    host: pd.DataFrame
    train_ids: np.ndarray
    test_ids: np.ndarray

    def block(self, side: str, ids: np.ndarray) -> np.ndarray:
        frame = self.guest if side == BANK else self.host
        cols = [c for c in frame.columns if c not in ("id", "y")]
        return frame.set_index("id").loc[ids, cols].to_numpy(np.float64)

    def labels(self, ids: np.ndarray) -> np.ndarray:
        return self.guest.set_index("id").loc[ids, "y"].to_numpy(np.float64)


def load_credit(folder: Path) -> Credit:
    guest = pd.read_csv(folder / "default_credit_hetero_guest.csv")
    host = pd.read_csv(folder / "default_credit_hetero_host.csv")
    ids = np.sort(guest["id"].to_numpy())
    cut = round(0.7 * len(ids))
    return Credit(guest, host, ids[:cut], ids[cut:])


def train_and_predict(
    credit: Credit, make: Callable[[], Any], out: Path, version: str, n_train: int | None = None
) -> Trained:
    """Fit ``make()`` jointly on the 70% ids, predict the 30% ids, save each party's part."""
    train = credit.train_ids[:n_train]
    test = credit.test_ids

    def party(side: str) -> Callable[[Session], Any]:
        def run(s: Session) -> Any:
            model = make()
            y = credit.labels(train) if side == BANK else None
            model.fit(s, credit.block(side, train), y)
            folder = out / side
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / f"{version}.json")
            return model.predict(s, credit.block(side, test))

        return run

    got = run_in_threads(
        {BANK: party(BANK), PARTNER: party(PARTNER), DEALER: serve_dealer},
        [BANK, PARTNER, DEALER],
        dealer=DEALER,
        seed=b"serving-tests",
        timeout=600,
    )
    return Trained(version, {p: out / p for p in (BANK, PARTNER)}, test, np.asarray(got[BANK]))
