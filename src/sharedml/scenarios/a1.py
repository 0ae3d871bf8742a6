"""The standard's A.1 credit-risk job, and the reference models it is judged against.

:func:`job_spec` is the job a bank (label and own features) and a partner
(other features) run: PSI, a stratified 70/30 split, scaling, then
secret-shared logistic regression and SecureBoost, each scored and evaluated
on the hold-out rows. :func:`reference_metrics` trains the same models in the
clear with scikit-learn and XGBoost — once on the joined data (what pooling
the data would give, which neither party can do) and once on the bank's
columns alone (what the bank has today) — on exactly the job's training rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sharedml.scenarios.credit import VerticalPair, breast_cancer, credit_population

#: Step ids of the job, by model.
MODELS = {
    "lr": ("train_lr", "predict_lr", "evaluate_lr"),
    "sb": ("train_sb", "predict_sb", "evaluate_sb"),
}
MODEL_NAMES = {"lr": "logistic (SS)", "sb": "SecureBoost (SS)"}


@dataclass(frozen=True)
class Settings:
    """Hyper-parameters shared by the job and the plaintext reference models."""

    epochs: int = 5
    batch_size: int = 1024
    l2: float = 1e-4
    trees: int = 10
    depth: int = 3
    bins: int = 32
    learning_rate: float = 0.3
    test_size: float = 0.3
    seed: int = 42


def scenario(data: str = "credit", rows: int = 20_000) -> VerticalPair:
    """The two tables: the generated credit book or scikit-learn's breast-cancer set."""
    if data == "credit":
        return credit_population(rows=rows)
    if data == "breast":
        return breast_cancer()
    from sharedml.errors import ConfigError

    raise ConfigError(f"unknown scenario data {data!r}", remedy="use 'credit' or 'breast'")


def job_spec(pair: VerticalPair, bank_csv: str, partner_csv: str, s: Settings) -> dict[str, Any]:
    """The A.1 job spec (docs/architecture.md §4) over the two CSV files."""
    lr = {"model": "logistic_regression", "protocol": "ss", "epochs": s.epochs,
          "batch_size": s.batch_size, "l2": s.l2}
    sb = {"model": "secureboost", "protocol": "ss", "n_estimators": s.trees,
          "max_depth": s.depth, "n_bins": s.bins, "learning_rate": s.learning_rate}
    steps: list[dict[str, Any]] = [
        {"psi": {"key": pair.id_column}},
        {"split": {"test_size": s.test_size, "stratify": pair.label, "seed": s.seed}},
        {"scale": {"method": "standard"}},
    ]
    for key, params in (("lr", lr), ("sb", sb)):
        train, predict, evaluate = MODELS[key]
        steps += [
            {"id": train, "train": params},
            {"id": predict, "predict": {"on": "test"}},
            {"id": evaluate, "evaluate": {"metrics": ["auc", "ks"]}},
        ]
    return {
        "name": f"a1-{pair.name}-risk",
        "scheme": "mpc",
        "parties": {
            "bank": {"dataset": bank_csv, "label": pair.label, "id": pair.id_column},
            "partner": {"dataset": partner_csv, "id": pair.id_column},
        },
        "steps": steps,
    }


def reference_metrics(
    pair: VerticalPair, test_ids: set[str], s: Settings
) -> dict[str, dict[str, dict[str, float]]]:
    """AUC and KS of the plaintext models: ``{model: {"joined"|"bank": {"auc", "ks"}}}``.

    Rows are the ids both parties hold; ``test_ids`` (the job's hold-out rows,
    from the bank's prediction file) are scored, the others trained on.
    """
    from sharedml.learn import metrics

    joined = pair.bank.merge(pair.partner, on=pair.id_column, how="inner")
    is_test = joined[pair.id_column].astype(str).isin(test_ids).to_numpy()
    y = joined[pair.label].to_numpy()
    bank_cols = [c for c in pair.bank.columns if c not in (pair.id_column, pair.label)]
    partner_cols = [c for c in pair.partner.columns if c != pair.id_column]
    out: dict[str, dict[str, dict[str, float]]] = {"lr": {}, "sb": {}}
    for view, cols in (("joined", bank_cols + partner_cols), ("bank", bank_cols)):
        X = joined[cols].to_numpy(dtype=np.float64)
        mean, std = X[~is_test].mean(0), X[~is_test].std(0)
        X = (X - mean) / np.where(std > 0, std, 1.0)
        for key, fit in (("lr", _logistic), ("sb", _xgboost)):
            scores = fit(X[~is_test], y[~is_test], X[is_test], s)
            out[key][view] = {
                "auc": metrics.roc_auc(y[is_test], scores),
                "ks": metrics.ks(y[is_test], scores),
            }
    return out


def _logistic(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, s: Settings) -> np.ndarray:
    """scikit-learn's logistic regression with the job's L2: C = 1 / (l2 · n)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / (s.l2 * len(X)), max_iter=2000).fit(X, y)
    return np.asarray(model.predict_proba(Xt)[:, 1])


def _xgboost(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, s: Settings) -> np.ndarray:
    """XGBoost with SecureBoost's settings (XGBoost's own defaults for the rest)."""
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=s.trees, max_depth=s.depth, learning_rate=s.learning_rate,
        max_bin=s.bins, tree_method="hist", min_child_weight=1.0, reg_lambda=1.0, n_jobs=1,
    ).fit(X, y)
    return np.asarray(model.predict_proba(Xt)[:, 1])


def holdout_ids(predictions_csv: str, id_column: str) -> set[str]:
    """The hold-out ids, from the bank's prediction file."""
    return set(pd.read_csv(predictions_csv, dtype={id_column: str})[id_column])
