"""LoopbackPair: a party's two roles talk to each other, never to themselves, and the
rest of the job through the party's real channel."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.errors import ChannelError, PeerTimeout
from sharedml.transport.local import LocalHub
from sharedml.transport.loopback import LoopbackPair


def test_each_view_reads_what_the_other_sent_itself_and_peers_as_usual() -> None:
    hub = LocalHub(["guest", "host"])
    pair = LoopbackPair(hub.channel("guest", timeout=5))
    host = hub.channel("host", timeout=5)
    sent = np.arange(4.0)
    pair.first.send("guest", "up", sent)
    pair.second.send("guest", "down", b"reply")
    sent[0] = 99.0  # the receiver holds a copy
    assert pair.second.recv("guest", "up").tolist() == [0.0, 1.0, 2.0, 3.0]
    assert pair.first.recv("guest", "down") == b"reply"
    with pytest.raises(PeerTimeout):  # nothing of its own comes back to a view
        pair.first.recv("guest", "up", timeout=0.05)
    pair.second.scope("step").send("host", "x", b"to the host")
    host.send("guest", "step/y", b"to the guest")
    assert host.recv("guest", "step/x") == b"to the host"
    assert pair.first.scope("step").recv("host", "y") == b"to the guest"
    pair.first.scope("step").send("guest", "z", b"scoped")
    assert pair.second.recv("guest", "step/z") == b"scoped"


def test_a_failed_role_wakes_the_other() -> None:
    hub = LocalHub(["guest", "host"])
    pair = LoopbackPair(hub.channel("guest", timeout=5))
    pair.fail(ChannelError("the aggregator side stopped", party="guest"))
    with pytest.raises(ChannelError, match="aggregator side stopped"):
        pair.first.recv("guest", "down", timeout=5)
