"""A feature holder refuses commands out of order or out of range (STYLE.md 6)."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto.paillier import generate_keypair
from sharedml.errors import ProtocolAbort
from sharedml.learn.tree.feature_holder import serve_training
from sharedml.learn.tree.he_histograms import HEHistogramServer
from sharedml.learn.tree.wire import OP_BEGIN_TREE, OP_SPLIT, send_cmd
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads


def _run(script):
    X = np.random.default_rng(0).normal(size=(40, 3))
    pk, _ = generate_keypair(1024)

    def host(s: Session):
        return serve_training(s.channel, "guest", HEHistogramServer(), X, None, 8)

    def guest(s: Session):
        s.channel.recv("host", "meta")
        s.channel.send("host", "he/pk", pk.to_bytes())
        script(s)

    return run_in_threads({"guest": guest, "host": host}, ["guest", "host"], timeout=20)


def test_split_before_any_tree_is_refused():
    with pytest.raises(PartyFailed) as info:
        _run(lambda s: send_cmd(s.channel, "host", OP_SPLIT, 1))
    assert isinstance(info.value.error, ProtocolAbort)
    assert info.value.party == "host"


def test_unknown_command_is_refused():
    with pytest.raises(PartyFailed) as info:
        _run(lambda s: send_cmd(s.channel, "host", 99, 0))
    assert isinstance(info.value.error, ProtocolAbort)


def test_malformed_tree_header_is_refused():
    def script(s: Session):
        send_cmd(s.channel, "host", OP_BEGIN_TREE)
        s.channel.send("host", "he/head", np.array([24, 40, 1], dtype=np.int64))
        s.channel.send("host", "he/rows", np.array([0, 1, 999], dtype=np.int64))

    with pytest.raises(PartyFailed) as info:
        _run(script)
    assert isinstance(info.value.error, ProtocolAbort)
