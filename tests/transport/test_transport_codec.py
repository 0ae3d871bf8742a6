"""The typed frame codec and the stream envelope: round trips and hostile input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sharedml.errors import FrameError
from sharedml.transport import codec, grpc_wire
from sharedml.transport.codec import _DTYPES


@pytest.mark.parametrize("dtype", list(_DTYPES.values()), ids=str)
def test_codec_round_trips_every_dtype(dtype: np.dtype) -> None:
    arr = (np.arange(24) % 2 == 0) if dtype == np.bool_ else np.arange(24).astype(dtype)
    arr = arr.reshape(2, 3, 4)
    got = codec.decode_frame(codec.encode_frame(arr))
    assert isinstance(got, np.ndarray)
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)


def test_codec_keeps_uint64_top_bit_0d_and_bytes() -> None:
    top = np.array([2**63, 2**64 - 1], dtype=np.uint64)
    assert codec.decode_frame(codec.encode_frame(top)).tolist() == [2**63, 2**64 - 1]
    zero_d = codec.decode_frame(codec.encode_frame(np.array(7, dtype=np.int16)))
    assert isinstance(zero_d, np.ndarray) and zero_d.shape == () and int(zero_d) == 7
    assert codec.decode_frame(codec.encode_frame(b"abc")) == b"abc"


def test_codec_refuses_what_it_cannot_send() -> None:
    with pytest.raises(TypeError):
        codec.encode(np.array(["text"]))
    with pytest.raises(TypeError):
        codec.encode([1, 2, 3])


def _frame(arr: np.ndarray) -> bytearray:
    return bytearray(codec.encode_frame(arr))


def test_codec_rejects_bad_magic_and_version() -> None:
    frame = _frame(np.arange(4))
    frame[:4] = b"EVIL"
    with pytest.raises(FrameError, match="magic"):
        codec.decode_frame(bytes(frame))
    frame = _frame(np.arange(4))
    frame[4] = 99
    with pytest.raises(FrameError, match="version 99"):
        codec.decode_frame(bytes(frame))


def test_codec_rejects_lying_headers() -> None:
    arr = np.arange(4, dtype=np.int64)
    header, payload = codec.encode(arr)
    # the length field claims more bytes than arrive
    lying = header[:-8] + struct.pack("<Q", 10**12)
    with pytest.raises(FrameError, match="announces"):
        codec.decode(lying, payload.tobytes())
    # the shape claims more elements than the payload holds
    shape_lie = bytearray(header)
    struct.pack_into("<Q", shape_lie, 8, 5)
    with pytest.raises(FrameError, match="needs 40 bytes"):
        codec.decode(bytes(shape_lie), payload.tobytes())
    # unknown dtype, unknown kind, absurd rank
    for offset, value, message in ((6, 77, "dtype"), (5, 9, "kind"), (7, 200, "dimensions")):
        bad = bytearray(header)
        bad[offset] = value
        with pytest.raises(FrameError, match=message):
            codec.decode_frame(bytes(bad) + payload.tobytes())


def test_codec_rejects_truncation() -> None:
    frame = codec.encode_frame(np.arange(8, dtype=np.float32))
    with pytest.raises(FrameError):
        codec.decode_frame(frame[:5])
    with pytest.raises(FrameError, match="truncated"):
        codec.decode_frame(frame[:20])
    with pytest.raises(FrameError, match="announces"):
        codec.decode_frame(frame[:-1])


def test_decode_adopts_a_writable_buffer_without_copying() -> None:
    header, payload = codec.encode(np.arange(1000, dtype=np.float64))
    buffer = np.frombuffer(payload.tobytes(), dtype=np.uint8).copy()
    got = codec.decode(header, buffer.data)
    assert isinstance(got, np.ndarray)
    assert np.shares_memory(got, buffer)


# -- the stream envelope (grpc_wire) --------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 64, 1000, 1 << 20])
def test_wire_round_trip_in_chunks(chunk: int) -> None:
    values: list[np.ndarray | bytes] = [
        np.arange(5000, dtype=np.uint64) + 2**63,
        b"x" * 3000,
        np.array(1.5),
        b"",
    ]
    assembler = grpc_wire.Assembler()
    for i, value in enumerate(values):
        done = [assembler.feed(m) for m in grpc_wire.messages(f"t{i}", value, chunk)]
        assert all(d is None for d in done[:-1]) and done[-1] is not None
        tag, got = done[-1]
        assert tag == f"t{i}"
        if isinstance(value, bytes):
            assert got == value
        else:
            assert np.array_equal(got, value) and got.shape == value.shape
    assert assembler.partial is None


def test_wire_rejects_garbage_and_overshoot() -> None:
    with pytest.raises(FrameError, match="magic"):
        grpc_wire.Assembler().feed(b"\x00" * 64)
    with pytest.raises(FrameError, match="too short"):
        grpc_wire.Assembler().feed(b"SMLT")
    first, *rest = grpc_wire.messages("t", np.zeros(100), chunk=200)
    assembler = grpc_wire.Assembler()
    for message in [first, *rest[:-1]]:
        assert assembler.feed(message) is None
    with pytest.raises(FrameError, match="more than"):
        assembler.feed(rest[-1] + b"extra bytes")


def test_wire_rejects_envelope_that_disagrees_with_frame_header() -> None:
    (message,) = grpc_wire.messages("t", np.zeros(4), chunk=1 << 20)
    lying = bytearray(message)
    struct.pack_into("<Q", lying, 8, len(message) - 17 + 8)  # envelope claims 8 extra bytes
    with pytest.raises(FrameError, match="announces"):
        grpc_wire.Assembler().feed(bytes(lying))


def test_wire_refuses_huge_announcements_before_allocating() -> None:
    (message,) = grpc_wire.messages("t", np.zeros(4), chunk=1 << 20)
    lying = bytearray(message)
    struct.pack_into("<Q", lying, 8, 1 << 62)
    with pytest.raises(FrameError, match="limit"):
        grpc_wire.Assembler(max_frame=1 << 30).feed(bytes(lying))


def test_wire_end_of_stream_marker() -> None:
    assembler = grpc_wire.Assembler()
    (message,) = grpc_wire.messages("t", b"done", chunk=1 << 20)
    assert assembler.feed(message) == ("t", b"done")
    assert assembler.feed(grpc_wire.END_OF_STREAM) is None and assembler.ended
    with pytest.raises(FrameError, match="after the end"):
        assembler.feed(message)
    first, *_ = grpc_wire.messages("t", np.zeros(1000), chunk=100)
    cut = grpc_wire.Assembler()
    cut.feed(first)
    with pytest.raises(FrameError, match="ended inside a value"):
        cut.feed(grpc_wire.END_OF_STREAM)


def _array_header(code: int, shape: tuple[int, ...], nbytes: int) -> bytes:
    return (
        struct.pack("<4sBBBB", codec.MAGIC, codec.VERSION, codec.KIND_ARRAY, code, len(shape))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + struct.pack("<Q", nbytes)
    )


@pytest.mark.parametrize(
    "shape",
    [(2**64 - 1, 0), (2**63, 0), (2**62, 2**62, 0), (2**31, 2**31, 2**31, 0), (2**61, 0, 2**3)],
    ids=str,
)
def test_codec_rejects_shapes_whose_product_overflows(shape: tuple[int, ...]) -> None:
    # An empty payload matches any shape with a zero in it; numpy still cannot
    # describe these, and that must be a FrameError, not a ValueError.
    with pytest.raises(FrameError, match="too large"):
        codec.decode(_array_header(12, shape, 0), b"")


def test_codec_rejects_huge_shape_with_small_payload() -> None:
    header = _array_header(12, (2**30, 2**20), 80)  # announces 8 PiB
    with pytest.raises(FrameError, match="needs"):
        codec.decode(header, b"\x00" * 80)


def test_codec_still_takes_wide_empty_arrays() -> None:
    got = codec.decode(_array_header(6, (2**40, 0), 0), b"")
    assert isinstance(got, np.ndarray) and got.shape == (2**40, 0)


def test_envelope_tag_with_control_characters_is_refused() -> None:
    (message,) = grpc_wire.messages("fine", np.zeros(2), chunk=1 << 20)
    evil = message.replace(b"fine", b"fi\x1bn")
    with pytest.raises(FrameError, match="control characters"):
        grpc_wire.Assembler().feed(evil)


def test_announcement_reads_a_value_start_only() -> None:
    first, second = grpc_wire.messages("t", np.zeros(1000), chunk=4096)
    assert grpc_wire.announcement(first) == ("t", len(first) - 16 - 1 + len(second))
    assert grpc_wire.announcement(second) is None
    assert grpc_wire.announcement(grpc_wire.END_OF_STREAM) is None
    assert grpc_wire.announcement(b"short") is None
