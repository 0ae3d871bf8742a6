"""Bad input gives a clear error naming the operation and the party — never a hang."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.mpc import MPC, DealerProvider, serve_dealer
from sharedml.session import Session
from sharedml.standalone import PartyFailed, run_in_threads


def _shared_pair(mpc, xshape, yshape):
    x = mpc.share(np.ones(xshape) if mpc.party == "alice" else None, owner="alice")
    y = mpc.share(np.ones(yshape) if mpc.party == "bob" else None, owner="bob")
    return x, y


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("add", lambda x, y: x + y),
        ("mul", lambda x, y: x * y),
        ("matmul", lambda x, y: x @ y),
    ],
)
def test_mismatched_shapes_name_operation_and_party(op, call) -> None:
    def body(mpc):
        x, y = _shared_pair(mpc, (3, 4), (5, 2))
        return call(x, y)

    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    err = info.value.error
    assert isinstance(err, DataError)
    assert err.step == op and err.party in ("alice", "bob")
    assert op in str(err) and "(3, 4)" in str(err)


def test_public_operand_of_wrong_shape() -> None:
    def body(mpc):
        x, _ = _shared_pair(mpc, (3, 4), (1,))
        return x + np.ones((2, 2))

    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    assert isinstance(info.value.error, DataError)


def test_precision_mismatch_is_refused_by_the_handshake() -> None:
    def party(session: Session):
        bits = 20 if session.party == "bob" else 16
        mine = Session(session.party, session.peers, session.channel, frac_bits=bits,
                       dealer=session.dealer)
        with MPC(mine, DealerProvider(mine)) as mpc:
            return mpc.parties

    start = time.monotonic()
    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            {"alice": party, "bob": party, "dealer": serve_dealer},
            ["alice", "bob", "dealer"],
            timeout=20,
            dealer="dealer",
        )
    assert time.monotonic() - start < 15  # no hang
    err = info.value.error
    assert isinstance(err, ConfigError)
    assert "frac_bits" in str(err) and err.step == "mpc.handshake"
    assert err.party in ("alice", "bob")


def test_truncation_mode_mismatch_is_refused() -> None:
    def party(session: Session):
        trunc = "local" if session.party == "bob" else "pair"
        with MPC(session, DealerProvider(session), trunc=trunc) as mpc:
            return mpc.parties

    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            {"alice": party, "bob": party, "dealer": serve_dealer},
            ["alice", "bob", "dealer"],
            timeout=20,
            dealer="dealer",
        )
    assert "trunc" in str(info.value.error)


@pytest.mark.parametrize("op", ["mul", "reveal"])
def test_wrong_sized_share_names_operation_and_sender(op) -> None:
    def body(mpc):
        x, y = _shared_pair(mpc, (6,), (6,))
        if mpc.party == "bob":  # a faulty peer works on a slice
            x, y = x[:4], y[:4]
        return (x * y).reveal() if op == "mul" else x.reveal()

    start = time.monotonic()
    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    assert time.monotonic() - start < 15
    err = info.value.error
    assert isinstance(err, ProtocolAbort)
    assert err.step == op
    other = "bob" if err.party == "bob" else "alice"
    assert f"party {other!r}" in str(err) and "shape" in str(err)


def test_unencodable_values_are_refused() -> None:
    def body(mpc):
        return mpc.share(np.array([np.nan, 1.0]) if mpc.party == "alice" else None, owner="alice")

    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    assert isinstance(info.value.error, DataError)
    assert "NaN" in str(info.value.error)


def test_dealer_refuses_a_replayed_request() -> None:
    from sharedml.mpc.material import Kind, Request

    def alice(session: Session):
        return None

    def bob(session: Session):
        channel = session.channel.scope("dealer")
        channel.recv("dealer", "key")
        for counter in (1, 1):  # the second asks for stream position 1 again
            channel.send("dealer", "req", Request(Kind.MUL, counter, (4,)).encode())
        return channel.recv("dealer", "mat/1")

    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            {"alice": alice, "bob": bob, "dealer": serve_dealer},
            ["alice", "bob", "dealer"],
            timeout=20,
        )
    err = info.value.error
    assert isinstance(err, ProtocolAbort) and "replayed" in str(err)


def test_public_operand_that_cannot_be_encoded() -> None:
    def body(mpc):
        x, _ = _shared_pair(mpc, (3,), (3,))
        return x / 0.0

    with pytest.raises(PartyFailed) as info:
        run_mpc(body)
    assert isinstance(info.value.error, DataError) and "finite" in str(info.value.error)


def test_he_provider_refuses_three_parties() -> None:
    def body(mpc):
        return None

    with pytest.raises(PartyFailed) as info:
        run_mpc(body, "he", parties=("alice", "bob", "carol"))
    assert isinstance(info.value.error, ConfigError) and "two" in str(info.value.error)
