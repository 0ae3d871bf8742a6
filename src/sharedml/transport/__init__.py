"""Party-to-party transport: one Channel API, in-process or over mutual TLS.

:class:`GrpcChannel` and :class:`GrpcEndpoint` load gRPC on first use, so
importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sharedml.transport.base import Channel, Mailbox, ScopedChannel
from sharedml.transport.local import LocalChannel, LocalHub
from sharedml.transport.recording import RecordingChannel, WireRecord

if TYPE_CHECKING:
    from sharedml.transport.grpc import GrpcChannel, GrpcEndpoint

__all__ = [
    "Channel",
    "GrpcChannel",
    "GrpcEndpoint",
    "LocalChannel",
    "LocalHub",
    "Mailbox",
    "RecordingChannel",
    "ScopedChannel",
    "WireRecord",
]


def __getattr__(name: str) -> Any:
    if name in ("GrpcChannel", "GrpcEndpoint"):
        from sharedml.transport import grpc

        return getattr(grpc, name)
    raise AttributeError(f"module 'sharedml.transport' has no attribute {name!r}")
