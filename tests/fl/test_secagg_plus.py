"""SecAgg+ (sparse masking graph): the same sums with each client masking only with
its neighbours; a round whose survivors would fall apart aborts instead."""

from __future__ import annotations

import pytest

from sharedml.errors import ConfigError
from sharedml.fl.secagg import RoundAborted, RoundResult, SecAggConfig, wire
from sharedml.fl.secagg.graph import connected, neighbours, ring
from sharedml.transport.base import Channel
from sharedml.transport.recording import RecordingChannel, WireRecord

from .secagg_world import SERVER, drops_before, run_rounds
from .test_secagg import assert_sum, updates

CLIENTS = tuple(f"bank{i}" for i in range(10))


def _config(threshold: int = 3, degree: int = 4) -> SecAggConfig:
    return SecAggConfig(SERVER, CLIENTS, threshold, stage_timeout=1.5, neighbours=degree)


def test_the_graph_is_regular_symmetric_public_and_connected() -> None:
    graph = neighbours(7, range(10), 4)
    assert all(len(nb) == 4 and u not in nb for u, nb in graph.items())
    assert all(u in graph[v] for u, nb in graph.items() for v in nb)
    assert graph == neighbours(7, range(10), 4)  # every role computes the same
    assert graph != neighbours(8, range(10), 4)  # and it changes with the round
    assert connected(range(10), graph)
    assert neighbours(0, range(4), 4) == {u: set(range(4)) - {u} for u in range(4)}


def test_thresholds_are_counted_within_a_neighbourhood() -> None:
    with pytest.raises(ConfigError):
        _config(threshold=2)  # not a majority of 5
    with pytest.raises(ConfigError):
        _config(threshold=6)  # more than a neighbourhood
    with pytest.raises(ConfigError):
        _config(degree=3)


def test_sparse_rounds_sum_exactly_with_dropouts_at_every_stage() -> None:
    cfg = _config()
    rounds = [updates(cfg, seed) for seed in range(2)]
    late = {"bank2": drops_before("shares"), "bank5": drops_before("masked")}
    results, _ = run_rounds(cfg, rounds, clients=late)
    for res, ups in zip(results, rounds, strict=True):
        assert isinstance(res, RoundResult), res
        assert set(res.survivors) == set(CLIENTS) - {"bank2", "bank5"}
        assert_sum(res, ups)


def test_each_client_sends_shares_to_its_neighbours_only() -> None:
    cfg = _config()
    log: list[WireRecord] = []

    def wrap(ch: Channel) -> Channel:
        return RecordingChannel(ch, log) if ch.party == SERVER else ch

    [res], _ = run_rounds(cfg, [updates(cfg)], wrap=wrap)
    assert_sum(res, updates(cfg))
    graph = neighbours(0, range(10), 4)
    for rec in log:
        if isinstance(rec.value, bytes) and wire.decode(rec.value).kind == wire.Kind.FORWARD:
            to = CLIENTS.index(rec.to)
            assert set(wire.parse_entries(wire.decode(rec.value).body)) == graph[to]


def test_survivors_that_would_fall_apart_abort_the_round() -> None:
    """Drop both neighbours on one side of a client and both on the other: in a
    circulant graph of degree 4 that cuts the survivors in two, so the server
    could read two partial sums; it aborts before asking for any share."""
    cfg = _config()
    graph = neighbours(0, range(10), 4)
    order = ring(0, range(10))
    cut = {order[1], order[2], order[6], order[7]}  # two gaps of two: two components
    gone = {CLIENTS[u]: drops_before("masked") for u in cut}
    remaining = set(range(10)) - cut
    assert not connected(remaining, graph)
    [res], subs = run_rounds(cfg, [updates(cfg)], clients=gone)
    assert isinstance(res, RoundAborted) and "fell apart" in str(res)
    for u in remaining:
        assert not subs[CLIENTS[u]][0].included
