"""SS-LR's rounds per mini-batch (issue 13 item 8: at most 4), counted on the wire.

Every party's channel (the dealer's too) is metered; the rounds of a run are
its critical path in one-way hops (:func:`sharedml.transport.traffic.rounds`).
The rounds one epoch adds, over its mini-batches, is the figure per mini-batch.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest

from sharedml.learn.linear import SSLogisticRegression
from sharedml.learn.linear._core import batch_plan
from sharedml.mpc import serve_dealer
from sharedml.standalone import run_in_threads
from sharedml.transport.traffic import TrafficMeter, rounds

PARTIES = ["bank", "shop", "dealer"]


def _party(blocks: dict[str, np.ndarray], y: np.ndarray, params: dict[str, Any], session: Any) -> Any:
    model = SSLogisticRegression(**params)
    model.fit(session, blocks[session.party], y if session.party == "bank" else None)
    return list(session.channel.events)


def _dealer(session: Any) -> Any:
    serve_dealer(session, ["bank", "shop"])
    return list(session.channel.events)


def _rounds(epochs: int, group: int) -> int:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(576, 5))
    y = (X @ [1.0, -1.0, 0.5, 0.0, 2.0] > 0).astype(float)
    blocks = {"bank": X[:, :2], "shop": X[:, 2:]}
    params = dict(epochs=epochs, batch_size=64, group_batches=group, random_state=1)
    fn = partial(_party, blocks, y, params)
    logs = run_in_threads(
        {"bank": fn, "shop": fn, "dealer": _dealer}, PARTIES, dealer="dealer", wrap=TrafficMeter
    )
    return rounds(logs)


@pytest.mark.parametrize(("group", "most"), [(3, 4.0), (1, 11.0)])
def test_rounds_per_mini_batch(group: int, most: float) -> None:
    per_epoch = len(batch_plan(576, 64, b"\0" * 16, 0))  # 9 batches: 3 groups of 3
    one, two = _rounds(1, group), _rounds(2, group)
    per_batch = (two - one) / per_epoch
    assert per_batch <= most, per_batch
    if group == 1:  # plain SGD: the knots' comparison alone is six rounds a batch
        assert per_batch > 6, per_batch
