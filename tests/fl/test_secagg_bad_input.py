"""Bad input never takes a round down (8.3-2): the client is excluded with a reason, the
round goes on with the others."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sharedml.fl.secagg import RoundResult

from .secagg_world import config, run_rounds, sends_instead
from .test_secagg import assert_sum, updates


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda x: np.where(np.arange(x.size) == 7, np.nan, x), "NaN"),
        (lambda x: np.where(np.arange(x.size) == 7, -np.inf, x), "infinity"),
        (lambda x: x * 1e7, "outside the quantisation range"),
        (lambda x: x.reshape(2, -1), "1-D float vector"),
        (lambda x: x.astype(np.int64), "1-D float vector"),
    ],
    ids=["nan", "inf", "range", "shape", "dtype"],
)
def test_a_client_with_a_bad_update_abstains_and_the_round_goes_on(bad: Any, reason: str) -> None:
    cfg = config(4, max_dropouts=1)
    ups = updates(cfg)
    sent = {**ups, "bank1": bad(ups["bank1"])}
    [res], subs = run_rounds(cfg, [sent])
    assert isinstance(res, RoundResult)
    assert res.survivors == ("bank0", "bank2", "bank3")
    assert res.out["bank1"].startswith("excluded: abstained") and reason in res.out["bank1"]
    assert not subs["bank1"][0].included and reason in subs["bank1"][0].reason
    assert_sum(res, ups)


def _wrong_length(msg: np.ndarray, _r: int) -> np.ndarray:
    out = msg[:-5].copy()
    return out


def _float_vector(msg: np.ndarray, _r: int) -> np.ndarray:
    return msg[4:].astype(np.float64)


def _other_ring(msg: np.ndarray, _r: int) -> np.ndarray:
    """The same header, the vector as 32-bit words, in a round on Z_2^64."""
    return np.concatenate([msg[:4].view(np.uint32), msg[4:].astype(np.uint32)])


def _next_round(msg: np.ndarray, r: int) -> np.ndarray:
    out = msg.copy()
    out[1] = r + 1
    return out


def _garbage(_msg: np.ndarray, _r: int) -> bytes:
    return b"SAG1\x01\x09junk"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_wrong_length, "holds 1995 values"),
        (_float_vector, "dtype float64"),
        (_other_ring, "dtype uint32 and 1 dimensions, expected one dimension of uint64"),
        (_next_round, "announced round 1 during round 0"),
        (_garbage, "malformed"),
    ],
    ids=["length", "dtype", "ring", "round", "garbage"],
)
def test_a_malformed_masked_input_excludes_its_sender(tamper: Any, reason: str) -> None:
    cfg = config(4, max_dropouts=1)
    ups = updates(cfg)
    [res], subs = run_rounds(cfg, [ups], clients={"bank2": sends_instead(tamper)})
    assert isinstance(res, RoundResult)
    assert "bank2" not in res.survivors and reason in res.out["bank2"]
    assert not subs["bank2"][0].included and reason in subs["bank2"][0].reason
    assert_sum(res, ups)


class _Replayer:
    """Sends round 0's message again in round 1, as it was or under round 1's number."""

    def __init__(self, renumber: bool) -> None:
        self.renumber = renumber
        self.first: np.ndarray | None = None

    def __call__(self, msg: np.ndarray, r: int) -> np.ndarray:
        if self.first is None:
            self.first = msg.copy()
            return msg
        out = self.first.copy()
        if self.renumber:
            out[1] = r
        return out


@pytest.mark.parametrize(
    ("renumber", "reason"),
    [(False, "replayed its MASKED message of round 0"), (True, "replayed a masked vector")],
)
def test_a_replayed_message_excludes_its_sender(renumber: bool, reason: str) -> None:
    cfg = config(4, max_dropouts=1)
    rounds = [updates(cfg, 0), updates(cfg, 1)]
    results, subs = run_rounds(cfg, rounds, clients={"bank0": sends_instead(_Replayer(renumber))})
    assert results[0].survivors == cfg.clients
    assert "bank0" not in results[1].survivors and reason in results[1].out["bank0"]
    assert [s.included for s in subs["bank0"]] == [True, False]
    for res, ups in zip(results, rounds, strict=True):
        assert_sum(res, ups)
