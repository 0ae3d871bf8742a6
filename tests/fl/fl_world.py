"""Horizontal reference data, and FedAvg and federated-tree runs among threads, for the tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sharedml.fl.dp import DpConfig
from sharedml.fl.fedavg import (
    FedAvgClient,
    FedAvgParams,
    FedAvgResult,
    FedAvgServer,
    FedAvgSetup,
)
from sharedml.fl.gbdt import GbdtClient, GbdtParams, GbdtServer
from sharedml.fl.gbdt_model import GbdtModel
from sharedml.fl.learner import LocalLearner
from sharedml.fl.secagg import SecAggConfig
from sharedml.session import Session
from sharedml.standalone.threads import run_in_threads
from sharedml.transport.base import Channel

SERVER = "agg"
#: The parties' session seeds (batch order, client sampling): fixed, so a run is
#: repeatable; masks and keys still come from the OS's randomness.
SEED = b"sharedml horizontal tests, seed 1"
HOMO = {
    "default_credit": ("guest", "host_1", "host_2"),
    "breast": ("guest", "host"),
}


@dataclass
class Part:
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray


def load(
    folder: Path, name: str, val: float = 0.1
) -> tuple[dict[str, Part], np.ndarray, np.ndarray]:
    """Each party's rows (a seeded ``val`` share held out for its own validation)
    and the shared test set."""
    parts = {}
    for i, side in enumerate(HOMO[name]):
        df = pd.read_csv(folder / f"{name}_homo_{side}.csv")
        X, y = _xy(df)
        order = np.random.default_rng(i).permutation(len(y))
        cut = int(len(y) * val)
        parts[side] = Part(X[order[cut:]], y[order[cut:]], X[order[:cut]], y[order[:cut]])
    X_test, y_test = _xy(pd.read_csv(folder / f"{name}_homo_test.csv"))
    return parts, X_test, y_test


def _xy(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in df.columns if c.startswith("x")]
    return df[cols].to_numpy(np.float64), df["y"].to_numpy(np.float64)


def union(parts: Mapping[str, Part]) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([p.X for p in parts.values()]), np.concatenate([p.y for p in parts.values()])


def run_fedavg(
    parts: Mapping[str, Part],
    learner: Callable[[str], LocalLearner],
    params: FedAvgParams,
    *,
    max_dropouts: int = 0,
    dp: DpConfig | None = None,
    stage_timeout: float = 10.0,
    wrap: Callable[[Channel], Channel] | None = None,
) -> tuple[FedAvgResult, dict[str, np.ndarray]]:
    """Train among threads; the server's result and each client's final parameters."""
    clients = list(parts)
    cfg = SecAggConfig.for_dropouts(SERVER, clients, max_dropouts, stage_timeout=stage_timeout)
    n_features = next(iter(parts.values())).X.shape[1]

    def server(session: Session) -> Any:
        return FedAvgServer(session, FedAvgSetup(learner(SERVER), params, cfg, dp)).fit(n_features)

    def client(session: Session) -> Any:
        p = parts[session.party]
        me = FedAvgClient(session, FedAvgSetup(learner(session.party), params, cfg, dp))
        return me.fit(p.X, p.y, p.X_val, p.y_val)

    out = run_in_threads(
        {SERVER: server, **dict.fromkeys(clients, client)},
        [SERVER, *clients],
        timeout=120,
        wrap=wrap,
        seed=SEED,
    )
    return out[SERVER], {c: out[c] for c in clients}


def run_gbdt(
    parts: Mapping[str, Part],
    params: GbdtParams,
    edges: list[np.ndarray] | None = None,
    wrap: Callable[[Channel], Channel] | None = None,
    *,
    max_dropouts: int = 0,
    stage_timeout: float = 10.0,
    input_timeout: float = 600.0,
    client_params: Mapping[str, GbdtParams] | None = None,
    excluded: list[dict[str, object]] | None = None,
) -> tuple[GbdtModel, dict[str, GbdtModel]]:
    """Federated trees among threads; the server's model and each client's.

    ``client_params`` gives some clients other parameters (e.g. fewer trees:
    a client that leaves early); ``excluded`` receives the server's record of
    secure sums that went without someone.
    """
    clients = list(parts)
    cfg = SecAggConfig.for_dropouts(
        SERVER, clients, max_dropouts, stage_timeout=stage_timeout, input_timeout=input_timeout
    )
    n_features = next(iter(parts.values())).X.shape[1]

    def server(session: Session) -> Any:
        me = GbdtServer(session, params, cfg)
        model = me.fit(n_features, edges)
        if excluded is not None:
            excluded.extend(me.excluded)
        return model

    def client(session: Session) -> Any:
        p = parts[session.party]
        mine = (client_params or {}).get(session.party, params)
        return GbdtClient(session, mine, cfg).fit(p.X, p.y, declared=edges is not None)

    fns = {SERVER: server, **dict.fromkeys(clients, client)}
    out = run_in_threads(fns, [SERVER, *clients], wrap=wrap, seed=SEED)
    return out[SERVER], {c: out[c] for c in clients}
