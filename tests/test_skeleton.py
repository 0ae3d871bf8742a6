"""The session and the in-process runner that every protocol test builds on."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.errors import ConfigError, PeerTimeout
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.transport import LocalHub


def test_session_rejects_party_outside_peers() -> None:
    hub = LocalHub(["a", "b"])
    with pytest.raises(ConfigError, match="not among"):
        Session("c", ("a", "b"), hub.channel("a"))


def test_run_in_threads_exchanges_values_and_names_failing_party() -> None:
    def ping(s: Session) -> float:
        other = s.others[0]
        s.channel.send(other, "x", np.arange(3.0) * (s.index + 1))
        return float(s.channel.recv(other, "x").sum())

    assert run_in_threads(ping, ["a", "b"]) == {"a": 6.0, "b": 3.0}

    def broken(s: Session) -> None:
        if s.party == "b":
            raise ValueError("bad input in b")
        s.channel.recv("b", "never")

    with pytest.raises(PartyFailed, match="party 'b' failed"):
        run_in_threads(broken, ["a", "b"], timeout=30)


def test_recv_times_out_naming_peer_and_tag() -> None:
    hub = LocalHub(["a", "b"])
    with pytest.raises(PeerTimeout, match=r"'b'.*'t1'"):
        hub.channel("a").recv("b", "t1", timeout=0.05)
