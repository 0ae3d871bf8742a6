"""The enclave service's wire: typed messages as a JSON header plus raw bytes.

A message is ``u32 header length || UTF-8 JSON object || body``; the header
carries ``v`` (wire version). Nothing is pickled. gRPC method names and status
codes live here too, so the server and client agree in one place.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import grpc

from sharedml.errors import (
    AttestationError,
    ConfigError,
    DataError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    ProtocolAbort,
    SharedMLError,
)

VERSION = 1
SERVICE = "sharedml.tee.Enclave"
MAX_HEADER = 1 << 20
MAX_MESSAGE = 64 << 20
OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps({"v": VERSION, **header}, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + body


def decode(message: bytes) -> tuple[dict[str, Any], bytes]:
    header, body = decode_view(message)
    return header, bytes(body)


def decode_view(message: bytes) -> tuple[dict[str, Any], memoryview]:
    """Like :func:`decode`, but the body is a view into ``message`` (no copy)."""
    if len(message) < 4:
        raise ProtocolAbort("enclave message shorter than its length prefix", step="wire")
    (n,) = struct.unpack(">I", message[:4])
    if n > MAX_HEADER or 4 + n > len(message):
        raise ProtocolAbort("enclave message header length is wrong", step="wire")
    try:
        header = json.loads(message[4 : 4 + n])
    except ValueError:
        raise ProtocolAbort("enclave message header is not JSON", step="wire") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise ProtocolAbort(f"unsupported enclave wire version {header!r:.40}", step="wire")
    return header, memoryview(message)[4 + n :]


_TO_STATUS: list[tuple[type[SharedMLError], grpc.StatusCode]] = [
    (AttestationError, grpc.StatusCode.UNAUTHENTICATED),
    (PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ProtocolAbort, grpc.StatusCode.FAILED_PRECONDITION),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
]


def detail_for(exc: SharedMLError) -> str:
    """The status detail: the error's class, so the caller re-raises the same kind, and its message."""
    return f"{type(exc).__name__}: {exc}"


def status_for(exc: SharedMLError) -> grpc.StatusCode:
    for cls, code in _TO_STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def translate(exc: grpc.RpcError, step: str) -> SharedMLError:
    """A gRPC failure seen by a client, as a sharedml error."""
    code = exc.code() if hasattr(exc, "code") else None
    detail = str(exc.details() if hasattr(exc, "details") else exc)
    where = {"party": "enclave", "step": step}
    kind, _, message = detail.partition(": ")
    for cls, expected in _TO_STATUS:
        if kind == cls.__name__ and code == expected:  # the enclave named the kind; the code agrees
            return cls(message, **where)
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerUnreachable(f"enclave unreachable: {detail}", **where, remedy="check the enclave is running")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerTimeout(f"enclave did not answer: {detail}", **where)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AttestationError(str(detail), **where)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PolicyDenied(str(detail), **where)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return DataError(str(detail), **where)
    return ProtocolAbort(f"enclave refused: {detail}", **where)
