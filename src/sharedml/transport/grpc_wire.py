"""How values travel inside one gRPC stream: an envelope, then chunks.

A stream carries the values one party sends another in one job (the job is
named once, in the stream's metadata). Each value becomes one or more gRPC
messages. The first starts with a small typed envelope (never pickle,
STYLE.md 11)::

    offset size field
    0      4    magic  b"SMLT"
    4      1    version (1)
    5      1    flags: 0, or 1 = end of stream (no tag, no frame follows)
    6      2    tag length in bytes (uint16, at most MAX_TAG)
    8      8    frame length: codec header + payload (uint64)
    16     n    tag, UTF-8
    16+n   ...  the codec frame (:mod:`sharedml.transport.codec`) begins

and the following messages carry the rest of the codec frame, in order,
until ``frame length`` bytes have arrived. A sender that is done says so with
:data:`END_OF_STREAM`, so a receiver can tell a finished peer from one whose
process or connection died (whose stream just stops). The first message always holds
the whole codec header, so the receiver checks it before allocating the
payload buffer; a value whose chunks overshoot, undershoot or disagree
with its headers is a :class:`~sharedml.errors.FrameError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sharedml.errors import FrameError
from sharedml.transport import codec
from sharedml.transport.base import MAX_TAG, check_tag, has_control
from sharedml.transport.codec import Value

MAGIC = b"SMLT"
VERSION = 1
DEFAULT_CHUNK = 1 << 20
#: Largest value a receiver accepts unless told otherwise (bounds allocation);
#: a receiver's unread budget per sender is never below it.
DEFAULT_MAX_FRAME = 2 << 30
_ENVELOPE = struct.Struct("<4sBBHQ")
FLAG_END = 1
#: The last message of a stream whose sender finished cleanly.
END_OF_STREAM = _ENVELOPE.pack(MAGIC, VERSION, FLAG_END, 0, 0)


def messages(
    tag: str, value: Value, chunk: int = DEFAULT_CHUNK, party: str = "?"
) -> Iterator[bytes]:
    """The gRPC messages that carry ``value`` under ``tag`` (each at most ~``chunk`` bytes).

    Each message is a fresh ``bytes`` object, so the caller may change
    ``value`` once the iterator is exhausted. A tag that cannot name a
    message (:func:`~sharedml.transport.base.check_tag`) is a
    :class:`~sharedml.errors.ChannelError` naming ``party``.
    """
    raw_tag = check_tag(party, tag)
    header, payload = codec.encode(value)
    total = len(header) + payload.nbytes
    first = max(chunk - _ENVELOPE.size - len(raw_tag) - len(header), 0)
    yield b"".join(
        (
            _ENVELOPE.pack(MAGIC, VERSION, 0, len(raw_tag), total),
            raw_tag,
            header,
            payload[:first],
        )
    )
    for start in range(first, payload.nbytes, chunk):
        yield payload[start : start + chunk].tobytes()


def announcement(message: bytes) -> tuple[str, int] | None:
    """(tag, frame length) if ``message`` looks like the start of a value, else None.

    A cheap look before :meth:`Assembler.feed` (which checks everything), so
    a receiver can make room for the value before it is allocated; the tag
    is only for messages (undecodable bytes are replaced).
    """
    if len(message) < _ENVELOPE.size:
        return None
    magic, _version, flags, tag_len, total = _ENVELOPE.unpack_from(message)
    if magic != MAGIC or flags:
        return None
    tag = bytes(message[_ENVELOPE.size : _ENVELOPE.size + min(tag_len, MAX_TAG)])
    return tag.decode(errors="replace"), total


@dataclass
class _Partial:
    tag: str
    header: bytes
    buffer: np.ndarray
    filled: int


class Assembler:
    """Rebuilds values from one stream's messages; one per stream.

    :meth:`feed` returns the (tag, value) completed by a message, if any.
    Chunks are copied into one preallocated buffer, which becomes the
    array's memory without another copy.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._partial: _Partial | None = None
        self.ended = False

    @property
    def partial(self) -> str | None:
        """The tag of a value that has begun but not finished arriving."""
        return None if self._partial is None else self._partial.tag

    def progress(self) -> str:
        p = self._partial
        if p is None:
            return "between values"
        return f"{p.filled} of {p.buffer.nbytes} payload bytes of tag {p.tag!r}"

    def feed(self, message: bytes) -> tuple[str, Value] | None:
        if self.ended:
            raise FrameError("message after the end of the stream")
        if message == END_OF_STREAM:
            self.ended = True
            if self._partial is not None:
                raise FrameError(f"stream ended inside a value ({self.progress()})")
            return None
        if self._partial is None:
            return self._start(message)
        p = self._partial
        end = p.filled + len(message)
        if end > p.buffer.nbytes:
            raise FrameError(
                f"value under tag {p.tag!r} carries more than the {p.buffer.nbytes} "
                "payload bytes its header announces"
            )
        p.buffer[p.filled : end] = np.frombuffer(message, dtype=np.uint8)
        p.filled = end
        if end < p.buffer.nbytes:
            return None
        self._partial = None
        return p.tag, codec.decode(p.header, p.buffer.data)

    def _start(self, message: bytes) -> tuple[str, Value] | None:
        if len(message) < _ENVELOPE.size:
            raise FrameError(f"message of {len(message)} bytes is too short for an envelope")
        magic, version, flags, tag_len, total = _ENVELOPE.unpack_from(message)
        if magic != MAGIC:
            raise FrameError("not a sharedml stream message (bad envelope magic)")
        if version != VERSION:
            raise FrameError(
                f"envelope version {version} is not supported (this side speaks {VERSION})",
                remedy="run the same sharedml version on every party",
            )
        if flags:
            raise FrameError(f"envelope with unknown flags {flags}")
        if tag_len > MAX_TAG or len(message) < _ENVELOPE.size + tag_len:
            raise FrameError(f"envelope announces a tag of {tag_len} bytes that is not there")
        try:
            tag = message[_ENVELOPE.size : _ENVELOPE.size + tag_len].decode()
        except UnicodeDecodeError as exc:
            raise FrameError("envelope tag is not UTF-8") from exc
        if has_control(tag):
            raise FrameError(f"envelope tag {tag!r} contains control characters")
        if total > self.max_frame:
            raise FrameError(
                f"value under tag {tag!r} announces {total} bytes, more than this "
                f"receiver's limit of {self.max_frame}"
            )
        body = memoryview(message)[_ENVELOPE.size + tag_len :]
        if len(body) > total:
            raise FrameError(
                f"value under tag {tag!r} carries more than the {total} bytes its envelope announces"
            )
        if len(body) < 8:
            raise FrameError(f"first message of tag {tag!r} does not hold the frame header")
        hlen = codec.header_length(body[:8])
        if len(body) < hlen:
            raise FrameError(f"first message of tag {tag!r} truncates the frame header")
        header = bytes(body[:hlen])
        (announced,) = struct.unpack_from("<Q", header, hlen - 8)
        if hlen + announced != total:
            raise FrameError(
                f"frame header of tag {tag!r} announces {announced} payload bytes but its "
                f"envelope announces {total - hlen}"
            )
        if len(body) == total:
            return tag, codec.decode(header, body[hlen:])
        buffer = np.empty(announced, dtype=np.uint8)
        first = len(body) - hlen
        buffer[:first] = np.frombuffer(body[hlen:], dtype=np.uint8)
        self._partial = _Partial(tag, header, buffer, first)
        return None
