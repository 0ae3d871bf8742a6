"""Data for the A.1 credit-risk scenario: a bank and a partner, vertically split.

The bank holds the label (default within a year) and its own features; the
partner (an e-commerce firm) holds behavioural features of partly the same
customers. Ids overlap only in part, so the job must align samples (PSI)
before it learns. Both data sets are produced here, deterministically from a
seed, with no network access.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class VerticalPair:
    """One scenario's two tables and where they were written."""

    name: str
    bank: pd.DataFrame
    partner: pd.DataFrame
    label: str = "y"
    id_column: str = "id"

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        bank = directory / f"{self.name}_bank.csv"
        partner = directory / f"{self.name}_partner.csv"
        self.bank.to_csv(bank, index=False)
        self.partner.to_csv(partner, index=False)
        return bank, partner


def _split_with_overlap(
    frame: pd.DataFrame, bank_cols: list[str], partner_cols: list[str], keep: float,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each side keeps its own random ``keep`` share of the rows, in its own order."""
    n = len(frame)
    bank_rows = rng.permutation(n)[: int(keep * n)]
    partner_rows = rng.permutation(n)[: int(keep * n)]
    bank = frame.iloc[bank_rows][["id", *bank_cols]].reset_index(drop=True)
    partner = frame.iloc[partner_rows][["id", *partner_cols]].reset_index(drop=True)
    return bank, partner


def credit_population(rows: int = 20_000, keep: float = 0.85, seed: int = 7) -> VerticalPair:
    """A generated credit book: repayment history at the bank, spending at the partner.

    Default risk depends on both sides' features (and their interaction), so a
    joint model beats the bank alone, as in the standard's A.1 use case.
    """
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 11, rows).clip(19, 80)
    income = rng.lognormal(10.3, 0.55, rows)
    utilisation = rng.beta(2, 3, rows)
    late_12m = rng.poisson(0.4 + 0.8 * utilisation)
    tenure = rng.exponential(5, rows)
    # partner: online spending behaviour, correlated with hidden financial stress
    stress = rng.normal(0, 1, rows)
    orders = rng.poisson(np.exp(2.0 - 0.3 * stress))
    returns_rate = rng.beta(1.5, 8, rows) + 0.05 * (stress > 1)
    bnpl_share = (rng.beta(1.2, 5, rows) + 0.12 * np.tanh(stress)).clip(0, 1)
    night_share = rng.beta(2, 6, rows) + 0.04 * stress.clip(0)
    logit = (
        -2.1
        + 1.6 * (utilisation - 0.4)
        + 0.55 * late_12m
        - 0.5 * (np.log(income) - 10.3)
        - 0.015 * (age - 40)
        - 0.06 * tenure
        + 0.8 * stress
        + 1.8 * bnpl_share
        - 0.05 * orders
        + 1.2 * returns_rate
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = rng.choice(10**9, size=rows, replace=False)
    frame = pd.DataFrame(
        {
            "id": [f"C{i:09d}" for i in ids],
            "y": y,
            "age": age.round(1),
            "income": income.round(2),
            "utilisation": utilisation.round(4),
            "late_payments_12m": late_12m,
            "tenure_years": tenure.round(2),
            "orders_90d": orders,
            "returns_rate": returns_rate.round(4),
            "bnpl_share": bnpl_share.round(4),
            "night_orders_share": night_share.round(4),
        }
    )
    bank, partner = _split_with_overlap(
        frame,
        ["y", "age", "income", "utilisation", "late_payments_12m", "tenure_years"],
        ["orders_90d", "returns_rate", "bnpl_share", "night_orders_share"],
        keep,
        rng,
    )
    return VerticalPair("credit", bank, partner)


def breast_cancer(keep: float = 0.9, seed: int = 7) -> VerticalPair:
    """scikit-learn's bundled breast-cancer set split 10/20 features, as FATE's
    ``breast_hetero`` (the same data); the "bank" side holds the label."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    X = data.data
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.insert(0, "y", (data.target == 0).astype(int))
    frame.insert(0, "id", [f"P{i:05d}" for i in range(len(frame))])
    bank_cols = ["y", *[f"x{i}" for i in range(10)]]
    partner_cols = [f"x{i}" for i in range(10, 30)]
    bank, partner = _split_with_overlap(frame, bank_cols, partner_cols, keep, rng)
    partner.columns = ["id", *[f"p{i}" for i in range(20)]]
    return VerticalPair("breast", bank, partner)
