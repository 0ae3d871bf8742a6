"""The node/platform control wire: paired encode/decode, refusals name the field."""

from __future__ import annotations

import pytest

from sharedml.control import Beat, BeatReply, Hello, Report, TaskOrder, decode
from sharedml.errors import ConfigError


def _order() -> TaskOrder:
    return TaskOrder(
        task_id="t1", job_id="j1", step_id="psi", component="psi", params={"protocol": "ecdh"},
        attempt=0, ancestors=[], parties={"bank": {"dataset": "customers"}},
        peers={"bank": "127.0.0.1:1", "shop": "127.0.0.1:2"}, channel_timeout_s=5.0,
        dealer="dealer",
    )


@pytest.mark.parametrize(
    "msg",
    [
        Hello(address="127.0.0.1:7000", boot="b1", role="dealer"),
        Beat(running={"t1": 0.5}, jobs=["j1"]),
        BeatReply(orders=[_order()], cancel=["t0"], forget=["j0"]),
        Report(task_id="t1", ok=False, metrics={"rows": 3}, reason="boom", seconds=1.5),
    ],
)
def test_round_trip(msg: object) -> None:
    assert decode(type(msg), msg.encode()) == msg  # type: ignore[attr-defined, arg-type]


def test_unknown_field_is_refused_naming_it() -> None:
    raw = b'{"v": 1, "address": "127.0.0.1:7000", "rows": [1, 2]}'
    with pytest.raises(ConfigError, match="malformed Hello message: rows"):
        decode(Hello, raw)


def test_other_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="malformed Beat message: v"):
        decode(Beat, b'{"v": 2}')


def test_not_json_is_refused() -> None:
    with pytest.raises(ConfigError, match="malformed Report message"):
        decode(Report, b"\x80not json")
