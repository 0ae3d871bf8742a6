"""Wire audits of horizontal training (9.4-3, 9.4-8): a bank sends nothing but
secure-aggregation messages, to the aggregator only, and none of its rows,
labels or plain updates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sharedml.fl.fedavg import FedAvgParams
from sharedml.fl.gbdt import GbdtParams
from sharedml.fl.linear import LinearLearner
from sharedml.transport.base import Channel
from sharedml.transport.recording import RecordingChannel, WireRecord

from .fl_world import SERVER, load, run_fedavg, run_gbdt


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
        for vec in vectors:
            # every plain encoding of a round's vector lies below 2^63 / clients in
            # magnitude; a uniform word does with probability 1 / clients
            magnitude = np.abs(vec[4:].view(np.int64).astype(np.float64))
            assert np.mean(magnitude < 2.0**63 / len(parts)) < 0.9


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
        g = part.y.mean() - part.y  # the first tree's root gradient sum, up to the base score
        for secret in (*part.X[:10].ravel(), part.y.sum(), float(len(part.y))):
            assert np.float64(secret).tobytes() not in raw
        assert np.float64(g.sum()).tobytes() not in raw
        for vec in (r.value for r in sent if isinstance(r.value, np.ndarray)):
            magnitude = np.abs(vec[4:].view(np.int64).astype(np.float64))
            assert np.mean(magnitude < 2.0**63 / len(parts)) < 0.9
