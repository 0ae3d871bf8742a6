"""Secure aggregation among threads: exact sums, dropouts, aborts, wire audit (9.4-3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sharedml.fl.secagg import RoundAborted, RoundResult, wire
from sharedml.transport.base import Channel
from sharedml.transport.recording import RecordingChannel, WireRecord

from .secagg_world import config, drops_before, run_rounds

LENGTH = 2000


def updates(cfg, seed: int = 0, scale: float = 3.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.normal(0, scale, LENGTH) for c in cfg.clients}


def assert_sum(result: RoundResult, ups: dict[str, np.ndarray], within: float = 1e-9) -> None:
    exact = np.sum([ups[c] for c in result.survivors], axis=0)
    assert np.max(np.abs(result.total - exact)) <= result.error_bound
    assert result.error_bound < within


def test_no_dropout_gives_the_exact_sum_round_after_round() -> None:
    cfg = config(5, max_dropouts=2)
    rounds = [updates(cfg, seed) for seed in range(3)]
    results, subs = run_rounds(cfg, rounds)
    for res, ups in zip(results, rounds, strict=True):
        assert res.survivors == cfg.clients and res.out == {}
        assert_sum(res, ups)
    assert all(s.included for c in cfg.clients for s in subs[c])


@pytest.mark.parametrize("stage", ["shares", "masked", "unmask"])
def test_one_dropout_at_any_stage_still_sums_the_survivors(stage: str) -> None:
    cfg = config(5, max_dropouts=2)
    ups = updates(cfg)
    [res], _ = run_rounds(cfg, [ups], clients={"bank3": drops_before(stage)})
    assert isinstance(res, RoundResult)
    if stage == "unmask":  # its masked input is in: its update is in the sum
        assert res.survivors == cfg.clients
    else:
        assert "bank3" not in res.survivors and len(res.survivors) == 4
        assert "dropped" in res.out["bank3"]
    assert_sum(res, ups)


def test_t_dropouts_at_different_stages_still_sum() -> None:
    cfg = config(7, max_dropouts=3)
    ups = updates(cfg, seed=4)
    late = {
        "bank1": drops_before("shares"),
        "bank4": drops_before("masked"),
        "bank6": drops_before("masked"),
    }
    [res], _ = run_rounds(cfg, [ups], clients=late)
    assert res.survivors == ("bank0", "bank2", "bank3", "bank5")
    assert_sum(res, ups)


def test_more_than_t_dropouts_abort_cleanly_naming_who_is_missing() -> None:
    cfg = config(5, max_dropouts=1)
    ups = updates(cfg)
    gone = {c: drops_before("masked") for c in ("bank0", "bank2")}
    [res], subs = run_rounds(cfg, [ups], clients=gone)
    assert isinstance(res, RoundAborted)
    assert set(res.missing) == {"bank0", "bank2"}
    assert "bank0" in str(res) and "bank2" in str(res) and "masked" in str(res).lower()
    for c in ("bank1", "bank3", "bank4"):  # the others were told and returned
        assert not subs[c][0].included and "aborted" in subs[c][0].reason


def test_a_round_after_an_abort_works_again() -> None:
    cfg = config(3, max_dropouts=1)
    first = updates(cfg, seed=1)
    second = updates(cfg, seed=2)
    ups = [{c: v for c, v in first.items() if c == "bank0"}, second]  # round 0: one client only
    results, _ = run_rounds(cfg, ups)
    assert isinstance(results[0], RoundAborted)
    assert_sum(results[1], second)


@pytest.mark.parametrize(("bound", "ring"), [(2.0**20, 64), (8.0, 32)])
def test_what_the_aggregator_receives_is_uniform_and_never_the_update(
    bound: float, ring: int
) -> None:
    """Wire audit (9.4-3, 9.4-8): every message a client sends goes to the server; the
    masked vectors pass a chi-square test of uniform bytes and share no word with the
    client's fixed-point update; no float of the update appears in any message. On
    both rings: a bound of 8 for 4 clients keeps 24 fractional bits on Z_2^32 (its sum
    is then within 4 · 2^-25 of the exact one)."""
    cfg = config(4, max_dropouts=1, bound=bound)
    assert cfg.quantizer.ring_bits == ring
    ups = updates(cfg, scale=1.0)
    log: list[WireRecord] = []

    def wrap(ch: Channel) -> Channel:
        return RecordingChannel(ch, log) if ch.party != "agg" else ch

    [res], _ = run_rounds(cfg, [ups], clients={"bank2": drops_before("masked")}, wrap=wrap)
    assert_sum(res, ups, within=4 * 2.0**-25)
    assert log and all(rec.to == "agg" for rec in log)
    q = cfg.quantizer
    for client in cfg.clients:
        sent = [r for r in log if r.frm == client]
        vectors = [r.value for r in sent if isinstance(r.value, np.ndarray)]
        assert len(vectors) == (0 if client == "bank2" else 1)
        for vec in vectors:
            assert vec.dtype == q.dtype
            body = wire.body(vec)
            counts = np.bincount(body.view(np.uint8), minlength=256)
            assert stats.chisquare(counts).pvalue > 1e-6
            assert not np.isin(body, q.encode(ups[client])).any()
        raw = b"".join(r.as_bytes() for r in sent)
        for value in ups[client][:200]:
            assert np.float64(value).tobytes() not in raw
