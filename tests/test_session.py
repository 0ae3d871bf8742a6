"""The session's one way to the job's MPC runtime: who deals, over which parties, or why not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sharedml.errors import ConfigError
from sharedml.mpc import serve_dealer
from sharedml.session import Session
from sharedml.standalone import run_in_threads
from sharedml.transport import LocalHub
from sharedml.transport.recording import RecordingChannel, WireRecord


def _session(party: str, peers: tuple[str, ...], dealer: str | None = None) -> Session:
    return Session(party, peers, LocalHub(peers).channel(party), dealer=dealer)


def test_the_dealer_must_be_a_peer_and_is_no_data_party() -> None:
    with pytest.raises(ConfigError, match="dealer 'd' is not among"):
        _session("a", ("a", "b"), dealer="d")
    s = _session("a", ("a", "b", "d"), dealer="d")
    assert s.data_parties == ("a", "b")
    assert s.without_dealer().peers == ("a", "b")
    assert s.without_dealer().channel.peers == ("a", "b")
    assert s.without_dealer().dealer is None
    assert _session("a", ("a", "b")).data_parties == ("a", "b")


def test_without_a_dealer_the_runtime_is_refused_naming_the_purpose() -> None:
    s = _session("a", ("a", "b"))
    for provider in (None, "dealer"):
        with pytest.raises(ConfigError, match="SS-LR computes on secret shares and needs a dealer"):
            s.mpc_runtime(provider, purpose="SS-LR")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="provider must be one of"):
        _session("a", ("a", "b", "d"), dealer="d").mpc_runtime("paillier")  # type: ignore[arg-type]


def test_the_runtime_choice_and_its_parties() -> None:
    s = _session("b", ("a", "b", "d"), dealer="d")
    dealt = s.mpc_runtime(frac_bits=24)
    assert dealt.provider == "dealer" and dealt.parties == ("a", "b")
    assert dealt.session.peers == ("a", "b", "d") and dealt.session.dealer == "d"
    assert dealt.session.frac_bits == 24 and s.frac_bits == 16
    # Paillier needs no third party: its runtime runs over the data parties only,
    # even in a job that has a dealer for other steps
    he = s.mpc_runtime("he")
    assert he.provider == "he" and he.session.peers == ("a", "b") and he.parties == ("a", "b")
    with pytest.raises(ConfigError, match="provider 'he' works between two parties, this job has 3"):
        _session("a", ("a", "b", "c")).mpc_runtime("he")


def _product(session: Session) -> Any:
    with session.mpc_runtime().open() as mpc:
        x = mpc.share(np.array([[1.5, -2.0]]) if session.party == "a" else None, owner="a")
        w = mpc.share(np.array([[0.5], [0.25]]) if session.party == "b" else None, owner="b")
        return (x @ w).reveal(to="a")


def test_the_session_runtime_computes_with_the_sessions_dealer() -> None:
    log: list[WireRecord] = []
    out = run_in_threads({"a": _product, "b": _product, "d": serve_dealer}, ["a", "b", "d"],
                      dealer="d", timeout=30, wrap=lambda c: RecordingChannel(c, log))
    np.testing.assert_allclose(out["a"], [[0.25]], atol=1e-4)
    assert out["b"] is None
    # the dealer only answered material requests; it was sent no share of x or w
    assert {(r.frm, r.tag) for r in log if r.to == "d"} == {("b", "dealer/req")}
