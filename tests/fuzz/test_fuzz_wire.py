"""Fuzzing the wire parsers: the party frame codec, the gRPC stream envelope and the
node/platform control messages, and a node's keeping of the audit checkpoints they
carry (issue 14). Random bytes and mutations of valid
messages: each parser returns a value or refuses with its own error; 0 crashes,
0 hangs, in ``FUZZ_EXAMPLES`` examples per target."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedml import control
from sharedml.errors import ConfigError, FrameError
from sharedml.transport import codec, grpc_wire

from .conftest import FUZZ, refuses_only

pytestmark = pytest.mark.timeout(600)

VALUES = st.one_of(
    st.binary(max_size=64),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=16).map(lambda v: np.array(v, np.int64)),
    st.lists(st.floats(allow_nan=True), max_size=16).map(lambda v: np.array(v, np.float64)),
    st.lists(st.integers(0, 2**64 - 1), max_size=16).map(lambda v: np.array(v, np.uint64)),
)


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    raw = bytearray(data)
    for at, byte in flips:
        if raw:
            raw[at % len(raw)] = byte
    return bytes(raw if cut is None else raw[: cut % (len(raw) + 1)])


MUTATION = (st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
            st.none() | st.integers(0, 1 << 16))


@FUZZ
@given(st.binary(max_size=512))
def test_codec_random_bytes(data: bytes) -> None:
    refuses_only((FrameError,), lambda: codec.decode_frame(data), "decode_frame")


@FUZZ
@given(VALUES, *MUTATION)
def test_codec_mutated_frames(value: object, flips: list[tuple[int, int]], cut: int | None) -> None:
    frame = codec.encode_frame(value)  # type: ignore[arg-type]
    if not flips and cut is None:  # unmutated: round trip exactly
        back = codec.decode_frame(frame)
        assert (back == value) if isinstance(value, bytes) else np.array_equal(
            back, value, equal_nan=True)  # type: ignore[arg-type]
        return
    refuses_only((FrameError,), lambda: codec.decode_frame(_mutate(frame, flips, cut)),
                 "decode_frame")


@FUZZ
@given(st.lists(st.binary(max_size=256), max_size=6))
def test_stream_assembler_random_messages(messages: list[bytes]) -> None:
    assembler = grpc_wire.Assembler(max_frame=1 << 20)

    def feed_all() -> None:
        for m in messages:
            grpc_wire.announcement(m)
            assembler.feed(m)

    refuses_only((FrameError,), feed_all, "Assembler.feed")


@FUZZ
@given(VALUES, *MUTATION)
def test_stream_assembler_mutated_messages(
    value: object, flips: list[tuple[int, int]], cut: int | None
) -> None:
    msgs = list(grpc_wire.messages("step/tag", value, chunk=64))  # type: ignore[arg-type]
    msgs[0] = _mutate(msgs[0], flips, cut)
    assembler = grpc_wire.Assembler(max_frame=1 << 20)
    refuses_only((FrameError,), lambda: [assembler.feed(m) for m in msgs], "Assembler.feed")


WIRE_TYPES = [control.Hello, control.HelloReply, control.Beat, control.BeatReply,
              control.AuditCheckpoint,
              control.TaskOrder, control.Report, control.Ack]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                             max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.sampled_from(WIRE_TYPES), st.binary(max_size=512))
def test_control_messages_random_bytes(kind: type[control.Wire], data: bytes) -> None:
    refuses_only((ConfigError,), lambda: control.decode(kind, data), kind.__name__)


@FUZZ
@given(st.sampled_from(WIRE_TYPES), st.dictionaries(
    st.sampled_from(["v", "task_id", "ok", "reason", "metrics", "orders", "cancel", "running",
                     "jobs", "address", "boot", "role", "datasets", "node", "heartbeat_s",
                     "step_id", "params", "peers", "spec", "approvals", "retry", "code"]),
    JSON, max_size=8))
def test_control_messages_structured_json(kind: type[control.Wire], body: dict) -> None:
    raw = json.dumps(body).encode()
    msg = refuses_only((ConfigError,), lambda: control.decode(kind, raw), kind.__name__)
    if msg is not None:  # what parses, re-encodes to itself
        assert control.decode(kind, msg.encode()) == msg


@pytest.fixture(scope="module")
def signer() -> Any:
    from sharedml.platform.audit_checkpoints import CheckpointSigner

    return CheckpointSigner(b"s" * 32)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from("0af"), st.integers(0, 3),
                          st.sampled_from(["ok", "bad-sig", "bad-key"])), min_size=1, max_size=6))
def test_node_keeps_or_refuses_any_checkpoint_sequence(signer: Any, seq: list[Any]) -> None:
    """A node fed signed, forged and foreign checkpoints in any order keeps or refuses
    each (``node/checkpoints.py``); it never raises, and what it keeps only moves forward."""
    from sharedml.node.checkpoints import NodeCheckpoints

    pem = signer.public_pem()
    with tempfile.TemporaryDirectory() as work:
        book = NodeCheckpoints(Path(work), "bank")
        for n, digit, mac_from, how in seq:
            c = signer.sign(n, digit * 64, "t", mac_from)
            key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" \
                if how == "bad-key" else pem
            sig = c.signature[::-1] if how == "bad-sig" else c.signature
            msg = control.AuditCheckpoint(seq=n, head=c.head, ts="t", signature=sig,
                                          mac_from=mac_from, public_key=key)
            refuses_only((), lambda m=msg: book.receive(m), "NodeCheckpoints.receive")
        kept = [c.seq for c in book.held()[1]]
        assert kept == sorted(set(kept)), kept
