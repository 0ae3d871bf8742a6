"""The typed messages of secure aggregation: paired encode/decode, never pickle (STYLE.md 11).

Every control message is bytes: a fixed header ``magic "SAG1", version,
kind, sender index (uint16), round (uint64)`` and a body whose layout the
kind fixes. A masked input is one array of the ring's words (uint64, or
uint32 on the 32-bit ring) whose first :data:`HEADER_BYTES` bytes hold four
uint64 words ``magic, round, sender index, length`` and whose remaining
words are the masked vector, so the vector and its round travel together
and nothing is copied to join them.

:func:`decode` checks every length against the bytes it is given and raises
:class:`Malformed` (with a reason a log can show) instead of reading past
them; the roles turn that into an exclusion (server) or a
:class:`~sharedml.errors.ProtocolAbort` (client).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from sharedml.fl.secagg.primitives import NONCE_BYTES, PUBLIC_BYTES, SHARE_BYTES

MAGIC = b"SAG1"
VERSION = 1
_HEAD = struct.Struct("<4sBBHQ")
_COUNT = struct.Struct("<H")
_ENTRY = struct.Struct("<HH")  # peer index, length
#: Masked-array header: four uint64 words (magic word, round, sender index, vector length).
HEADER_BYTES = 32
RING_DTYPES = (np.dtype(np.uint64), np.dtype(np.uint32))
ARRAY_MAGIC = np.uint64(int.from_bytes(b"SAG1mask", "little"))
#: GCM nonce, the shares of the mask key and of the seed, GCM tag.
SEALED_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + 16
MAX_REASON = 500


class Kind(IntEnum):
    ADVERTISE = 1  # client -> server: c_pk ‖ s_pk
    KEYS = 2  # server -> clients: every live client's index, c_pk, s_pk
    SHARES = 3  # client -> server: one sealed share bundle per other live client
    FORWARD = 4  # server -> client: the bundles addressed to it
    SURVIVORS = 5  # server -> clients: who submitted a masked input, who dropped
    UNMASK = 6  # client -> server: seed shares of survivors, key shares of the dropped
    ABSTAIN = 7  # client -> server: it will not submit this round, and why
    ABORT = 8  # server -> clients: the round is over for the recipient, and why


class Malformed(Exception):
    """A message does not parse; ``str()`` says how."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    sender: int
    round: int
    body: bytes


def encode(kind: Kind, sender: int, round_id: int, body: bytes = b"") -> bytes:
    return _HEAD.pack(MAGIC, VERSION, int(kind), sender, round_id) + body


def decode(raw: object) -> Message:
    if not isinstance(raw, bytes):
        raise Malformed(f"expected a control message (bytes), got {type(raw).__name__}")
    if len(raw) < _HEAD.size:
        raise Malformed(f"message of {len(raw)} bytes is shorter than its header")
    magic, version, kind, sender, round_id = _HEAD.unpack_from(raw)
    if magic != MAGIC or version != VERSION:
        raise Malformed(f"not a secure-aggregation v{VERSION} message")
    try:
        k = Kind(kind)
    except ValueError:
        raise Malformed(f"unknown message kind {kind}") from None
    return Message(k, sender, round_id, raw[_HEAD.size :])


# -- bodies ----------------------------------------------------------------------------
def keys_body(entries: dict[int, tuple[bytes, bytes]]) -> bytes:
    """Body of KEYS: ``count`` then per client ``index, c_pk, s_pk``."""
    parts = [_COUNT.pack(len(entries))]
    for index, (c_pk, s_pk) in sorted(entries.items()):
        parts.append(struct.pack("<H", index) + c_pk + s_pk)
    return b"".join(parts)


def parse_keys(body: bytes) -> dict[int, tuple[bytes, bytes]]:
    count = _count(body)
    size = 2 + 2 * PUBLIC_BYTES
    if len(body) != _COUNT.size + count * size:
        raise Malformed(f"KEYS body of {len(body)} bytes does not hold {count} entries")
    out: dict[int, tuple[bytes, bytes]] = {}
    for i in range(count):
        at = _COUNT.size + i * size
        (index,) = struct.unpack_from("<H", body, at)
        if index in out:
            raise Malformed(f"KEYS lists client {index} twice")
        out[index] = (body[at + 2 : at + 2 + PUBLIC_BYTES], body[at + 2 + PUBLIC_BYTES : at + size])
    return out


def advertise_body(c_pk: bytes, s_pk: bytes) -> bytes:
    return c_pk + s_pk


def parse_advertise(body: bytes) -> tuple[bytes, bytes]:
    if len(body) != 2 * PUBLIC_BYTES:
        raise Malformed(f"ADVERTISE body of {len(body)} bytes, expected {2 * PUBLIC_BYTES}")
    return body[:PUBLIC_BYTES], body[PUBLIC_BYTES:]


def entries_body(entries: dict[int, bytes]) -> bytes:
    """Body of SHARES, FORWARD and UNMASK: ``count`` then ``index, length, bytes`` each."""
    parts = [_COUNT.pack(len(entries))]
    for index, blob in sorted(entries.items()):
        parts.append(_ENTRY.pack(index, len(blob)) + blob)
    return b"".join(parts)


def parse_entries(body: bytes, *, size: int | None = None) -> dict[int, bytes]:
    count = _count(body)
    out: dict[int, bytes] = {}
    at = _COUNT.size
    for _ in range(count):
        if at + _ENTRY.size > len(body):
            raise Malformed("entry list ends inside an entry header")
        index, length = _ENTRY.unpack_from(body, at)
        at += _ENTRY.size
        if at + length > len(body):
            raise Malformed(f"entry for {index} claims {length} bytes past the end")
        if size is not None and length != size:
            raise Malformed(f"entry for {index} has {length} bytes, expected {size}")
        if index in out:
            raise Malformed(f"entry list names {index} twice")
        out[index] = body[at : at + length]
        at += length
    if at != len(body):
        raise Malformed(f"{len(body) - at} stray bytes after the entry list")
    return out


def indices_body(survivors: list[int], dropped: list[int]) -> bytes:
    """Body of SURVIVORS: two index lists."""
    return struct.pack(
        f"<H{len(survivors)}HH{len(dropped)}H", len(survivors), *survivors, len(dropped), *dropped
    )


def parse_indices(body: bytes) -> tuple[list[int], list[int]]:
    lists: list[list[int]] = []
    at = 0
    for _ in range(2):
        if at + 2 > len(body):
            raise Malformed("SURVIVORS ends inside a list length")
        (n,) = struct.unpack_from("<H", body, at)
        at += 2
        if at + 2 * n > len(body):
            raise Malformed("SURVIVORS list runs past the end")
        lists.append(list(struct.unpack_from(f"<{n}H", body, at)))
        at += 2 * n
    if at != len(body):
        raise Malformed("stray bytes after SURVIVORS")
    return lists[0], lists[1]


def text_body(reason: str) -> bytes:
    return reason[:MAX_REASON].encode("utf-8", errors="replace")


def parse_text(body: bytes) -> str:
    return body[: 4 * MAX_REASON].decode("utf-8", errors="replace")


def _count(body: bytes) -> int:
    if len(body) < _COUNT.size:
        raise Malformed("body ends before its entry count")
    return int(_COUNT.unpack_from(body)[0])


# -- the masked input ------------------------------------------------------------------
def header_words(dtype: np.dtype | type) -> int:
    """Words of ``dtype`` the header of a masked input takes."""
    return HEADER_BYTES // np.dtype(dtype).itemsize


def masked_buffer(round_id: int, sender: int, length: int, dtype: type = np.uint64) -> np.ndarray:
    """A message buffer of the ring's ``dtype`` with its header written; fill :func:`body`."""
    buf: np.ndarray = np.empty(header_words(dtype) + length, dtype=dtype)
    head(buf)[:] = (ARRAY_MAGIC, round_id, sender, length)
    return buf


def head(buf: np.ndarray) -> np.ndarray:
    """The four uint64 header words of a masked input (a view)."""
    return buf[: header_words(buf.dtype)].view(np.uint64)


def body(buf: np.ndarray) -> np.ndarray:
    """The masked vector of a masked input (a view)."""
    return buf[header_words(buf.dtype) :]


@dataclass(frozen=True)
class MaskedInput:
    round: int
    sender: int
    vector: np.ndarray  # a view into the received message


def check_masked(raw: object, dtype: type | None = None) -> np.ndarray:
    """``raw`` itself if it is a masked input on a ring (``dtype``'s, if given)."""
    if not isinstance(raw, np.ndarray):
        raise Malformed(f"expected a masked vector (ring words), got {type(raw).__name__}")
    want = RING_DTYPES if dtype is None else (np.dtype(dtype),)
    if raw.dtype not in want or raw.ndim != 1:
        raise Malformed(
            f"masked vector has dtype {raw.dtype} and {raw.ndim} dimensions, "
            f"expected one dimension of {' or '.join(str(d) for d in want)}"
        )
    if raw.size < header_words(raw.dtype) or head(raw)[0] != ARRAY_MAGIC:
        raise Malformed("masked vector lacks its header")
    return raw


def parse_masked(raw: object, length: int, dtype: type = np.uint64) -> MaskedInput:
    """The header and vector of a masked input that must hold ``length`` words of ``dtype``."""
    buf = check_masked(raw, dtype)
    words = head(buf)
    declared = int(words[3])
    vector = body(buf)
    if declared != length or vector.size != length:
        raise Malformed(
            f"masked vector holds {vector.size} values (header says {declared}), "
            f"this round aggregates {length}"
        )
    return MaskedInput(int(words[1]), int(words[2]), vector)
