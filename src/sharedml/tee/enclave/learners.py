"""Training inside the enclave: join the providers' tables, fit, evaluate, export.

Pure functions over pandas frames; no I/O, no keys. The join is an inner join
on the id column, sorted by id, each provider's columns prefixed
``<owner>.<column>`` in owner order — a plaintext oracle that does the same
gets the same matrix, and so (with the same seed) the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import ConfigError, DataError
from sharedml.tee.model import ReleasedModel

ALGORITHMS = ("logistic_regression", "xgboost")
XGB_DEFAULTS: dict[str, Any] = {
    "n_estimators": 30, "max_depth": 3, "max_bin": 32, "learning_rate": 0.3, "tree_method": "hist",
}


def join(tables: Mapping[str, pd.DataFrame], id_column: str) -> pd.DataFrame:
    """Inner join on ``id_column``, sorted by id, columns ``owner.column``."""
    joined: pd.DataFrame | None = None
    for owner in sorted(tables):
        frame = tables[owner]
        if id_column not in frame.columns:
            raise DataError(f"no id column {id_column!r}", party=owner, step="train")
        if frame[id_column].duplicated().any():
            raise DataError("duplicate ids", party=owner, step="train", remedy="deduplicate the id column")
        renamed = frame.rename(columns={c: f"{owner}.{c}" for c in frame.columns if c != id_column})
        joined = renamed if joined is None else joined.merge(renamed, on=id_column, how="inner")
    if joined is None or joined.empty:
        raise DataError("the providers' tables share no ids", step="train")
    return joined.sort_values(id_column, kind="stable").reset_index(drop=True)


def split(n: int, test_size: float, seed: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices (scikit-learn's splitter, so an oracle can repeat it)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    if test_size <= 0:
        return idx, idx[:0]
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def fit(
    algorithm: str, x: pd.DataFrame, y: np.ndarray, seed: int, params: Mapping[str, Any]
) -> ReleasedModel:
    """Fit on (x, y); return the model in its release format."""
    features = list(x.columns)
    if algorithm == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        lr = LogisticRegression(max_iter=int(params.get("max_iter", 1000)), C=float(params.get("C", 1.0)),
                                random_state=seed)
        lr.fit(scaler.transform(x), y)
        return ReleasedModel(algorithm, features, {
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]),
        })
    if algorithm == "xgboost":
        import xgboost as xgb

        clf = xgb.XGBClassifier(**{**XGB_DEFAULTS, **dict(params)}, random_state=seed)
        clf.fit(x, y)
        raw = clf.get_booster().save_raw("json")
        return ReleasedModel(algorithm, features, {}, bytes(raw))
    raise ConfigError(f"unknown algorithm {algorithm!r}", step="train", remedy=f"use one of {ALGORITHMS}")


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
