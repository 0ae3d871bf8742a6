"""The linear learners with every party in its own process over GrpcChannel (mTLS)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sharedml.session import Session
from sharedml.standalone import run_in_processes


def _block(folder: str, party: str) -> tuple[np.ndarray, np.ndarray | None]:
    frame = pd.read_csv(Path(folder) / f"breast_hetero_{party}.csv").sort_values("id")
    y = frame.pop("y").to_numpy() if "y" in frame else None
    return frame.drop(columns="id").to_numpy(), y


def party(data: str, model_name: str, session: Session) -> Any:
    from sharedml.learn.linear import HELogisticRegression, SSLogisticRegression

    X, y = _block(data, session.party)
    if model_name == "ss":
        model: Any = SSLogisticRegression(epochs=5, batch_size=64, random_state=0)
    else:
        model = HELogisticRegression(epochs=5, batch_size=64, key_bits=1024, random_state=0)
    model.fit(session, X, y)
    return model.predict(session, X)


def dealer(session: Session) -> None:
    from sharedml.mpc import serve_dealer

    serve_dealer(session)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ss", "he"])
def test_linear_models_over_grpc_processes(shared_data: Path, model: str) -> None:
    parties = ["guest", "host", "dealer"] if model == "ss" else ["guest", "host"]
    fit = partial(party, str(shared_data), model)
    fns: dict[str, Any] = {"guest": fit, "host": fit}
    if model == "ss":
        fns["dealer"] = dealer
    out = run_in_processes(fns, parties, timeout=120, dealer="dealer" if model == "ss" else None)
    Xg, y = _block(str(shared_data), "guest")
    Xh, _ = _block(str(shared_data), "host")
    X = np.hstack([Xg, Xh])
    X = (X - X.mean(0)) / X.std(0)
    sk = roc_auc_score(y, LogisticRegression(max_iter=2000).fit(X, y).predict_proba(X)[:, 1])
    assert out["host"] is None
    assert roc_auc_score(y, out["guest"]) == pytest.approx(sk, abs=0.01)
