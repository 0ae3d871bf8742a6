"""The same secure aggregation over GrpcChannel: one process per party, mutual TLS.

A client that disconnects after sharing its keys is noticed at once (its
stream ends) and its masks are removed; what the server received over the
real wire is uniform and never the update (9.4-3).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sharedml.fl.secagg import SecAggClient, SecAggConfig, SecAggServer, Submission
from sharedml.fl.secagg.client import _RoundState
from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes
from sharedml.transport.recording import WireRecord

CLIENTS = ("bank0", "bank1", "bank2", "bank3")
CFG = SecAggConfig.for_dropouts("agg", CLIENTS, max_dropouts=1, stage_timeout=60.0)
LENGTH = 50_000


def _update(party: str) -> np.ndarray:
    return np.random.default_rng(CLIENTS.index(party)).normal(0, 2.0, LENGTH)


class _Disconnects(SecAggClient):
    def _masked_input(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        self.s.channel.close()  # as a crashed process would: its streams end
        return Submission(st.round, False, "left")


def _server(session: Session) -> tuple[np.ndarray, tuple[str, ...], dict[str, str]]:
    res = SecAggServer(session, CFG).aggregate(0, list(CLIENTS), LENGTH)
    return res.total, res.survivors, res.out


def _client(session: Session) -> bool:
    cls = _Disconnects if session.party == "bank3" else SecAggClient
    return cls(session, CFG).submit(0, _update(session.party)).included


@pytest.mark.slow
def test_sum_over_grpc_with_a_client_that_disconnects() -> None:
    log: list[WireRecord] = []
    fns = {"agg": _server, **dict.fromkeys(CLIENTS, _client)}
    out = run_in_processes(fns, ["agg", *CLIENTS], timeout=60, record=log)
    total, survivors, dropped = out["agg"]
    assert survivors == CLIENTS[:3]
    assert "disconnected" in dropped["bank3"]
    exact = sum(_update(c) for c in survivors)
    assert np.max(np.abs(total - exact)) <= CFG.quantizer.error_bound(3, exact).max()
    for client in CLIENTS[:3]:
        [masked] = [r.value for r in log if r.frm == client and isinstance(r.value, np.ndarray)]
        body = masked[4:]
        assert stats.chisquare(np.bincount(body.view(np.uint8), minlength=256)).pvalue > 1e-6
        assert not np.isin(body, CFG.quantizer.encode(_update(client))).any()
