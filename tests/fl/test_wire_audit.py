"""Wire audits of horizontal training (9.4-3, 9.4-8): a bank sends nothing but
secure-aggregation messages, to the aggregator only, and none of its rows,
labels or plain updates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from sharedml.fl.fedavg import FedAvgClient, FedAvgParams, FedAvgServer, FedAvgSetup
from sharedml.fl.gbdt import GbdtParams
from sharedml.fl.linear import LinearLearner
from sharedml.fl.secagg import SecAggConfig
from sharedml.session import Session
from sharedml.standalone.threads import run_in_threads
from sharedml.transport.base import Channel
from sharedml.transport.loopback import run_both
from sharedml.transport.recording import RecordingChannel, WireRecord

from .fl_world import SEED, SERVER, Part, load, run_fedavg, run_gbdt


def _recording(log: list[WireRecord]) -> Callable[[Channel], Channel]:
    def wrap(ch: Channel) -> Channel:
        return ch if ch.party == SERVER else RecordingChannel(ch, log)

    return wrap


@pytest.mark.slow
def test_fedavg_clients_send_only_masked_sums_to_the_aggregator(shared_data: Path) -> None:
    parts, _, _ = load(shared_data, "breast")
    log: list[WireRecord] = []
    params = FedAvgParams(rounds=3, learning_rate=0.1)
    result, _ = run_fedavg(parts, lambda _: LinearLearner(), params, wrap=_recording(log))
    assert {r.to for r in log} == {SERVER}
    assert {r.tag for r in log} == {"secagg/up"}
    for name, part in parts.items():
        sent = [r for r in log if r.frm == name]
        raw = b"".join(r.as_bytes() for r in sent)
        for value in np.concatenate([part.X[:20].ravel(), part.X_val[:5].ravel()]):
            assert np.float64(value).tobytes() not in raw
        vectors = [r.value for r in sent if isinstance(r.value, np.ndarray)]
        assert len(vectors) == 2 * len(result.history)  # one update and one metric sum a round
        _assert_uniform(vectors, len(parts))


@pytest.mark.slow
def test_tree_clients_send_only_masked_histograms_to_the_aggregator(shared_data: Path) -> None:
    parts, _, _ = load(shared_data, "breast", val=0.0)
    log: list[WireRecord] = []
    params = GbdtParams(n_trees=2, max_depth=2, n_bins=8)
    run_gbdt(parts, params, wrap=_recording(log))
    assert {r.to for r in log} == {SERVER} and {r.tag for r in log} == {"secagg/up"}
    for name, part in parts.items():
        sent = [r for r in log if r.frm == name]
        raw = b"".join(r.as_bytes() for r in sent)
        for secret in (*part.X[:10].ravel(), part.y.sum(), float(len(part.y))):
            assert np.float64(secret).tobytes() not in raw
        _assert_uniform([r.value for r in sent if isinstance(r.value, np.ndarray)], len(parts))


def test_a_bank_that_aggregates_receives_only_masked_sums(shared_data: Path) -> None:
    """``aggregator: guest``: the guest runs FedAvg's server beside its own client
    (run_both); what each other bank sends it is secure-aggregation messages only,
    none of its rows, uniform words — as to a helper — and every bank ends with
    the guest's model."""
    full, _, _ = load(shared_data, "default_credit")
    parts = {b: Part(p.X[:1500], p.y[:1500], p.X_val[:300], p.y_val[:300])
             for b, p in full.items()}  # a slice of each bank's rows: the wire is the point
    cfg = SecAggConfig.for_dropouts("guest", list(parts), 0, stage_timeout=10.0)
    setup = FedAvgSetup(LinearLearner(), FedAvgParams(rounds=2), cfg)
    n_features = parts["guest"].X.shape[1]
    log: list[WireRecord] = []

    def bank(session: Session) -> Any:
        p = parts[session.party]

        def as_client(ch: Channel) -> np.ndarray:
            return FedAvgClient(replace(session, channel=ch), setup).fit(p.X, p.y, p.X_val,
                                                                         p.y_val)

        if session.party != "guest":
            return as_client(session.channel)
        return run_both(session.channel, as_client,
                        lambda ch: FedAvgServer(replace(session, channel=ch), setup).fit(
                            n_features), "aggregator")

    def wrap(ch: Channel) -> Channel:
        return ch if ch.party == "guest" else RecordingChannel(ch, log)

    out = run_in_threads(dict.fromkeys(parts, bank), list(parts), timeout=120, wrap=wrap,
                         seed=SEED)
    final, result = out["guest"]
    assert len(result.history) == 2 and np.array_equal(final, result.params)
    assert all(np.array_equal(out[h], final) for h in ("host_1", "host_2"))
    assert {r.to for r in log} == {"guest"} and {r.tag for r in log} == {"secagg/up"}
    for host in ("host_1", "host_2"):
        sent = [r for r in log if r.frm == host]
        raw = b"".join(r.as_bytes() for r in sent)
        for value in parts[host].X[:20].ravel():
            assert np.float64(value).tobytes() not in raw
        _assert_uniform([r.value for r in sent if isinstance(r.value, np.ndarray)], len(parts))


def _assert_uniform(vectors: list[np.ndarray], clients: int) -> None:
    """The masked words a client sent, pooled, look uniform on Z_2^64: every plain
    encoding lies below 2^63 / clients in magnitude, a uniform word only with
    probability 1 / clients; and their bytes pass a chi-square test."""
    words = np.concatenate([vec[4:] for vec in vectors])
    assert words.size > 500
    magnitude = np.abs(words.view(np.int64).astype(np.float64))
    assert np.mean(magnitude < 2.0**63 / clients) < 0.75
    counts = np.bincount(words.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-6
