"""The serving RPC between the label holder's gateway and a partner's node.

Unary gRPC calls over mutual TLS (the deployment's PKI, as
:mod:`sharedml.transport.grpc`), raw bytes, no protobuf code generation:

* ``/sharedml.serving.v1.Partner/Describe`` — request: a version name (UTF-8);
  reply: the partner's :class:`~sharedml.serving.parts.PartInfo` as JSON.
* ``/sharedml.serving.v1.Partner/Score`` — request::

      magic "SMLS" | u8 wire version (1) | u8 0 | u16 L | version name (L bytes)
      | u32 n | ids: n UTF-8 strings joined by "\\n"

  reply::

      magic "SMLR" | u8 wire version | u8 kind | u32 n | u32 width
      | n status bytes | payload

  ``status`` per row: 0 scored, 1 refused by the partner's allow-list, 2 id
  unknown to the partner's feature store. ``kind`` 1 (linear): the payload is
  ``n`` little-endian uint64 ring values (width 1); kind 2 (trees): ``n`` rows
  of ``width`` bytes of packed split sides. Rows not scored carry zeros.

Every length is checked against the bytes received before anything is
allocated, and ids may not hold control characters, so a malformed message
is one :class:`~sharedml.errors.FrameError` and never a crash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from sharedml.errors import FrameError
from sharedml.serving.parts import LINEAR, TREES

SERVICE = "sharedml.serving.v1.Partner"
SCORE = f"/{SERVICE}/Score"
DESCRIBE = f"/{SERVICE}/Describe"
VERSION = 1
OK, REFUSED, UNKNOWN = 0, 1, 2
#: Most records in one Score call (a gateway batch never exceeds it).
MAX_ROWS = 65_536
MAX_ID = 256

_REQ = struct.Struct("<4sBBH")
_REQ_N = struct.Struct("<I")
_REP = struct.Struct("<4sBBII")


@dataclass(frozen=True)
class ScoreRequest:
    version: str
    ids: list[str]


@dataclass(frozen=True)
class ScoreReply:
    kind: int
    status: np.ndarray
    values: np.ndarray


def check_ids(ids: list[str]) -> bytes:
    """``ids`` joined for the wire; refuses empty, long or control-character ids."""
    if not 0 < len(ids) <= MAX_ROWS:
        raise FrameError(f"a request holds 1 to {MAX_ROWS} ids, got {len(ids)}")
    joined = "\n".join(ids)
    if "" in ids or max(map(len, ids)) > MAX_ID:
        raise FrameError(f"ids must be 1 to {MAX_ID} characters")
    if joined.count("\n") != len(ids) - 1 or not joined.replace("\n", "").isprintable():
        raise FrameError("an id holds a control character")
    return joined.encode()


def encode_request(version: str, ids: list[str]) -> bytes:
    name = version.encode()
    return _REQ.pack(b"SMLS", VERSION, 0, len(name)) + name + _REQ_N.pack(len(ids)) + check_ids(ids)


def decode_request(data: bytes) -> ScoreRequest:
    if len(data) < _REQ.size + _REQ_N.size:
        raise FrameError("score request shorter than its header")
    magic, version, _, length = _REQ.unpack_from(data)
    if magic != b"SMLS" or version != VERSION:
        raise FrameError(f"not a score request of wire version {VERSION}")
    at = _REQ.size + length
    if len(data) < at + _REQ_N.size:
        raise FrameError("score request shorter than its version name")
    (n,) = _REQ_N.unpack_from(data, at)
    try:
        name = data[_REQ.size:at].decode()
        ids = data[at + _REQ_N.size:].decode().split("\n")
    except UnicodeDecodeError:
        raise FrameError("score request is not UTF-8") from None
    if len(ids) != n:
        raise FrameError(f"score request announces {n} ids and holds {len(ids)}")
    check_ids(ids)
    return ScoreRequest(name, ids)


def encode_reply(kind: int, status: np.ndarray, values: np.ndarray) -> bytes:
    n = len(status)
    width = 1 if kind == LINEAR else (values.shape[1] if values.ndim == 2 else 0)
    body = np.ascontiguousarray(values, dtype="<u8" if kind == LINEAR else np.uint8)
    return (_REP.pack(b"SMLR", VERSION, kind, n, width) + status.astype(np.uint8).tobytes()
            + body.tobytes())


def decode_reply(data: bytes, n: int) -> ScoreReply:
    if len(data) < _REP.size:
        raise FrameError("score reply shorter than its header")
    magic, version, kind, rows, width = _REP.unpack_from(data)
    if magic != b"SMLR" or version != VERSION or kind not in (LINEAR, TREES):
        raise FrameError(f"not a score reply of wire version {VERSION}")
    if rows != n:
        raise FrameError(f"score reply holds {rows} rows for {n} ids")
    item = 8 if kind == LINEAR else 1
    if kind == LINEAR and width != 1:
        raise FrameError("linear score reply of width other than 1")
    if len(data) != _REP.size + n + n * width * item:
        raise FrameError("score reply length does not match its header")
    status = np.frombuffer(data, dtype=np.uint8, count=n, offset=_REP.size)
    at = _REP.size + n
    values: np.ndarray
    if kind == LINEAR:
        values = np.frombuffer(data, dtype="<u8", count=n, offset=at).astype(np.uint64)
    else:
        values = np.frombuffer(data, dtype=np.uint8, count=n * width, offset=at).reshape(n, width)
    if status.size and status.max() > UNKNOWN:
        raise FrameError("score reply holds an unknown row status")
    return ScoreReply(kind, status, values)
