"""Run secure-aggregation rounds among threads (LocalChannel) for the tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sharedml.errors import SharedMLError
from sharedml.fl.secagg import SecAggClient, SecAggConfig, SecAggServer, Submission
from sharedml.fl.secagg.client import _RoundState
from sharedml.session import Session
from sharedml.standalone.threads import run_in_threads
from sharedml.transport.base import Channel

SERVER = "agg"


def config(n: int, max_dropouts: int, stage_timeout: float = 1.5, **kw: Any) -> SecAggConfig:
    return SecAggConfig.for_dropouts(
        SERVER, [f"bank{i}" for i in range(n)], max_dropouts, stage_timeout=stage_timeout, **kw
    )


ClientFactory = Callable[[Session, SecAggConfig], SecAggClient]


def run_rounds(
    cfg: SecAggConfig,
    updates: list[Mapping[str, np.ndarray]],
    *,
    clients: Mapping[str, ClientFactory] | None = None,
    wrap: Callable[[Channel], Channel] | None = None,
) -> tuple[list[Any], dict[str, list[Submission]]]:
    """Round ``r`` sums ``updates[r]``; returns the server's results (or the error
    that ended a round) and each client's submissions."""
    length = len(next(iter(updates[0].values())))

    def server(session: Session) -> list[Any]:
        agg = SecAggServer(session, cfg)
        results: list[Any] = []
        for r, ups in enumerate(updates):
            try:
                results.append(agg.aggregate(r, list(ups), length))
            except SharedMLError as exc:
                results.append(exc)
        return results

    def client(session: Session) -> list[Submission]:
        make = (clients or {}).get(session.party, SecAggClient)
        me = make(session, cfg)
        return [
            me.submit(r, ups[session.party])
            for r, ups in enumerate(updates)
            if session.party in ups
        ]

    fns = {SERVER: server, **{c: client for c in cfg.clients}}
    out = run_in_threads(fns, [SERVER, *cfg.clients], timeout=30, wrap=wrap)
    return out[SERVER], {c: out[c] for c in cfg.clients}


class DropsBefore(SecAggClient):
    """A client that goes silent before the named stage of every round."""

    def __init__(self, session: Session, cfg: SecAggConfig, stage: str) -> None:
        super().__init__(session, cfg)
        self.stage = stage

    def _leave(self, st: _RoundState) -> Submission:
        return Submission(st.round, False, f"left before {self.stage} (test)")

    def _share_keys(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        return self._leave(st) if self.stage == "shares" else super()._share_keys(st, x)

    def _masked_input(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        return self._leave(st) if self.stage == "masked" else super()._masked_input(st, x)

    def _unmask(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        return self._leave(st) if self.stage == "unmask" else super()._unmask(st, x)


def drops_before(stage: str) -> ClientFactory:
    return lambda session, cfg: DropsBefore(session, cfg, stage)


class SendsInstead(SecAggClient):
    """A client whose masked-input message is replaced by ``tamper(message, round)``."""

    def __init__(
        self, session: Session, cfg: SecAggConfig, tamper: Callable[[np.ndarray, int], Any]
    ) -> None:
        super().__init__(session, cfg)
        self.tamper = tamper
        self.round = -1

    def submit(self, round_id: int, update: np.ndarray) -> Submission:
        self.round = round_id
        return super().submit(round_id, update)

    def _send_masked(self, message: np.ndarray) -> None:
        self.s.channel.send(self.config.server, "secagg/up", self.tamper(message, self.round))


def sends_instead(tamper: Callable[[np.ndarray, int], Any]) -> ClientFactory:
    return lambda session, cfg: SendsInstead(session, cfg, tamper)
